/**
 * Issue 3's Client-Server list, item by item, for the behaviours no other API test covers: createRoom's options and
 * room versions, every membership change (join by ID and alias, invite, leave, forget, kick, ban, unban, knock),
 * member lists with `at` and membership filters, idempotent sends, state, single events, redaction, profile changes
 * reaching member events, and a re-login on an existing device keeping its end-to-end keys until new ones replace them.
 *
 * Spec: data/api/client-server/{create_room,joining,inviting,leaving,kicking,banning,knocking,rooms,room_state,
 * room_send,redaction,list_joined_rooms,profile,login,keys}.yaml; content/client-server-api/_index.md (#creation,
 * #room-membership, #transaction-identifiers, #redactions, #stripped-state, #lazy-loading-room-members).
 */
import { describe, expect, test } from 'vitest';
import { encodeBase64 } from '../../src/core/base64.js';
import { generateSeed, publicKeyFromSeed } from '../../src/core/crypto/ed25519.js';
import type { JsonObject } from '../../src/core/json.js';
import { signJson } from '../../src/core/signing.js';
import type { Homeserver } from '../../src/homeserver.js';
import type { CallResult } from '../helpers/homeserver.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import {
  enc,
  getState,
  invite,
  joinRoom,
  membership,
  newPublicRoom,
  newRoom,
  send,
  sendText,
  setState,
  trySend,
} from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { login, newUser } from '../helpers/users.js';

const C = '/_matrix/client/v3';

// ---- Builders

function expectError(res: CallResult, status: number, errcode: string): void {
  expect([res.status, res.body?.errcode], JSON.stringify(res.body)).toEqual([status, errcode]);
}

