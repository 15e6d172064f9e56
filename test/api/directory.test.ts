/** The published room directory through the API: /directory/list/room/{roomId} and /publicRooms. */
import { describe, expect, it } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';

const V3 = '/_matrix/client/v3';
const enc = encodeURIComponent;
const listPath = (roomId: string) => `${V3}/directory/list/room/${enc(roomId)}`;

async function newRoom(hs: Homeserver, user: TestUser, body: Record<string, unknown> = {}): Promise<string> {
  const res = await call(hs, 'POST', `${V3}/createRoom`, body, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.room_id;
}

async function join(hs: Homeserver, user: TestUser, roomId: string): Promise<void> {
  const res = await call(hs, 'POST', `${V3}/rooms/${enc(roomId)}/join`, {}, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

async function publish(hs: Homeserver, user: TestUser, roomId: string): Promise<void> {
  const res = await call(hs, 'PUT', listPath(roomId), { visibility: 'public' }, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

describe('room directory visibility', () => {
  it('is private by default, and set by a member with the power', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const room = await newRoom(hs, alice, { preset: 'public_chat' });
    expect((await call(hs, 'GET', listPath(room))).body).toEqual({ visibility: 'private' });
    await publish(hs, alice, room);
    expect((await call(hs, 'GET', listPath(room))).body).toEqual({ visibility: 'public' });

    await join(hs, bob, room);
    const denied = await call(hs, 'PUT', listPath(room), { visibility: 'private' }, bob.accessToken);
    expect([denied.status, denied.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    // An empty body means public (list_public_rooms.yaml); 'private' unlists.
    expect((await call(hs, 'PUT', listPath(room), { visibility: 'private' }, alice.accessToken)).status).toBe(200);
    expect((await call(hs, 'GET', listPath(room))).body).toEqual({ visibility: 'private' });
    expect((await call(hs, 'PUT', listPath(room), {}, alice.accessToken)).status).toBe(200);
    expect((await call(hs, 'GET', listPath(room))).body).toEqual({ visibility: 'public' });
  });

  it("follows createRoom's visibility", async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const room = await newRoom(hs, alice, { visibility: 'public' });
    expect((await call(hs, 'GET', listPath(room))).body).toEqual({ visibility: 'public' });
  });

  it('answers bad input with the spec error codes', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const carol = await newUser(hs);
    const room = await newRoom(hs, alice);
    const unknown = `!unknown:${hs.serverName}`;
    const cases: Array<[string, string, unknown, TestUser | null, number, string]> = [
      ['GET', listPath(unknown), undefined, null, 404, 'M_NOT_FOUND'],
      ['GET', listPath('not-a-room'), undefined, null, 400, 'M_INVALID_PARAM'],
      ['PUT', listPath(unknown), { visibility: 'public' }, alice, 404, 'M_NOT_FOUND'],
      ['PUT', listPath(room), { visibility: 'everyone' }, alice, 400, 'M_INVALID_PARAM'],
      ['PUT', listPath(room), { visibility: 1 }, alice, 400, 'M_BAD_JSON'],
      ['PUT', listPath(room), 'nope', alice, 400, 'M_NOT_JSON'],
      ['PUT', listPath(room), { visibility: 'public' }, carol, 403, 'M_FORBIDDEN'],
      ['PUT', listPath(room), { visibility: 'public' }, null, 401, 'M_MISSING_TOKEN'],
    ];
    for (const [method, path, body, user, status, errcode] of cases) {
      const res = await call(hs, method, path, body, user?.accessToken);
      expect([res.status, res.body.errcode], `${method} ${path} ${JSON.stringify(body)}`).toEqual([status, errcode]);
    }
  });
});

describe('GET/POST /publicRooms', () => {
  it("describes each published room from its state", async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const room = await newRoom(hs, alice, {
      preset: 'public_chat',
      name: 'Cheese',
      topic: 'Tasty tasty cheese',
      room_alias_name: 'cheese',
      initial_state: [
        { type: 'm.room.avatar', state_key: '', content: { url: 'mxc://example.org/cheese' } },
        { type: 'm.room.history_visibility', state_key: '', content: { history_visibility: 'world_readable' } },
        { type: 'm.room.guest_access', state_key: '', content: { guest_access: 'can_join' } },
      ],
    });
    await join(hs, bob, room);
    await newRoom(hs, alice, { preset: 'public_chat', name: 'Unlisted' });
    await publish(hs, alice, room);

    const res = await call(hs, 'GET', `${V3}/publicRooms`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      chunk: [
        {
          room_id: room,
          name: 'Cheese',
          topic: 'Tasty tasty cheese',
          canonical_alias: `#cheese:${hs.serverName}`,
          avatar_url: 'mxc://example.org/cheese',
          num_joined_members: 2,
          world_readable: true,
          guest_can_join: true,
          join_rule: 'public',
        },
      ],
      total_room_count_estimate: 1,
    });
    // Our own server name is our directory.
    expect((await call(hs, 'GET', `${V3}/publicRooms?server=${enc(hs.serverName)}`)).body.chunk).toHaveLength(1);
  });

  it('pages forwards and backwards by since tokens without repeating a room', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const others = await Promise.all([newUser(hs), newUser(hs), newUser(hs)]);
    const rooms: string[] = [];
    for (let i = 0; i < 5; i++) {
      const room = await newRoom(hs, alice, { preset: 'public_chat', visibility: 'public', name: `room ${i}` });
      // Room i has i extra members: the directory lists the biggest first.
      for (const u of others.slice(0, Math.min(i, others.length))) await join(hs, u, room);
      rooms.push(room);
    }
    const all = (await call(hs, 'GET', `${V3}/publicRooms`)).body;
    expect(all.total_room_count_estimate).toBe(5);
    const order = all.chunk.map((r: any) => r.room_id);
    expect(new Set(order)).toEqual(new Set(rooms));
    expect(all.chunk.map((r: any) => r.num_joined_members)).toEqual([4, 4, 3, 2, 1]);
    expect(all.next_batch).toBeUndefined();

    const pages: string[][] = [];
    let since: string | undefined;
    let last: any;
    for (let n = 0; n < 10; n++) {
      last = (await call(hs, 'GET', `${V3}/publicRooms?limit=2${since ? `&since=${enc(since)}` : ''}`)).body;
      pages.push(last.chunk.map((r: any) => r.room_id));
      if (n === 0) expect(last.prev_batch).toBeUndefined();
      if (!last.next_batch) break;
      since = last.next_batch;
    }
    expect(pages.flat()).toEqual(order);
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);
    // Back from the last page.
    const back = (await call(hs, 'GET', `${V3}/publicRooms?limit=2&since=${enc(last.prev_batch)}`)).body;
    expect(back.chunk.map((r: any) => r.room_id)).toEqual(pages[1]);

    // POST takes the same since tokens and limit in its body.
    const post = await call(hs, 'POST', `${V3}/publicRooms`, { limit: 2, since }, alice.accessToken);
    expect(post.body.chunk.map((r: any) => r.room_id)).toEqual(pages[2]);
  });

  it('filters by search term and room type', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const chat = await newRoom(hs, alice, { visibility: 'public', name: 'Gardening club', topic: 'Roses' });
    const space = await newRoom(hs, alice, {
      visibility: 'public',
      name: 'Hobbies',
      creation_content: { type: 'm.space' },
    });
    const query = async (body: unknown) =>
      (await call(hs, 'POST', `${V3}/publicRooms`, body, alice.accessToken)).body.chunk.map((r: any) => r.room_id);
    expect(await query({ filter: { generic_search_term: 'garden' } })).toEqual([chat]);
    expect(await query({ filter: { generic_search_term: 'ROSES' } })).toEqual([chat]);
    expect(await query({ filter: { generic_search_term: 'nothing like it' } })).toEqual([]);
    expect(await query({ filter: { room_types: ['m.space'] } })).toEqual([space]);
    expect(await query({ filter: { room_types: [null] } })).toEqual([chat]);
    expect((await query({ filter: { room_types: [] } })).sort()).toEqual([chat, space].sort());
    expect(await query({ third_party_instance_id: 'irc' })).toEqual([]);
    const spaceEntry = (await call(hs, 'GET', `${V3}/publicRooms`)).body.chunk.find((r: any) => r.room_id === space);
    expect(spaceEntry.room_type).toBe('m.space');
  });

  it('answers bad input with the spec error codes', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const cases: Array<[string, string, unknown, TestUser | null, number, string]> = [
      ['GET', `${V3}/publicRooms?limit=-1`, undefined, null, 400, 'M_INVALID_PARAM'],
      ['GET', `${V3}/publicRooms?limit=many`, undefined, null, 400, 'M_INVALID_PARAM'],
      ['GET', `${V3}/publicRooms?since=garbage`, undefined, null, 400, 'M_INVALID_PARAM'],
      ['GET', `${V3}/publicRooms?server=other.example.org`, undefined, null, 404, 'M_NOT_FOUND'],
      ['GET', `${V3}/publicRooms?server=${enc('not a server!')}`, undefined, null, 400, 'M_INVALID_PARAM'],
      ['POST', `${V3}/publicRooms`, {}, null, 401, 'M_MISSING_TOKEN'],
      ['POST', `${V3}/publicRooms`, { limit: 'ten' }, alice, 400, 'M_BAD_JSON'],
      ['POST', `${V3}/publicRooms`, { limit: -5 }, alice, 400, 'M_INVALID_PARAM'],
      ['POST', `${V3}/publicRooms`, { filter: { room_types: [3] } }, alice, 400, 'M_BAD_JSON'],
      ['POST', `${V3}/publicRooms`, { since: 'n!!!' }, alice, 400, 'M_INVALID_PARAM'],
      ['POST', `${V3}/publicRooms?server=other.example.org`, {}, alice, 404, 'M_NOT_FOUND'],
      ['POST', `${V3}/publicRooms`, '[]', alice, 400, 'M_BAD_JSON'],
    ];
    for (const [method, path, body, user, status, errcode] of cases) {
      const res = await call(hs, method, path, body, user?.accessToken);
      expect([res.status, res.body.errcode], `${method} ${path} ${JSON.stringify(body)}`).toEqual([status, errcode]);
    }
  });
});
