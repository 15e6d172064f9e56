/**
 * Three homeservers on the in-memory network: a room on A, users on B and C invited and joined, messages in every
 * direction through /sync, profiles, typing and receipts across servers, C offline and back (it catches up), remote
 * joins by alias, rejecting a remote invite, leaving.
 * Spec: server-server-api.md (§Joining Rooms, §Inviting to a room, §Leaving Rooms, §Transactions, §EDUs).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call } from '../helpers/homeserver.js';
import { enc, invite, membership, newRoom, sendText, setState } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';
import type { Federation } from '../helpers/federation.js';
import { newFederation, SyncView } from '../helpers/federation.js';

const C = '/_matrix/client/v3';

let fed: Federation;
let a: Homeserver, b: Homeserver, c: Homeserver;
let alice: TestUser, bob: TestUser, carol: TestUser;
let room: string;
let va: SyncView, vb: SyncView, vc: SyncView;

async function join(hs: Homeserver, user: TestUser, roomIdOrAlias: string, via: string[] = []): Promise<string> {
  const q = via.length > 0 ? '?' + via.map((s) => `via=${enc(s)}`).join('&') : '';
  const res = await call(hs, 'POST', `${C}/join/${enc(roomIdOrAlias)}${q}`, {}, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.room_id;
}

/** The event IDs of a room's timeline as a server stores it from `fromId` on (sorted, for comparing servers). */
async function timelineIds(hs: Homeserver, roomId: string, fromId: string): Promise<string[]> {
  return hs.services.ctx.kv.read(async (tx) => {
    const rows = await tx.range<string>('room_timeline', { prefix: [roomId] });
    const ids = rows.map(([, id]) => id);
    return ids.slice(ids.indexOf(fromId)).sort();
  });
}

beforeAll(async () => {
  fed = await newFederation(3);
  [a, b, c] = fed.servers;
  alice = await newUser(a, 'alice');
  bob = await newUser(b, 'bob');
  carol = await newUser(c, 'carol');
  va = new SyncView(a, alice);
  vb = new SyncView(b, bob);
  vc = new SyncView(c, carol);
  await Promise.all([va.poll(), vb.poll(), vc.poll()]);
  room = await newRoom(a, alice, { name: 'Hearthside', room_alias_name: 'hearthside' });
});

afterAll(async () => {
  await fed?.stop();
});