function ok<T = any>(res: CallResult<T>): T {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

/** The room's current state as `type|state_key` → event. */
async function roomState(hs: Homeserver, user: TestUser, roomId: string): Promise<Map<string, any>> {
  const events = ok(await call(hs, 'GET', `${C}/rooms/${enc(roomId)}/state`, undefined, user.accessToken)) as any[];
  return new Map(events.map((e) => [`${e.type}|${e.state_key}`, e]));
}

/** The whole timeline, oldest first. */
async function history(hs: Homeserver, user: TestUser, roomId: string): Promise<any[]> {
  return ok(await call(hs, 'GET', `${C}/rooms/${enc(roomId)}/messages?dir=f&limit=200`, undefined, user.accessToken)).chunk;
}

async function sync(hs: Homeserver, user: TestUser, params: Record<string, string> = {}): Promise<any> {
  const q = new URLSearchParams({ set_presence: 'offline', timeout: '0', ...params }).toString();
  return ok(await call(hs, 'GET', `${C}/sync?${q}`, undefined, user.accessToken));
}

/** An initial sync that lists left rooms too (they are left out unless the filter asks: include_leave). */
const WITH_LEAVE = { filter: JSON.stringify({ room: { include_leave: true } }) };

function membershipOf(state: Map<string, any>, userId: string): string | undefined {
  return state.get(`m.room.member|${userId}`)?.content.membership;
}

// ---- createRoom

describe('createRoom', () => {
  test('defaults to the recommended room version (the one /capabilities names) and creates 10, 11 and 12', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const caps = ok(await call(hs, 'GET', `${C}/capabilities`, undefined, alice.accessToken)).capabilities;
    const recommended = caps['m.room_versions'].default;
    expect(recommended).toBe('12');
    const byDefault = await newRoom(hs, alice);
    expect((await roomState(hs, alice, byDefault)).get('m.room.create|').content.room_version).toBe(recommended);

    for (const version of ['10', '11', '12']) {
      expect(caps['m.room_versions'].available[version]).toBe('stable');
      const roomId = await newRoom(hs, alice, { room_version: version });
      const state = await roomState(hs, alice, roomId);
      const create = state.get('m.room.create|');
      expect(create.content.room_version).toBe(version);
      // v11 dropped `creator` (the sender is the creator); v12 derives the room ID from the create event, so it has
      // no server part, and creators are not listed in the power levels.
      if (version === '10') expect(create.content.creator).toBe(alice.userId);
      else expect(create.content.creator).toBeUndefined();
      if (version === '12') {
        expect(roomId).toMatch(/^![A-Za-z0-9_-]{43}$/);
        expect(create.room_id).toBe(roomId);
        expect(state.get('m.room.power_levels|').content.users[alice.userId]).toBeUndefined();
      } else {
        expect(roomId.endsWith(`:${hs.serverName}`)).toBe(true);
        expect(state.get('m.room.power_levels|').content.users[alice.userId]).toBe(100);
      }
      // Every version can carry on: a message and a state change.
      await sendText(hs, alice, roomId, `hello v${version}`);
      await setState(hs, alice, roomId, 'm.room.topic', '', { topic: `v${version}` });
    }
    expectError(await call(hs, 'POST', `${C}/createRoom`, { room_version: '999' }, alice.accessToken), 400, 'M_UNSUPPORTED_ROOM_VERSION');
  });

  test('builds the spec’s event sequence: create, creator, power levels, alias, preset, initial_state, name, topic, invites', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newRoom(hs, alice, {
      room_version: '11',
      room_alias_name: 'sequence',
      initial_state: [{ type: 'org.example.custom', state_key: 'k', content: { n: 1 } }],
      name: 'Sequence',
      topic: 'In order',
      invite: [bob.userId],
    });
    const events = await history(hs, alice, roomId);
    expect(events.map((e) => [e.type, e.state_key])).toEqual([
      ['m.room.create', ''],
      ['m.room.member', alice.userId],
      ['m.room.power_levels', ''],
      ['m.room.canonical_alias', ''],
      ['m.room.join_rules', ''],
      ['m.room.history_visibility', ''],
      ['m.room.guest_access', ''],
      ['org.example.custom', 'k'],
      ['m.room.name', ''],
      ['m.room.topic', ''],
      ['m.room.member', bob.userId],
    ]);
    expect(events[3].content.alias).toBe(`#sequence:${hs.serverName}`);
    expect(events[9].content.topic).toBe('In order');
    expect(events[10].content.membership).toBe('invite');
  });

  test('presets set join rules, history visibility, guest access and who may invite', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const pick = (s: Map<string, any>) => [
      s.get('m.room.join_rules|').content.join_rule,
      s.get('m.room.history_visibility|').content.history_visibility,
      s.get('m.room.guest_access|').content.guest_access,
      s.get('m.room.power_levels|').content.invite,
    ];
    const priv = await roomState(hs, alice, await newRoom(hs, alice, { preset: 'private_chat' }));
    expect(pick(priv)).toEqual(['invite', 'shared', 'can_join', 0]);
    const pub = await roomState(hs, alice, await newRoom(hs, alice, { preset: 'public_chat' }));
    expect(pick(pub)).toEqual(['public', 'shared', 'forbidden', 50]);

    // trusted_private_chat: the invitees get the creator's power (v11) or become additional creators (v12).
    const trusted11 = await roomState(hs, alice, await newRoom(hs, alice, { preset: 'trusted_private_chat', room_version: '11', invite: [bob.userId] }));
    expect(pick(trusted11)).toEqual(['invite', 'shared', 'can_join', 0]);
    expect(trusted11.get('m.room.power_levels|').content.users[bob.userId]).toBe(100);
    const trusted12 = await roomState(hs, alice, await newRoom(hs, alice, { preset: 'trusted_private_chat', room_version: '12', invite: [bob.userId] }));
    expect(trusted12.get('m.room.create|').content.additional_creators).toEqual([bob.userId]);

    // initial_state overrides the preset's choice.
    const overridden = await roomState(
      hs,
      alice,
      await newRoom(hs, alice, {
        preset: 'public_chat',
        initial_state: [{ type: 'm.room.history_visibility', content: { history_visibility: 'joined' } }],
      }),
    );
    expect(pick(overridden)).toEqual(['public', 'joined', 'forbidden', 50]);

    expectError(await call(hs, 'POST', `${C}/createRoom`, { preset: 'open_bar' }, alice.accessToken), 400, 'M_INVALID_PARAM');
  });

  test('visibility: public publishes the room in the directory with the public_chat preset; private (default) does not', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const pub = await newRoom(hs, alice, { visibility: 'public', name: 'Open' });
    const priv = await newRoom(hs, alice, { name: 'Closed' });
    expect(ok(await call(hs, 'GET', `${C}/directory/list/room/${enc(pub)}`)).visibility).toBe('public');
    expect(ok(await call(hs, 'GET', `${C}/directory/list/room/${enc(priv)}`)).visibility).toBe('private');
    expect((await roomState(hs, alice, pub)).get('m.room.join_rules|').content.join_rule).toBe('public');
    const listed = ok(await call(hs, 'GET', `${C}/publicRooms`)).chunk.map((r: any) => r.room_id);
    expect(listed).toEqual([pub]);
    expectError(await call(hs, 'POST', `${C}/createRoom`, { visibility: 'secret' }, alice.accessToken), 400, 'M_INVALID_PARAM');
  });

  test('name and topic win over the same state in initial_state; the topic also has its m.topic form', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const roomId = await newRoom(hs, alice, {
      name: 'Given',
      topic: 'Given topic',
      initial_state: [
        { type: 'm.room.name', content: { name: 'From state' } },
        { type: 'm.room.topic', content: { topic: 'From state' } },
      ],
    });
    const state = await roomState(hs, alice, roomId);
    expect(state.get('m.room.name|').content).toEqual({ name: 'Given' });
    expect(state.get('m.room.topic|').content.topic).toBe('Given topic');
    expect(state.get('m.room.topic|').content['m.topic']).toEqual({ 'm.text': [{ body: 'Given topic', mimetype: 'text/plain' }] });
  });

  test('invite: the invitees are invited (is_direct marks a DM); unknown and malformed users are refused', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs, undefined, { displayName: 'ignored' });
    const carol = await newUser(hs);
    const dm = await newRoom(hs, alice, { invite: [bob.userId, carol.userId], is_direct: true, preset: 'trusted_private_chat' });
    const state = await roomState(hs, alice, dm);
    for (const u of [bob, carol]) {
      expect(state.get(`m.room.member|${u.userId}`).content).toMatchObject({ membership: 'invite', is_direct: true });
    }
    const bobSync = await sync(hs, bob);
    expect(Object.keys(bobSync.rooms.invite)).toEqual([dm]);

    expectError(await call(hs, 'POST', `${C}/createRoom`, { invite: [`@nobody:${hs.serverName}`] }, alice.accessToken), 404, 'M_NOT_FOUND');
    expectError(await call(hs, 'POST', `${C}/createRoom`, { invite: ['not-a-user'] }, alice.accessToken), 400, 'M_INVALID_PARAM');
    expectError(await call(hs, 'POST', `${C}/createRoom`, { invite: 'not-a-list' }, alice.accessToken), 400, 'M_BAD_JSON');
  });

  test('room_alias_name: the alias resolves to the room and is the canonical alias; taken or malformed names are refused', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const roomId = await newRoom(hs, alice, { room_alias_name: 'lounge' });
    const alias = `#lounge:${hs.serverName}`;
    expect(ok(await call(hs, 'GET', `${C}/directory/room/${enc(alias)}`)).room_id).toBe(roomId);
    expect((await roomState(hs, alice, roomId)).get('m.room.canonical_alias|').content).toEqual({ alias });
    expectError(await call(hs, 'POST', `${C}/createRoom`, { room_alias_name: 'lounge' }, alice.accessToken), 400, 'M_ROOM_IN_USE');
    expectError(await call(hs, 'POST', `${C}/createRoom`, { room_alias_name: 'has space' }, alice.accessToken), 400, 'M_INVALID_PARAM');
    expectError(await call(hs, 'POST', `${C}/createRoom`, { room_alias_name: 'a:b' }, alice.accessToken), 400, 'M_INVALID_PARAM');
    // The refused requests created no room.
    expect(ok(await call(hs, 'GET', `${C}/joined_rooms`, undefined, alice.accessToken)).joined_rooms).toEqual([roomId]);
  });

  test('power_level_content_override replaces the top-level keys of the default power levels', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newRoom(hs, alice, {
      room_version: '11',
      preset: 'public_chat',
      power_level_content_override: { events_default: 20, users: { [alice.userId]: 100, [bob.userId]: 50 } },
    });
    const pl = (await roomState(hs, alice, roomId)).get('m.room.power_levels|').content;
    expect(pl.events_default).toBe(20);
    expect(pl.users).toEqual({ [alice.userId]: 100, [bob.userId]: 50 });
    expect(pl.state_default).toBe(50);
    await joinRoom(hs, bob, roomId);
    // Bob has 50 ≥ state_default: he may set the topic; a newcomer with 0 < events_default may not even talk.
    await setState(hs, bob, roomId, 'm.room.topic', '', { topic: 'by bob' });
    const carol = await newUser(hs);
    await joinRoom(hs, carol, roomId);
    expectError(await trySend(hs, carol, roomId, { msgtype: 'm.text', body: 'hi' }), 403, 'M_FORBIDDEN');
    expectError(
      await call(hs, 'POST', `${C}/createRoom`, { power_level_content_override: { users: { [alice.userId]: 'lots' } } }, alice.accessToken),
      400,
      'M_INVALID_ROOM_STATE',
    );
  });

  test('creation_content goes into m.room.create (a space, not federated); the server keeps room_version and creator', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const roomId = await newRoom(hs, alice, {
      room_version: '10',
      creation_content: { 'm.federate': false, type: 'm.space', creator: '@someone:else', room_version: '1' },
    });
    const create = (await roomState(hs, alice, roomId)).get('m.room.create|').content;
    expect(create).toEqual({ 'm.federate': false, type: 'm.space', creator: alice.userId, room_version: '10' });
  });
});

