/** Room aliases through the API: PUT/GET/DELETE /directory/room/{roomAlias} and GET /rooms/{roomId}/aliases. */
import { describe, expect, it } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';

const V3 = '/_matrix/client/v3';
const enc = encodeURIComponent;
const aliasPath = (alias: string) => `${V3}/directory/room/${enc(alias)}`;

async function newRoom(hs: Homeserver, user: TestUser, body: Record<string, unknown> = {}): Promise<string> {
  const res = await call(hs, 'POST', `${V3}/createRoom`, body, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.room_id;
}

async function join(hs: Homeserver, user: TestUser, roomId: string): Promise<void> {
  const res = await call(hs, 'POST', `${V3}/rooms/${enc(roomId)}/join`, {}, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

async function setState(hs: Homeserver, user: TestUser, roomId: string, type: string, content: Record<string, unknown>) {
  const res = await call(hs, 'PUT', `${V3}/rooms/${enc(roomId)}/state/${enc(type)}/`, content, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
}

describe('room aliases', () => {
  it('creates, resolves, lists and deletes an alias', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const room = await newRoom(hs, alice);
    const alias = `#lobby:${hs.serverName}`;

    const put = await call(hs, 'PUT', aliasPath(alias), { room_id: room }, alice.accessToken);
    expect([put.status, put.body]).toEqual([200, {}]);
    // Resolving needs no access token.
    const got = await call(hs, 'GET', aliasPath(alias));
    expect(got.status).toBe(200);
    expect(got.body).toEqual({ room_id: room, servers: [hs.serverName] });

    const list = await call(hs, 'GET', `${V3}/rooms/${enc(room)}/aliases`, undefined, alice.accessToken);
    expect(list.body).toEqual({ aliases: [alias] });

    const taken = await call(hs, 'PUT', aliasPath(alias), { room_id: room }, alice.accessToken);
    expect([taken.status, taken.body.errcode]).toEqual([409, 'M_UNKNOWN']);

    const del = await call(hs, 'DELETE', aliasPath(alias), undefined, alice.accessToken);
    expect([del.status, del.body]).toEqual([200, {}]);
    const gone = await call(hs, 'GET', aliasPath(alias));
    expect([gone.status, gone.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    expect((await call(hs, 'GET', `${V3}/rooms/${enc(room)}/aliases`, undefined, alice.accessToken)).body).toEqual({ aliases: [] });
    const again = await call(hs, 'DELETE', aliasPath(alias), undefined, alice.accessToken);
    expect([again.status, again.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    // Free again: it can be reused.
    expect((await call(hs, 'PUT', aliasPath(alias), { room_id: room }, alice.accessToken)).status).toBe(200);
  });

  it("resolves createRoom's room_alias_name", async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const room = await newRoom(hs, alice, { room_alias_name: 'made-at-birth' });
    const got = await call(hs, 'GET', aliasPath(`#made-at-birth:${hs.serverName}`));
    expect(got.body.room_id).toBe(room);
  });

  it('lets the creator or a member with power over m.room.canonical_alias delete an alias, and nobody else', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const carol = await newUser(hs);
    const room = await newRoom(hs, alice, { preset: 'public_chat' });
    await join(hs, bob, room);
    await join(hs, carol, room);
    const bobs = `#bobs:${hs.serverName}`;
    const other = `#other:${hs.serverName}`;
    expect((await call(hs, 'PUT', aliasPath(bobs), { room_id: room }, bob.accessToken)).status).toBe(200);
    expect((await call(hs, 'PUT', aliasPath(other), { room_id: room }, bob.accessToken)).status).toBe(200);

    // Carol neither created it nor has power 50 for m.room.canonical_alias.
    const denied = await call(hs, 'DELETE', aliasPath(bobs), undefined, carol.accessToken);
    expect([denied.status, denied.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    // Bob created it; Alice (room creator) has the power.
    expect((await call(hs, 'DELETE', aliasPath(bobs), undefined, bob.accessToken)).status).toBe(200);
    expect((await call(hs, 'DELETE', aliasPath(other), undefined, alice.accessToken)).status).toBe(200);
  });

  it('answers bad input with the spec error codes', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const room = await newRoom(hs, alice);
    const local = `#fine:${hs.serverName}`;
    const cases: Array<[string, string, unknown, TestUser | null, number, string]> = [
      ['PUT', aliasPath('#no-server'), { room_id: room }, alice, 400, 'M_INVALID_PARAM'],
      ['PUT', aliasPath('lobby:example.org'), { room_id: room }, alice, 400, 'M_INVALID_PARAM'],
      ['PUT', aliasPath('#lobby:other.example.org'), { room_id: room }, alice, 400, 'M_INVALID_PARAM'],
      ['PUT', aliasPath(local), {}, alice, 400, 'M_MISSING_PARAM'],
      ['PUT', aliasPath(local), { room_id: 'not-a-room' }, alice, 400, 'M_INVALID_PARAM'],
      ['PUT', aliasPath(local), { room_id: 42 }, alice, 400, 'M_BAD_JSON'],
      ['PUT', aliasPath(local), '{"room_id":', alice, 400, 'M_NOT_JSON'],
      ['PUT', aliasPath(local), { room_id: `!unknown:${hs.serverName}` }, alice, 404, 'M_NOT_FOUND'],
      ['PUT', aliasPath(local), { room_id: room }, bob, 403, 'M_FORBIDDEN'],
      ['PUT', aliasPath(local), { room_id: room }, null, 401, 'M_MISSING_TOKEN'],
      ['GET', aliasPath('#no-server'), undefined, null, 400, 'M_INVALID_PARAM'],
      ['GET', aliasPath('#lobby:other.example.org'), undefined, null, 404, 'M_NOT_FOUND'],
      ['GET', aliasPath(`#nothing:${hs.serverName}`), undefined, null, 404, 'M_NOT_FOUND'],
      ['DELETE', aliasPath('#lobby:other.example.org'), undefined, alice, 400, 'M_INVALID_PARAM'],
      ['DELETE', aliasPath('bad'), undefined, alice, 400, 'M_INVALID_PARAM'],
      ['DELETE', aliasPath(local), undefined, alice, 404, 'M_NOT_FOUND'],
      ['GET', `${V3}/rooms/${enc(room)}/aliases`, undefined, bob, 403, 'M_FORBIDDEN'],
      ['GET', `${V3}/rooms/${enc(`!unknown:${hs.serverName}`)}/aliases`, undefined, alice, 403, 'M_FORBIDDEN'],
      ['GET', `${V3}/rooms/not-a-room/aliases`, undefined, alice, 400, 'M_INVALID_PARAM'],
    ];
    for (const [method, path, body, user, status, errcode] of cases) {
      const res = await call(hs, method, path, body, user?.accessToken);
      expect([res.status, res.body.errcode], `${method} ${path} ${JSON.stringify(body)}`).toEqual([status, errcode]);
    }
  });

  it('lists the aliases of a world-readable room to anyone', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const room = await newRoom(hs, alice, { room_alias_name: 'open' });
    await setState(hs, alice, room, 'm.room.history_visibility', { history_visibility: 'world_readable' });
    const list = await call(hs, 'GET', `${V3}/rooms/${enc(room)}/aliases`, undefined, bob.accessToken);
    expect(list.status).toBe(200);
    expect(list.body.aliases).toEqual([`#open:${hs.serverName}`]);
  });
});