describe('a room across three servers', () => {
  test('invites reach the remote users through /sync, with stripped state', async () => {
    await invite(a, alice, room, bob.userId);
    await invite(a, alice, room, carol.userId);
    const inv = await vb.until(() => vb.invites.get(room), 5000, 'invite on B');
    const types = inv.invite_state.events.map((e: any) => e.type);
    expect(types).toContain('m.room.create');
    expect(types).toContain('m.room.name');
    const own = inv.invite_state.events.find((e: any) => e.type === 'm.room.member' && e.state_key === bob.userId);
    expect(own.content.membership).toBe('invite');
    expect(own.sender).toBe(alice.userId);
    await vc.until(() => vc.invites.get(room), 5000, 'invite on C');
  });

  test('the invited users join through the inviting server and see the room', async () => {
    expect(await join(b, bob, room)).toBe(room);
    expect(await join(c, carol, room)).toBe(room);
    await fed.settle();
    for (const [hs, user] of [[a, alice], [b, bob], [c, carol]] as const) {
      const res = await call(hs, 'GET', `${C}/rooms/${enc(room)}/joined_members`, undefined, user.accessToken);
      expect(res.status).toBe(200);
      expect(Object.keys(res.body.joined).sort()).toEqual([alice.userId, bob.userId, carol.userId].sort());
      const name = await call(hs, 'GET', `${C}/rooms/${enc(room)}/state/m.room.name/`, undefined, user.accessToken);
      expect(name.body).toEqual({ name: 'Hearthside' });
    }
  });

  test('each server follows the room on its gossip topic once a user of it joined', () => {
    for (const hs of [a, b, c]) expect(fed.net.topicsOf(hs.serverName)).toContain(room);
  });

  test('messages in every direction arrive through /sync', async () => {
    await sendText(a, alice, room, 'from A');
    await sendText(b, bob, room, 'from B');
    await sendText(c, carol, room, 'from C');
    for (const v of [va, vb, vc]) {
      for (const m of ['from A', 'from B', 'from C']) await v.waitForMessage(room, m);
    }
    // Each server's own view keeps the remote senders.
    const fromB = (va.timeline.get(room) ?? []).find((e) => e.content?.body === 'from B');
    expect(fromB.sender).toBe(bob.userId);
  });

  test('gossip alone carries messages (while every /send is refused)', async () => {
    fed.net.intercept = (_from, _to, req) => (req.path.includes('/send/') ? { ...req, path: '/_matrix/federation/v1/refused' } : undefined);
    try {
      await sendText(a, alice, room, 'gossip only');
      await vb.waitForMessage(room, 'gossip only');
      await vc.waitForMessage(room, 'gossip only');
    } finally {
      fed.net.intercept = undefined;
    }
  });

  test('a display name change on B reaches A and C as a member event; profiles are queried remotely', async () => {
    const res = await call(b, 'PUT', `${C}/profile/${enc(bob.userId)}/displayname`, { displayname: 'Bobby' }, bob.accessToken);
    expect(res.status).toBe(200);
    for (const v of [va, vc]) {
      await v.until(
        () => (v.timeline.get(room) ?? []).some((e) => e.type === 'm.room.member' && e.state_key === bob.userId && e.content.displayname === 'Bobby'),
        5000,
        'new display name',
      );
    }
    const profile = await call(a, 'GET', `${C}/profile/${enc(bob.userId)}`);
    expect(profile.status).toBe(200);
    expect(profile.body.displayname).toBe('Bobby');
    const missing = await call(a, 'GET', `${C}/profile/${enc('@nobody:' + b.serverName)}`);
    expect(missing.status).toBe(404);
    expect(missing.body.errcode).toBe('M_NOT_FOUND');
  });

  test('typing and read receipts cross servers', async () => {
    const t = await call(b, 'PUT', `${C}/rooms/${enc(room)}/typing/${enc(bob.userId)}`, { typing: true, timeout: 10000 }, bob.accessToken);
    expect(t.status).toBe(200);
    for (const v of [va, vc]) {
      await v.until(
        () => (v.ephemeral.get(room) ?? []).some((e) => e.type === 'm.typing' && e.content.user_ids.includes(bob.userId)),
        5000,
        'typing',
      );
    }
    const last = (va.timeline.get(room) ?? []).filter((e) => e.type === 'm.room.message').pop();
    const r = await call(a, 'POST', `${C}/rooms/${enc(room)}/receipt/m.read/${enc(last.event_id)}`, {}, alice.accessToken);
    expect(r.status).toBe(200);
    await vb.until(
      () => (vb.ephemeral.get(room) ?? []).some((e) => e.type === 'm.receipt' && e.content[last.event_id]?.['m.read']?.[alice.userId]),
      5000,
      'receipt',
    );
  });

  test('C goes offline, A and B keep talking, C comes back and catches up completely', async () => {
    fed.offline(c);
    for (let i = 0; i < 5; i++) {
      await sendText(a, alice, room, `while away A${i}`);
      await sendText(b, bob, room, `while away B${i}`);
    }
    await setState(a, alice, room, 'm.room.topic', '', { topic: 'changed while C was away' });
    await fed.settle();
    expect(vc.messages(room)).not.toContain('while away A0');
    fed.online(c);
    for (let i = 0; i < 5; i++) {
      await vc.waitForMessage(room, `while away A${i}`);
      await vc.waitForMessage(room, `while away B${i}`);
    }
    await fed.settle();
    const topic = await call(c, 'GET', `${C}/rooms/${enc(room)}/state/m.room.topic/`, undefined, carol.accessToken);
    expect(topic.body.topic).toBe('changed while C was away');
    // Everything since carol joined (C holds no history from before its join).
    const carolJoin = (va.timeline.get(room) ?? []).find((e) => e.type === 'm.room.member' && e.state_key === carol.userId && e.content.membership === 'join');
    const [ta, tb, tc] = await Promise.all([a, b, c].map((hs) => timelineIds(hs, room, carolJoin.event_id)));
    expect(ta.length).toBeGreaterThan(11);
    expect(tc).toEqual(ta);
    expect(tb).toEqual(ta);
  });

  test('C catches up with get_missing_events when the events it missed were never queued for it', async () => {
    // A message goes out while C is unreachable and A forgets its queue (as after a crash): the next event names
    // it as a prev event, and C fetches it.
    fed.offline(c);
    await sendText(a, alice, room, 'lost in a crash');
    await fed.settle();
    await a.federation.sender.forget(c.serverName);
    fed.online(c);
    const asked: string[] = [];
    fed.net.intercept = (from, _to, req) => {
      if (from === c.serverName) asked.push(req.path.split('/')[4]);
      return undefined;
    };
    // A fresh message from B: it references the lost one, which C then asks B for.
    await sendText(b, bob, room, 'after the crash');
    await vc.waitForMessage(room, 'after the crash');
    fed.net.intercept = undefined;
    expect(vc.messages(room)).toContain('lost in a crash');
    expect(asked).toContain('get_missing_events');
  });
});