// ---- Membership

describe('membership', () => {
  test('join by room ID and by alias; joined_rooms and joined_members follow', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const carol = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice, { room_alias_name: 'hall' });
    expect(ok(await membership(hs, bob, roomId, 'join')).room_id).toBe(roomId);
    expect(ok(await call(hs, 'POST', `${C}/join/${enc(`#hall:${hs.serverName}`)}`, {}, carol.accessToken)).room_id).toBe(roomId);
    // POST /join/{roomIdOrAlias} with a room ID, and joining again, are fine too.
    expect(ok(await call(hs, 'POST', `${C}/join/${enc(roomId)}`, {}, carol.accessToken)).room_id).toBe(roomId);
    expect(ok(await call(hs, 'GET', `${C}/joined_rooms`, undefined, carol.accessToken)).joined_rooms).toEqual([roomId]);
    const joined = ok(await call(hs, 'GET', `${C}/rooms/${enc(roomId)}/joined_members`, undefined, bob.accessToken)).joined;
    expect(Object.keys(joined).sort()).toEqual([alice.userId, bob.userId, carol.userId].sort());
    expect(joined[bob.userId].display_name).toBe(bob.userId.slice(1, bob.userId.indexOf(':')));

    expectError(await call(hs, 'POST', `${C}/join/${enc(`#nowhere:${hs.serverName}`)}`, {}, bob.accessToken), 404, 'M_NOT_FOUND');
    const outsider = await newUser(hs);
    expectError(await call(hs, 'GET', `${C}/rooms/${enc(roomId)}/joined_members`, undefined, outsider.accessToken), 403, 'M_FORBIDDEN');
  });

  test('an invite-only room needs an invite; the invitee may join or reject', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const carol = await newUser(hs);
    const roomId = await newRoom(hs, alice);
    expectError(await membership(hs, bob, roomId, 'join'), 403, 'M_FORBIDDEN');
    // Someone not in the room cannot invite; a member can.
    expectError(await membership(hs, carol, roomId, 'invite', { user_id: bob.userId }), 403, 'M_FORBIDDEN');
    ok(await membership(hs, alice, roomId, 'invite', { user_id: bob.userId, reason: 'welcome' }));
    ok(await membership(hs, alice, roomId, 'invite', { user_id: carol.userId }));
    expect((await roomState(hs, alice, roomId)).get(`m.room.member|${bob.userId}`).content).toMatchObject({ membership: 'invite', reason: 'welcome' });
    await joinRoom(hs, bob, roomId);
    ok(await membership(hs, carol, roomId, 'leave'));
    const state = await roomState(hs, alice, roomId);
    expect([membershipOf(state, bob.userId), membershipOf(state, carol.userId)]).toEqual(['join', 'leave']);
    // The rejected invite is in carol's leave section; she never saw the room's history.
    expect(Object.keys((await sync(hs, carol, WITH_LEAVE)).rooms.leave)).toEqual([roomId]);

    expectError(await membership(hs, alice, roomId, 'invite', { user_id: `@ghost:${hs.serverName}` }), 404, 'M_NOT_FOUND');
    expectError(await membership(hs, alice, roomId, 'invite', { user_id: 'ghost' }), 400, 'M_INVALID_PARAM');
    expectError(await membership(hs, alice, roomId, 'invite', {}), 400, 'M_MISSING_PARAM');
  });

  test('leave, then forget: the room leaves /sync and its state becomes unreadable; forgetting while joined is 400', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, roomId);
    await sendText(hs, alice, roomId, 'before bob left');
    expectError(await membership(hs, bob, roomId, 'forget'), 400, 'M_UNKNOWN');
    ok(await membership(hs, bob, roomId, 'leave', { reason: 'bye' }));
    expect(ok(await call(hs, 'GET', `${C}/joined_rooms`, undefined, bob.accessToken)).joined_rooms).toEqual([]);
    // A former member still reads the state as it was when they left, and sees the room under leave.
    expect((await roomState(hs, bob, roomId)).get(`m.room.member|${bob.userId}`).content).toEqual({ membership: 'leave', reason: 'bye' });
    expect(Object.keys((await sync(hs, bob, WITH_LEAVE)).rooms.leave)).toEqual([roomId]);

    ok(await membership(hs, bob, roomId, 'forget'));
    expect((await sync(hs, bob, WITH_LEAVE)).rooms.leave).toEqual({});
    expectError(await getState(hs, bob, roomId, 'm.room.create'), 403, 'M_FORBIDDEN');
    // Forgetting does not stop them joining again.
    await joinRoom(hs, bob, roomId);
    expect(ok(await call(hs, 'GET', `${C}/joined_rooms`, undefined, bob.accessToken)).joined_rooms).toEqual([roomId]);
  });

  test('kick: needs the kick level and a target in the room; the target sees it in leave', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const carol = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, roomId);
    await joinRoom(hs, carol, roomId);
    expectError(await membership(hs, bob, roomId, 'kick', { user_id: carol.userId }), 403, 'M_FORBIDDEN');
    ok(await membership(hs, alice, roomId, 'kick', { user_id: carol.userId, reason: 'noise' }));
    const member = (await roomState(hs, alice, roomId)).get(`m.room.member|${carol.userId}`);
    expect([member.sender, member.content]).toEqual([alice.userId, { membership: 'leave', reason: 'noise' }]);
    expect(Object.keys((await sync(hs, carol, WITH_LEAVE)).rooms.leave)).toEqual([roomId]);
    // Not in the room (any more): nothing to kick.
    expectError(await membership(hs, alice, roomId, 'kick', { user_id: carol.userId }), 403, 'M_FORBIDDEN');
    // A kicked user may come back to a public room.
    await joinRoom(hs, carol, roomId);
    expectError(await membership(hs, alice, roomId, 'kick', {}), 400, 'M_MISSING_PARAM');
  });

  test('ban keeps the user out until unban; unbanning someone not banned is 400 M_BAD_STATE', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, roomId);
    expectError(await membership(hs, bob, roomId, 'ban', { user_id: alice.userId }), 403, 'M_FORBIDDEN');
    ok(await membership(hs, alice, roomId, 'ban', { user_id: bob.userId, reason: 'spam' }));
    expect(membershipOf(await roomState(hs, alice, roomId), bob.userId)).toBe('ban');
    expectError(await membership(hs, bob, roomId, 'join'), 403, 'M_FORBIDDEN');
    // Banning works on users who never joined as well.
    const carol = await newUser(hs);
    ok(await membership(hs, alice, roomId, 'ban', { user_id: carol.userId }));
    expectError(await membership(hs, carol, roomId, 'join'), 403, 'M_FORBIDDEN');

    ok(await membership(hs, alice, roomId, 'unban', { user_id: bob.userId }));
    expect(membershipOf(await roomState(hs, alice, roomId), bob.userId)).toBe('leave');
    expectError(await membership(hs, alice, roomId, 'unban', { user_id: bob.userId }), 400, 'M_BAD_STATE');
    await joinRoom(hs, bob, roomId);
    expectError(await membership(hs, bob, roomId, 'unban', { user_id: carol.userId }), 403, 'M_FORBIDDEN');
  });

  test('knock: the knocker sees the room under knock with stripped state, then joins once invited', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newRoom(hs, alice, { room_version: '11', name: 'Knock here', room_alias_name: 'door' });
    // Not knockable yet (join rule invite).
    expectError(await call(hs, 'POST', `${C}/knock/${enc(roomId)}`, {}, bob.accessToken), 403, 'M_FORBIDDEN');
    await setState(hs, alice, roomId, 'm.room.join_rules', '', { join_rule: 'knock' });

    const knocked = ok(await call(hs, 'POST', `${C}/knock/${enc(`#door:${hs.serverName}`)}`, { reason: 'let me in' }, bob.accessToken));
    expect(knocked.room_id).toBe(roomId);
    expect((await roomState(hs, alice, roomId)).get(`m.room.member|${bob.userId}`).content).toMatchObject({ membership: 'knock', reason: 'let me in' });
    const bobSync = await sync(hs, bob);
    const knock = bobSync.rooms.knock[roomId];
    expect(knock).toBeDefined();
    const stripped = new Map(knock.knock_state.events.map((e: any) => [e.type, e]));
    expect((stripped.get('m.room.name') as any).content.name).toBe('Knock here');
    expect((stripped.get('m.room.join_rules') as any).content.join_rule).toBe('knock');
    expect((stripped.get('m.room.member') as any).content.membership).toBe('knock');
    expect(bobSync.rooms.join[roomId]).toBeUndefined();
    // A knocker cannot join by themselves…
    expectError(await membership(hs, bob, roomId, 'join'), 403, 'M_FORBIDDEN');
    // …but an invite lets them in, and the room moves from knock to join.
    await invite(hs, alice, roomId, bob);
    await joinRoom(hs, bob, roomId);
    const after = await sync(hs, bob, { since: bobSync.next_batch });
    expect(after.rooms.join[roomId]).toBeDefined();

    expectError(await call(hs, 'POST', `${C}/knock/${enc(`#nowhere:${hs.serverName}`)}`, {}, bob.accessToken), 404, 'M_NOT_FOUND');
    expectError(await call(hs, 'POST', `${C}/knock/not-a-room`, {}, bob.accessToken), 400, 'M_INVALID_PARAM');
  });

  test('a knock can be withdrawn with leave, and refused by a kick', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const carol = await newUser(hs);
    const roomId = await newRoom(hs, alice, { room_version: '10', initial_state: [{ type: 'm.room.join_rules', content: { join_rule: 'knock' } }] });
    ok(await call(hs, 'POST', `${C}/knock/${enc(roomId)}`, {}, bob.accessToken));
    ok(await membership(hs, bob, roomId, 'leave'));
    ok(await call(hs, 'POST', `${C}/knock/${enc(roomId)}`, {}, carol.accessToken));
    ok(await membership(hs, alice, roomId, 'kick', { user_id: carol.userId }));
    const state = await roomState(hs, alice, roomId);
    expect([membershipOf(state, bob.userId), membershipOf(state, carol.userId)]).toEqual(['leave', 'leave']);
  });
});

// ---- Member lists

describe('GET /rooms/{roomId}/members', () => {
  test('membership and not_membership filters, and `at` for the members at a point in history', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const carol = await newUser(hs);
    const dave = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, roomId);
    const before = (await sync(hs, alice)).next_batch;
    await invite(hs, alice, roomId, carol);
    await joinRoom(hs, dave, roomId);
    ok(await membership(hs, bob, roomId, 'leave'));

    const members = async (query: string) => {
      const body = ok(await call(hs, 'GET', `${C}/rooms/${enc(roomId)}/members${query}`, undefined, alice.accessToken));
      return Object.fromEntries(body.chunk.map((e: any) => [e.state_key, e.content.membership]));
    };
    expect(await members('')).toEqual({ [alice.userId]: 'join', [bob.userId]: 'leave', [carol.userId]: 'invite', [dave.userId]: 'join' });
    expect(await members('?membership=join')).toEqual({ [alice.userId]: 'join', [dave.userId]: 'join' });
    expect(await members('?not_membership=leave')).toEqual({ [alice.userId]: 'join', [carol.userId]: 'invite', [dave.userId]: 'join' });
    expect(await members('?membership=invite')).toEqual({ [carol.userId]: 'invite' });
    // `at` a sync token: the membership as it was then — bob still joined, carol and dave not there yet.
    expect(await members(`?at=${enc(before)}`)).toEqual({ [alice.userId]: 'join', [bob.userId]: 'join' });
    expect(await members(`?at=${enc(before)}&membership=join`)).toEqual({ [alice.userId]: 'join', [bob.userId]: 'join' });

    // A former member sees the list as it was when they left, even when asking for later.
    const asBob = ok(await call(hs, 'GET', `${C}/rooms/${enc(roomId)}/members`, undefined, bob.accessToken)).chunk;
    expect(asBob.find((e: any) => e.state_key === bob.userId).content.membership).toBe('leave');
    const outsider = await newUser(hs);
    expectError(await call(hs, 'GET', `${C}/rooms/${enc(roomId)}/members`, undefined, outsider.accessToken), 403, 'M_FORBIDDEN');
    expectError(await call(hs, 'GET', `${C}/rooms/${enc(roomId)}/members?membership=joined`, undefined, alice.accessToken), 400, 'M_INVALID_PARAM');
  });
});