describe('joining by alias, rejecting and leaving', () => {
  test('a user on B joins a public room of A by its alias (query/directory, then make_join/send_join)', async () => {
    const pub = await newRoom(a, alice, { preset: 'public_chat', room_alias_name: 'lobby' });
    const dave = await newUser(b, 'dave');
    const alias = `#lobby:${a.serverName}`;
    const res = await call(b, 'POST', `${C}/join/${enc(alias)}`, {}, dave.accessToken);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.room_id).toBe(pub);
    const unknown = await call(b, 'POST', `${C}/join/${enc(`#nope:${a.serverName}`)}`, {}, dave.accessToken);
    expect(unknown.status).toBe(404);
    expect(unknown.body.errcode).toBe('M_NOT_FOUND');
  });

  test('an invite-only room of A refuses a user on C who was not invited', async () => {
    const closed = await newRoom(a, alice);
    const erin = await newUser(c, 'erin');
    const res = await call(c, 'POST', `${C}/join/${enc(closed)}?via=${enc(a.serverName)}`, {}, erin.accessToken);
    expect(res.status).toBe(403);
    expect(res.body.errcode).toBe('M_FORBIDDEN');
  });

  test('a user on C rejects a remote invite; A sees the leave', async () => {
    const other = await newRoom(a, alice);
    const frank = await newUser(c, 'frank');
    const vf = new SyncView(c, frank);
    await vf.poll();
    await invite(a, alice, other, frank.userId);
    await vf.until(() => vf.invites.get(other), 5000, 'invite');
    const res = await membership(c, frank, other, 'leave');
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    await vf.until(() => vf.left.has(other), 5000, 'rejected invite in leave');
    await fed.settle();
    const members = await call(a, 'GET', `${C}/rooms/${enc(other)}/members`, undefined, alice.accessToken);
    const m = members.body.chunk.find((e: any) => e.state_key === frank.userId);
    expect(m.content.membership).toBe('leave');
  });

  test('bob leaves the room; B stops getting its messages and A no longer sends to B', async () => {
    expect((await membership(b, bob, room, 'leave')).status).toBe(200);
    await fed.settle();
    const members = await call(a, 'GET', `${C}/rooms/${enc(room)}/joined_members`, undefined, alice.accessToken);
    expect(Object.keys(members.body.joined)).not.toContain(bob.userId);
    expect((await a.federation.servers.get(room)).has(b.serverName)).toBe(false);
    expect(fed.net.topicsOf(b.serverName)).not.toContain(room);
  });

  test('inviting a user of an unreachable server fails cleanly', async () => {
    const other = await newRoom(a, alice);
    fed.offline(c);
    const res = await call(a, 'POST', `${C}/rooms/${enc(other)}/invite`, { user_id: carol.userId }, alice.accessToken);
    fed.online(c);
    expect(res.status).toBe(502);
    expect(res.body.errcode).toBe('M_UNKNOWN');
  });
});