// ---- Events

describe('sending, state, single events and redaction', () => {
  test('send is idempotent per device and transaction ID', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs, undefined, { password: 'pw-idem' });
    const roomId = await newRoom(hs, alice);
    const content = { msgtype: 'm.text', body: 'once' };
    const first = ok(await trySend(hs, alice, roomId, content, 'm.room.message', 'same-txn')).event_id;
    const again = ok(await trySend(hs, alice, roomId, content, 'm.room.message', 'same-txn')).event_id;
    expect(again).toBe(first);
    // The same ID from another device, or for another event type, is a new transaction.
    const other = await login(hs, alice.userId, 'pw-idem');
    const otherDevice = ok(await trySend(hs, { ...alice, ...other }, roomId, content, 'm.room.message', 'same-txn')).event_id;
    const otherType = ok(await trySend(hs, alice, roomId, content, 'org.example.other', 'same-txn')).event_id;
    expect(new Set([first, otherDevice, otherType]).size).toBe(3);
    const onces = (await history(hs, alice, roomId)).filter((e) => e.content.body === 'once');
    expect(onces.map((e) => e.event_id)).toEqual([first, otherDevice, otherType]);
    // The sending device sees its transaction ID on its own event.
    const s = await sync(hs, alice);
    const mine = s.rooms.join[roomId].timeline.events.find((e: any) => e.event_id === first);
    expect(mine.unsigned.transaction_id).toBe('same-txn');
  });

  test('put and get state: content or the whole event, the optional trailing slash, 404 for unset state, 403 for outsiders', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const roomId = await newRoom(hs, alice);
    const id = await setState(hs, alice, roomId, 'org.example.config', 'section', { on: true });
    expect(ok(await getState(hs, alice, roomId, 'org.example.config', 'section'))).toEqual({ on: true });
    const event = ok(await call(hs, 'GET', `${C}/rooms/${enc(roomId)}/state/org.example.config/section?format=event`, undefined, alice.accessToken));
    expect(event).toMatchObject({ event_id: id, type: 'org.example.config', state_key: 'section', sender: alice.userId, content: { on: true } });
    // An empty state key: with or without the trailing slash.
    ok(await call(hs, 'PUT', `${C}/rooms/${enc(roomId)}/state/m.room.topic`, { topic: 'no slash' }, alice.accessToken));
    expect(ok(await call(hs, 'GET', `${C}/rooms/${enc(roomId)}/state/m.room.topic/`, undefined, alice.accessToken)).topic).toBe('no slash');
    expectError(await getState(hs, alice, roomId, 'org.example.never'), 404, 'M_NOT_FOUND');
    const outsider = await newUser(hs);
    expectError(await getState(hs, outsider, roomId, 'm.room.topic'), 403, 'M_FORBIDDEN');
    expectError(await call(hs, 'PUT', `${C}/rooms/${enc(roomId)}/state/m.room.topic/`, { topic: 'x' }, outsider.accessToken), 403, 'M_FORBIDDEN');
  });

  test('GET /event/{eventId}: the event in its room; 404 from another room or for outsiders', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const roomId = await newRoom(hs, alice);
    const other = await newRoom(hs, alice);
    const id = await sendText(hs, alice, roomId, 'find me');
    const ev = ok(await call(hs, 'GET', `${C}/rooms/${enc(roomId)}/event/${enc(id)}`, undefined, alice.accessToken));
    expect(ev).toMatchObject({ event_id: id, room_id: roomId, type: 'm.room.message', content: { body: 'find me' } });
    expectError(await call(hs, 'GET', `${C}/rooms/${enc(other)}/event/${enc(id)}`, undefined, alice.accessToken), 404, 'M_NOT_FOUND');
    const outsider = await newUser(hs);
    expectError(await call(hs, 'GET', `${C}/rooms/${enc(roomId)}/event/${enc(id)}`, undefined, outsider.accessToken), 404, 'M_NOT_FOUND');
  });

  test('redact: the content goes, redacted_because comes; others need the redact level; idempotent by transaction', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, roomId);
    const mine = await send(hs, bob, roomId, { msgtype: 'm.text', body: 'oops' });
    const redactPath = (eventId: string, txn: string) => `${C}/rooms/${enc(roomId)}/redact/${enc(eventId)}/${txn}`;
    const r1 = ok(await call(hs, 'PUT', redactPath(mine, 'r1'), { reason: 'typo' }, bob.accessToken)).event_id;
    expect(ok(await call(hs, 'PUT', redactPath(mine, 'r1'), { reason: 'typo' }, bob.accessToken)).event_id).toBe(r1);
    const ev = ok(await call(hs, 'GET', `${C}/rooms/${enc(roomId)}/event/${enc(mine)}`, undefined, alice.accessToken));
    expect(ev.content).toEqual({});
    expect(ev.unsigned.redacted_because).toMatchObject({ event_id: r1, type: 'm.room.redaction', content: { reason: 'typo' } });

    const alices = await sendText(hs, alice, roomId, 'mine');
    expectError(await call(hs, 'PUT', redactPath(alices, 'r2'), {}, bob.accessToken), 403, 'M_FORBIDDEN');
    ok(await call(hs, 'PUT', redactPath(await sendText(hs, bob, roomId, 'again'), 'r3'), {}, alice.accessToken));
    expectError(await call(hs, 'PUT', redactPath('$nope', 'r4'), {}, alice.accessToken), 404, 'M_NOT_FOUND');
  });
});

// ---- Long polls

describe('/sync long polling', () => {
  test('one send wakes every waiting long poll at once: other members, several devices, the sender', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs, undefined, { password: 'pw-wake' });
    const bob = await newUser(hs);
    const carol = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, roomId);
    await joinRoom(hs, carol, roomId);
    const aliceLaptop = { ...alice, ...(await login(hs, alice.userId, 'pw-wake')) };
    const pollers = [alice, aliceLaptop, bob, carol, bob];
    const tokens = await Promise.all(pollers.map(async (u) => (await sync(hs, u)).next_batch as string));
    const polls = pollers.map((u, i) => sync(hs, u, { since: tokens[i], timeout: '20000' }));
    await new Promise((r) => setTimeout(r, 50));
    const started = performance.now();
    const eventId = await sendText(hs, alice, roomId, 'everyone wake up');
    const results = await Promise.all(polls);
    expect(performance.now() - started).toBeLessThan(2000);
    for (const s of results) {
      expect(s.rooms.join[roomId].timeline.events.map((e: any) => e.event_id)).toEqual([eventId]);
    }
  });
});

// ---- Profile changes reach the rooms

describe('profile', () => {
  test('a new display name and avatar become a new member event in every joined room, seen by the others', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const r1 = await newPublicRoom(hs, alice);
    const r2 = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, r1);
    await joinRoom(hs, bob, r2);
    const since = (await sync(hs, alice)).next_batch;
    ok(await call(hs, 'PUT', `${C}/profile/${enc(bob.userId)}/displayname`, { displayname: 'Robert' }, bob.accessToken));
    ok(await call(hs, 'PUT', `${C}/profile/${enc(bob.userId)}/avatar_url`, { avatar_url: 'mxc://example.org/bob' }, bob.accessToken));
    for (const roomId of [r1, r2]) {
      expect((await roomState(hs, alice, roomId)).get(`m.room.member|${bob.userId}`).content).toEqual({
        membership: 'join',
        displayname: 'Robert',
        avatar_url: 'mxc://example.org/bob',
      });
    }
    const s = await sync(hs, alice, { since });
    const seen = s.rooms.join[r1].timeline.events.filter((e: any) => e.type === 'm.room.member' && e.state_key === bob.userId);
    expect(seen.map((e: any) => e.content.displayname)).toEqual(['Robert', 'Robert']);
    expect(seen[1].unsigned.prev_content.avatar_url).toBeUndefined();
    expect(ok(await call(hs, 'GET', `${C}/rooms/${enc(r2)}/joined_members`, undefined, alice.accessToken)).joined[bob.userId]).toEqual({
      display_name: 'Robert',
      avatar_url: 'mxc://example.org/bob',
    });
  });
});

// ---- Login on an existing device: its end-to-end keys stay until a new identity replaces them

async function signedDeviceKeys(user: { userId: string; deviceId: string }): Promise<JsonObject> {
  const seed = generateSeed();
  const publicKey = publicKeyFromSeed(seed);
  const json = {
    user_id: user.userId,
    device_id: user.deviceId,
    algorithms: ['m.olm.v1.curve25519-aes-sha2', 'm.megolm.v1.aes-sha2'],
    keys: {
      [`curve25519:${user.deviceId}`]: encodeBase64(publicKeyFromSeed(generateSeed())),
      [`ed25519:${user.deviceId}`]: encodeBase64(publicKey),
    },
  };
  return signJson(json, user.userId, { keyId: `ed25519:${user.deviceId}`, seed, publicKey });
}

describe('POST /login with an existing device_id', () => {
  test("keeps the device's keys until the new client uploads different ones, which replace them", async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs, undefined, { password: 'pw-e2e', deviceId: 'PHONE' });
    const bob = await newUser(hs);
    const roomId = await newRoom(hs, alice, { invite: [bob.userId] });
    await joinRoom(hs, bob, roomId);
    const upload = (token: string, body: JsonObject) => call(hs, 'POST', `${C}/keys/upload`, body, token);
    const query = async () => ok(await call(hs, 'POST', `${C}/keys/query`, { device_keys: { [alice.userId]: [] } }, bob.accessToken)).device_keys[alice.userId];
    const claimPhone = async () =>
      ok(await call(hs, 'POST', `${C}/keys/claim`, { one_time_keys: { [alice.userId]: { PHONE: 'signed_curve25519' } } }, bob.accessToken)).one_time_keys;

    const oldKeys = await signedDeviceKeys(alice);
    const counts = ok(
      await upload(alice.accessToken, {
        device_keys: oldKeys,
        one_time_keys: {
          'signed_curve25519:AAAA': { key: 'old-otk', signatures: {} },
          'signed_curve25519:AAAB': { key: 'old-otk-2', signatures: {} },
        },
        fallback_keys: { 'signed_curve25519:FFFF': { key: 'old-fallback', fallback: true, signatures: {} } },
      }),
    ).one_time_key_counts;
    expect(counts.signed_curve25519).toBe(2);

    // A client logging in again after a soft logout keeps its keys and does not upload them again: they stay.
    const again = await login(hs, alice.userId, 'pw-e2e', { device_id: 'PHONE' });
    expect(again.deviceId).toBe('PHONE');
    expect((await query()).PHONE.keys).toEqual(oldKeys.keys);
    expect((await claimPhone())[alice.userId].PHONE).toEqual({ 'signed_curve25519:AAAA': { key: 'old-otk', signatures: {} } });
    const bobSince = (await sync(hs, bob)).next_batch;

    // A fresh client on the same device ID brings new identity keys: they replace the old ones, and the old
    // identity's one-time and fallback keys go with them.
    const fresh = await login(hs, alice.userId, 'pw-e2e', { device_id: 'PHONE' });
    const newKeys = await signedDeviceKeys(fresh);
    ok(await upload(fresh.accessToken, { device_keys: newKeys }));
    expect((await query()).PHONE.keys).toEqual(newKeys.keys);
    expect(await claimPhone()).toEqual({});
    const aliceSync = await sync(hs, { ...alice, ...fresh });
    expect(aliceSync.device_one_time_keys_count).toEqual({ signed_curve25519: 0 });
    expect(aliceSync.device_unused_fallback_key_types).toEqual([]);
    // Bob, who shares a room, hears that alice's keys changed.
    expect((await sync(hs, bob, { since: bobSince })).device_lists.changed).toContain(alice.userId);

    ok(await upload(fresh.accessToken, { one_time_keys: { 'signed_curve25519:BBBB': { key: 'new-otk', signatures: {} } } }));
    // Logging in to another device leaves PHONE's keys alone.
    const tablet = await login(hs, alice.userId, 'pw-e2e', { device_id: 'TABLET' });
    expect(tablet.deviceId).toBe('TABLET');
    expect((await query()).PHONE.keys).toEqual(newKeys.keys);
    expect((await claimPhone())[alice.userId].PHONE).toEqual({ 'signed_curve25519:BBBB': { key: 'new-otk', signatures: {} } });
  });
});
