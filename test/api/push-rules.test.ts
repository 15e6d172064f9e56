/**
 * Push rules API (pushrules.yaml), the m.push_rules account data in /sync, notification counts in /sync
 * (unread_notifications, unread_thread_notifications) and GET /notifications (notifications.yaml).
 */
import { beforeEach, describe, expect, test } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { MAX_RULE_VERSIONS, UNREAD_SCAN_LIMIT } from '../../src/services/push-rules.js';
import { STORES } from '../../src/storage/schema.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import { enc, joinRoom, newPublicRoom, newRoom, send, sendText } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';

const C = '/_matrix/client/v3';
const R = `${C}/pushrules/global`;

let hs: Homeserver;
let alice: TestUser;

beforeEach(async () => {
  hs = await newHomeserver();
  alice = await newUser(hs, 'alice');
});

const get = (path: string, user = alice) => call(hs, 'GET', path, undefined, user.accessToken);
const put = (path: string, body: unknown, user = alice) => call(hs, 'PUT', path, body, user.accessToken);
const del = (path: string, user = alice) => call(hs, 'DELETE', path, undefined, user.accessToken);

function expectError(res: { status: number; body: any }, status: number, errcode: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body.errcode).toBe(errcode);
}

async function ruleIds(kind: string, user = alice): Promise<string[]> {
  const res = await get(`${R}/`, user);
  expect(res.status).toBe(200);
  return res.body[kind].map((r: { rule_id: string }) => r.rule_id);
}

async function sync(user: TestUser, params: Record<string, string> = {}) {
  const q = new URLSearchParams({ set_presence: 'offline', ...params }).toString();
  const res = await call(hs, 'GET', `${C}/sync?${q}`, undefined, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

describe('reading the rules', () => {
  test('GET /pushrules/ has the global ruleset with every default rule for this user', async () => {
    const res = await get(`${C}/pushrules/`);
    expect(res.status).toBe(200);
    const g = res.body.global;
    expect(Object.keys(g).sort()).toEqual(['content', 'override', 'room', 'sender', 'underride']);
    expect(g.override[0]).toEqual({ rule_id: '.m.rule.master', default: true, enabled: false, actions: [], conditions: [] });
    const invite = g.override.find((r: any) => r.rule_id === '.m.rule.invite_for_me');
    expect(invite.conditions).toContainEqual({ kind: 'event_match', key: 'state_key', pattern: alice.userId });
    expect(g.content).toEqual([
      { rule_id: '.m.rule.contains_user_name', default: true, enabled: true, pattern: 'alice', actions: ['notify', { set_tweak: 'sound', value: 'default' }, { set_tweak: 'highlight' }] },
    ]);
    expect(g.underride.map((r: any) => r.rule_id)).toContain('.m.rule.message');
  });

  test('GET /pushrules/global/ (with or without the slash) is the same ruleset', async () => {
    const all = await get(`${C}/pushrules/`);
    expect((await get(`${R}/`)).body).toEqual(all.body.global);
    expect((await get(R)).body).toEqual(all.body.global);
  });

  test('GET one rule, its enabled flag and its actions', async () => {
    const res = await get(`${R}/underride/.m.rule.message`);
    expect(res.body).toEqual({
      rule_id: '.m.rule.message',
      default: true,
      enabled: true,
      actions: ['notify'],
      conditions: [{ kind: 'event_match', key: 'type', pattern: 'm.room.message' }],
    });
    expect((await get(`${R}/override/.m.rule.master/enabled`)).body).toEqual({ enabled: false });
    expect((await get(`${R}/underride/.m.rule.call/actions`)).body).toEqual({ actions: ['notify', { set_tweak: 'sound', value: 'ring' }] });
  });

  test('unknown rule → 404 M_NOT_FOUND; unknown kind → 400 M_INVALID_PARAM; rule of another kind → 404', async () => {
    expectError(await get(`${R}/override/nope`), 404, 'M_NOT_FOUND');
    expectError(await get(`${R}/override/nope/enabled`), 404, 'M_NOT_FOUND');
    expectError(await get(`${R}/override/nope/actions`), 404, 'M_NOT_FOUND');
    expectError(await get(`${R}/sideways/.m.rule.master`), 400, 'M_INVALID_PARAM');
    expectError(await get(`${R}/underride/.m.rule.master`), 404, 'M_NOT_FOUND');
  });

  test('without a token → 401 M_MISSING_TOKEN; a guest → 403 M_GUEST_ACCESS_FORBIDDEN', async () => {
    expectError(await call(hs, 'GET', `${C}/pushrules/`), 401, 'M_MISSING_TOKEN');
    const g = await call(hs, 'POST', `${C}/register?kind=guest`, {});
    expect(g.status).toBe(200);
    const guest = { userId: g.body.user_id, accessToken: g.body.access_token, deviceId: g.body.device_id };
    expectError(await get(`${C}/pushrules/`, guest), 403, 'M_GUEST_ACCESS_FORBIDDEN');
    expectError(await put(`${R}/override/x`, { actions: [] }, guest), 403, 'M_GUEST_ACCESS_FORBIDDEN');
  });
});

describe('adding, ordering and deleting rules', () => {
  test('a new rule is enabled, user rules come before the defaults of their kind, master stays first', async () => {
    const res = await put(`${R}/override/quiet`, { actions: [], conditions: [{ kind: 'event_match', key: 'content.body', pattern: 'shh' }] });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toEqual({});
    expect((await get(`${R}/override/quiet`)).body).toEqual({
      rule_id: 'quiet',
      default: false,
      enabled: true,
      actions: [],
      conditions: [{ kind: 'event_match', key: 'content.body', pattern: 'shh' }],
    });
    expect((await ruleIds('override')).slice(0, 3)).toEqual(['.m.rule.master', 'quiet', '.m.rule.suppress_notices']);
  });

  test('content, room and sender rules; override without conditions matches everything', async () => {
    const roomId = await newRoom(hs, alice);
    expect((await put(`${R}/content/cake`, { pattern: 'cake*lie', actions: ['notify'] })).status).toBe(200);
    expect((await put(`${R}/room/${enc(roomId)}`, { actions: ['dont_notify'] })).status).toBe(200);
    expect((await put(`${R}/sender/${enc('@spam:example.org')}`, { actions: [] })).status).toBe(200);
    expect((await put(`${R}/underride/all`, { actions: ['notify'] })).status).toBe(200);
    expect((await get(`${R}/content/cake`)).body).toEqual({ rule_id: 'cake', default: false, enabled: true, pattern: 'cake*lie', actions: ['notify'] });
    // Historical actions are kept as given (clients recognise a muted room by them); evaluation ignores them.
    expect((await get(`${R}/room/${enc(roomId)}`)).body).toEqual({ rule_id: roomId, default: false, enabled: true, actions: ['dont_notify'] });
    expect((await get(`${R}/underride/all`)).body.conditions).toEqual([]);
    expect(await ruleIds('content')).toEqual(['cake', '.m.rule.contains_user_name']);
    expect(await ruleIds('sender')).toEqual(['@spam:example.org']);
  });

  test('before and after place a rule; before wins over after; no position means most important', async () => {
    const add = (id: string, q = '') => put(`${R}/override/${id}${q}`, { actions: [], conditions: [] });
    expect((await add('a')).status).toBe(200);
    expect((await add('b')).status).toBe(200);
    expect((await ruleIds('override')).slice(1, 3)).toEqual(['b', 'a']);
    expect((await add('c', '?after=b')).status).toBe(200);
    expect((await add('d', '?before=b')).status).toBe(200);
    expect((await add('e', '?before=a&after=d')).status).toBe(200);
    expect((await ruleIds('override')).slice(1, 6)).toEqual(['d', 'b', 'c', 'e', 'a']);
  });

  test('replacing a rule keeps it disabled if it was, and moves it to the top (as Synapse)', async () => {
    await put(`${R}/override/a`, { actions: [], conditions: [] });
    await put(`${R}/override/b`, { actions: [], conditions: [] });
    expect((await put(`${R}/override/a/enabled`, { enabled: false })).status).toBe(200);
    expect((await put(`${R}/override/a`, { actions: ['notify'], conditions: [] })).status).toBe(200);
    expect((await get(`${R}/override/a`)).body).toMatchObject({ enabled: false, actions: ['notify'] });
    expect((await ruleIds('override')).slice(1, 3)).toEqual(['a', 'b']);
  });

  test('bad input', async () => {
    const ok = { actions: ['notify'], conditions: [] };
    expectError(await put(`${R}/override/.m.rule.master`, ok), 400, 'M_INVALID_PARAM');
    expectError(await put(`${R}/override/.mine`, ok), 400, 'M_INVALID_PARAM');
    expectError(await put(`${R}/override/${enc('a/b')}`, ok), 400, 'M_INVALID_PARAM');
    expectError(await put(`${R}/override/${enc('a\\b')}`, ok), 400, 'M_INVALID_PARAM');
    expectError(await put(`${R}/sideways/x`, ok), 400, 'M_INVALID_PARAM');
    expectError(await put(`${R}/override/x`, { conditions: [] }), 400, 'M_MISSING_PARAM');
    expectError(await put(`${R}/override/x`, { actions: 'notify' }), 400, 'M_BAD_JSON');
    expectError(await put(`${R}/override/x`, { actions: ['shout'] }), 400, 'M_INVALID_PARAM');
    expectError(await put(`${R}/override/x`, { actions: [{ value: 'x' }] }), 400, 'M_INVALID_PARAM');
    expectError(await put(`${R}/override/x`, { actions: [{ set_tweak: 'highlight', value: 'yes' }] }), 400, 'M_INVALID_PARAM');
    expectError(await put(`${R}/override/x`, { actions: [], conditions: 'all' }), 400, 'M_BAD_JSON');
    expectError(await put(`${R}/override/x`, { actions: [], conditions: [{ key: 'type' }] }), 400, 'M_MISSING_PARAM');
    expectError(await put(`${R}/content/x`, { actions: [] }), 400, 'M_MISSING_PARAM');
    expectError(await put(`${R}/content/x`, { actions: [], pattern: 3 }), 400, 'M_BAD_JSON');
    expectError(await put(`${R}/room/not-a-room`, { actions: [] }), 400, 'M_INVALID_PARAM');
    expectError(await put(`${R}/sender/not-a-user`, { actions: [] }), 400, 'M_INVALID_PARAM');
    expectError(await put(`${R}/override/x?before=nope`, ok), 404, 'M_NOT_FOUND');
    expectError(await put(`${R}/override/x?after=nope`, ok), 404, 'M_NOT_FOUND');
    expectError(await put(`${R}/override/x?before=.m.rule.master`, ok), 400, 'M_INVALID_PARAM');
    expectError(await call(hs, 'PUT', `${R}/override/x`, '{"actions":', alice.accessToken), 400, 'M_NOT_JSON');
    // Nothing was stored by any of these.
    expect(await ruleIds('override')).not.toContain('x');
    expect(await ruleIds('content')).toEqual(['.m.rule.contains_user_name']);
  });

  test('DELETE removes a user rule; server-default and unknown rules → 404; unknown kind → 400', async () => {
    await put(`${R}/sender/${enc('@spam:example.org')}`, { actions: [] });
    const res = await del(`${R}/sender/${enc('@spam:example.org')}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
    expect(await ruleIds('sender')).toEqual([]);
    expectError(await del(`${R}/sender/${enc('@spam:example.org')}`), 404, 'M_NOT_FOUND');
    expectError(await del(`${R}/override/.m.rule.master`), 404, 'M_NOT_FOUND');
    expectError(await del(`${R}/sideways/x`), 400, 'M_INVALID_PARAM');
  });

  test('only the last MAX_RULE_VERSIONS versions of the rules are kept', async () => {
    for (let i = 0; i < MAX_RULE_VERSIONS + 3; i++) {
      expect((await put(`${R}/override/.m.rule.master/enabled`, { enabled: i % 2 === 0 })).status).toBe(200);
    }
    const { versions, record } = await hs.services.ctx.kv.read(async (tx) => ({
      versions: await tx.count(STORES.pushRules, { gte: [alice.userId, 0], lte: [alice.userId, Number.MAX_SAFE_INTEGER] }),
      record: await tx.get<{ pruned?: boolean }>(STORES.pushRules, [alice.userId]),
    }));
    expect(versions).toBe(MAX_RULE_VERSIONS);
    expect(record?.pruned).toBe(true);
    // The last change (i = MAX_RULE_VERSIONS + 2, even) enabled it.
    expect((await get(`${R}/override/.m.rule.master/enabled`)).body).toEqual({ enabled: true });
  });

  test('a user\'s rules are their own', async () => {
    const bob = await newUser(hs, 'bob');
    await put(`${R}/override/mine`, { actions: [], conditions: [] });
    expect(await ruleIds('override', bob)).not.toContain('mine');
    expectError(await get(`${R}/override/mine`, bob), 404, 'M_NOT_FOUND');
    expect((await get(`${C}/pushrules/`, bob)).body.global.content[0].pattern).toBe('bob');
  });
});

describe('enabled and actions', () => {
  test('server-default rules can be enabled, disabled and given new actions', async () => {
    expect((await put(`${R}/override/.m.rule.master/enabled`, { enabled: true })).status).toBe(200);
    expect((await get(`${R}/override/.m.rule.master/enabled`)).body).toEqual({ enabled: true });
    expect((await put(`${R}/underride/.m.rule.message/actions`, { actions: ['notify', { set_tweak: 'sound', value: 'bing' }] })).status).toBe(200);
    expect((await get(`${R}/underride/.m.rule.message`)).body).toMatchObject({
      default: true,
      enabled: true,
      actions: ['notify', { set_tweak: 'sound', value: 'bing' }],
    });
    // Changing one field keeps the other.
    expect((await put(`${R}/underride/.m.rule.message/enabled`, { enabled: false })).status).toBe(200);
    expect((await get(`${R}/underride/.m.rule.message`)).body).toMatchObject({ enabled: false, actions: ['notify', { set_tweak: 'sound', value: 'bing' }] });
  });

  test('user rules too', async () => {
    await put(`${R}/override/mine`, { actions: [], conditions: [] });
    expect((await put(`${R}/override/mine/enabled`, { enabled: false })).status).toBe(200);
    expect((await put(`${R}/override/mine/actions`, { actions: ['notify'] })).status).toBe(200);
    expect((await get(`${R}/override/mine`)).body).toMatchObject({ enabled: false, actions: ['notify'] });
  });

  test('bad input', async () => {
    expectError(await put(`${R}/override/nope/enabled`, { enabled: true }), 404, 'M_NOT_FOUND');
    expectError(await put(`${R}/override/nope/actions`, { actions: [] }), 404, 'M_NOT_FOUND');
    expectError(await put(`${R}/sideways/x/enabled`, { enabled: true }), 400, 'M_INVALID_PARAM');
    expectError(await put(`${R}/sideways/x/actions`, { actions: [] }), 400, 'M_INVALID_PARAM');
    expectError(await put(`${R}/override/.m.rule.master/enabled`, { enabled: 'yes' }), 400, 'M_BAD_JSON');
    expectError(await put(`${R}/override/.m.rule.master/enabled`, {}), 400, 'M_MISSING_PARAM');
    expectError(await put(`${R}/override/.m.rule.master/actions`, {}), 400, 'M_MISSING_PARAM');
    expectError(await put(`${R}/override/.m.rule.master/actions`, { actions: {} }), 400, 'M_BAD_JSON');
    expectError(await put(`${R}/override/.m.rule.master/actions`, { actions: ['shout'] }), 400, 'M_INVALID_PARAM');
    expect((await get(`${R}/override/.m.rule.master`)).body).toMatchObject({ enabled: false, actions: [] });
  });
});

describe('m.push_rules in /sync', () => {
  test('in the initial sync; again in the next incremental sync after a change, and only then', async () => {
    const first = await sync(alice);
    const ev = first.account_data.events.find((e: any) => e.type === 'm.push_rules');
    expect(ev.content).toEqual((await get(`${C}/pushrules/`)).body);

    const quiet = await sync(alice, { since: first.next_batch });
    expect(quiet.account_data.events.map((e: any) => e.type)).not.toContain('m.push_rules');

    // A waiting sync wakes for the change.
    const waiting = sync(alice, { since: quiet.next_batch, timeout: '10000' });
    await put(`${R}/override/.m.rule.master/enabled`, { enabled: true });
    const next = await waiting;
    const changed = next.account_data.events.find((e: any) => e.type === 'm.push_rules');
    expect(changed.content.global.override[0]).toMatchObject({ rule_id: '.m.rule.master', enabled: true });
  });

  test('an account_data filter can leave it out; the server refuses to store it as account data', async () => {
    const s = await sync(alice, { filter: JSON.stringify({ account_data: { not_types: ['m.push_rules'] } }) });
    expect(s.account_data.events).toEqual([]);
    const res = await put(`${C}/user/${enc(alice.userId)}/account_data/m.push_rules`, { global: {} });
    expectError(res, 405, 'M_BAD_JSON');
  });

  test('GET account_data/m.push_rules answers with the rules (as Synapse)', async () => {
    await put(`${R}/override/.m.rule.master/enabled`, { enabled: true });
    const res = await get(`${C}/user/${enc(alice.userId)}/account_data/m.push_rules`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual((await get(`${C}/pushrules/`)).body);
    expect(res.body.global.override[0].enabled).toBe(true);
  });
});

describe('notification counts in /sync', () => {
  let bob: TestUser;
  let carol: TestUser;
  let roomId: string;

  beforeEach(async () => {
    bob = await newUser(hs, 'bob');
    carol = await newUser(hs, 'carol');
    roomId = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, roomId);
    await joinRoom(hs, carol, roomId);
  });

  async function counts(user = alice, params: Record<string, string> = {}) {
    const s = await sync(user, params);
    return s.rooms.join[roomId].unread_notifications;
  }
  const receipt = (eventId: string, type = 'm.read', body: Record<string, unknown> = {}, user = alice) =>
    call(hs, 'POST', `${C}/rooms/${enc(roomId)}/receipt/${type}/${enc(eventId)}`, body, user.accessToken);

  test('messages notify; mentions highlight; notices, edits and reactions do not', async () => {
    expect(await counts()).toEqual({ notification_count: 0, highlight_count: 0 });
    const one = await sendText(hs, bob, roomId, 'hello all');
    await send(hs, bob, roomId, { msgtype: 'm.notice', body: 'a bot speaks' });
    await send(hs, bob, roomId, { msgtype: 'm.text', body: '* hello', 'm.new_content': { msgtype: 'm.text', body: 'hello' }, 'm.relates_to': { rel_type: 'm.replace', event_id: one } });
    await send(hs, carol, roomId, { 'm.relates_to': { rel_type: 'm.annotation', event_id: one, key: '👍' } }, 'm.reaction');
    expect(await counts()).toEqual({ notification_count: 1, highlight_count: 0 });
    await send(hs, bob, roomId, { msgtype: 'm.text', body: 'you there?', 'm.mentions': { user_ids: [alice.userId] } });
    await sendText(hs, carol, roomId, 'alice: lunch?');
    expect(await counts()).toEqual({ notification_count: 3, highlight_count: 2 });
    // The senders' own counts do not include their own messages.
    expect(await counts(bob)).toEqual({ notification_count: 1, highlight_count: 0 });
  });

  test('m.read and m.read.private receipts move the start of the count; the later one wins', async () => {
    const a = await sendText(hs, bob, roomId, 'a');
    const b = await sendText(hs, bob, roomId, 'b');
    const c = await sendText(hs, bob, roomId, 'c');
    expect(await counts()).toEqual({ notification_count: 3, highlight_count: 0 });
    expect((await receipt(b, 'm.read.private')).status).toBe(200);
    expect(await counts()).toEqual({ notification_count: 1, highlight_count: 0 });
    // An older public receipt does not move it back.
    expect((await receipt(a, 'm.read')).status).toBe(200);
    expect(await counts()).toEqual({ notification_count: 1, highlight_count: 0 });
    expect((await receipt(c, 'm.read')).status).toBe(200);
    expect(await counts()).toEqual({ notification_count: 0, highlight_count: 0 });
    await sendText(hs, bob, roomId, 'd');
    expect(await counts()).toEqual({ notification_count: 1, highlight_count: 0 });
  });

  test('the user\'s own message reads everything before it', async () => {
    await sendText(hs, bob, roomId, 'a');
    await sendText(hs, bob, roomId, 'b');
    await sendText(hs, alice, roomId, 'caught up');
    expect(await counts()).toEqual({ notification_count: 0, highlight_count: 0 });
    await sendText(hs, bob, roomId, 'c');
    expect(await counts()).toEqual({ notification_count: 1, highlight_count: 0 });
  });

  test('counts follow incremental syncs and arrive with the event', async () => {
    const start = await sync(alice);
    await sendText(hs, bob, roomId, 'hello alice');
    const s = await sync(alice, { since: start.next_batch });
    const room = s.rooms.join[roomId];
    expect(room.timeline.events.map((e: any) => e.content.body)).toEqual(['hello alice']);
    expect(room.unread_notifications).toEqual({ notification_count: 1, highlight_count: 1 });
    const id = room.timeline.events[0].event_id;
    await receipt(id);
    const after = await sync(alice, { since: s.next_batch });
    expect(after.rooms.join[roomId].unread_notifications).toEqual({ notification_count: 0, highlight_count: 0 });
  });

  test('the user\'s rules decide: a disabled rule, a muted room, a muted sender, an enabled master', async () => {
    const before = await sendText(hs, bob, roomId, 'before');
    await put(`${R}/underride/.m.rule.message/enabled`, { enabled: false });
    await sendText(hs, bob, roomId, 'silent');
    expect(await counts()).toEqual({ notification_count: 1, highlight_count: 0 });
    await put(`${R}/underride/.m.rule.message/enabled`, { enabled: true });
    // Events are judged by the rules in force when they arrived: 'silent' stays silent, also when everything
    // after a new receipt is counted afresh.
    await sendText(hs, bob, roomId, 'loud');
    expect(await counts()).toEqual({ notification_count: 2, highlight_count: 0 });
    expect((await receipt(before)).status).toBe(200);
    expect(await counts()).toEqual({ notification_count: 1, highlight_count: 0 });

    await put(`${R}/sender/${enc(carol.userId)}`, { actions: [] });
    await sendText(hs, carol, roomId, 'ignored');
    expect(await counts()).toEqual({ notification_count: 1, highlight_count: 0 });

    await put(`${R}/room/${enc(roomId)}`, { actions: ['notify', { set_tweak: 'highlight' }] });
    await sendText(hs, bob, roomId, 'everything highlights here');
    expect(await counts()).toEqual({ notification_count: 2, highlight_count: 1 });

    await put(`${R}/override/.m.rule.master/enabled`, { enabled: true });
    await send(hs, bob, roomId, { msgtype: 'm.text', body: 'even this', 'm.mentions': { user_ids: [alice.userId] } });
    expect(await counts()).toEqual({ notification_count: 2, highlight_count: 1 });
  });

  test('one-to-one rooms and @room from a sender with the power for it', async () => {
    const dm = await newRoom(hs, bob, { invite: [alice.userId], is_direct: true });
    await joinRoom(hs, alice, dm);
    await sendText(hs, bob, dm, 'psst');
    const s = await sync(alice);
    expect(s.rooms.join[dm].unread_notifications).toEqual({ notification_count: 1, highlight_count: 0 });

    // In the group room alice (creator, 100) may @room; bob (0) may not.
    await send(hs, bob, roomId, { msgtype: 'm.text', body: 'everyone!', 'm.mentions': { room: true } });
    expect(await counts(carol)).toEqual({ notification_count: 1, highlight_count: 0 });
    await send(hs, alice, roomId, { msgtype: 'm.text', body: 'everyone!', 'm.mentions': { room: true } });
    expect(await counts(carol)).toEqual({ notification_count: 2, highlight_count: 1 });
  });

  test('unread_thread_notifications when the filter asks; thread receipts clear one thread', async () => {
    const root = await sendText(hs, bob, roomId, 'thread root');
    const inThread = (body: string, extra: Record<string, unknown> = {}) =>
      send(hs, bob, roomId, { msgtype: 'm.text', body, 'm.relates_to': { rel_type: 'm.thread', event_id: root }, ...extra });
    const t1 = await inThread('t1');
    await inThread('t2', { 'm.mentions': { user_ids: [alice.userId] } });
    // A reaction to a thread message belongs to that thread (and does not notify).
    await send(hs, carol, roomId, { 'm.relates_to': { rel_type: 'm.annotation', event_id: t1, key: 'x' } }, 'm.reaction');
    await sendText(hs, carol, roomId, 'main again');

    const threaded = { filter: JSON.stringify({ room: { timeline: { unread_thread_notifications: true } } }) };
    let s = await sync(alice, threaded);
    expect(s.rooms.join[roomId].unread_notifications).toEqual({ notification_count: 2, highlight_count: 0 });
    expect(s.rooms.join[roomId].unread_thread_notifications).toEqual({ [root]: { notification_count: 2, highlight_count: 1 } });
    // Without the filter option: all in one count, and no per-thread object.
    s = await sync(alice);
    expect(s.rooms.join[roomId].unread_notifications).toEqual({ notification_count: 4, highlight_count: 1 });
    expect(s.rooms.join[roomId].unread_thread_notifications).toBeUndefined();

    // A receipt in the thread clears the thread; one for the main timeline clears the main timeline.
    expect((await receipt(t1, 'm.read', { thread_id: root })).status).toBe(200);
    s = await sync(alice, threaded);
    expect(s.rooms.join[roomId].unread_thread_notifications).toEqual({ [root]: { notification_count: 1, highlight_count: 1 } });
    expect(s.rooms.join[roomId].unread_notifications).toEqual({ notification_count: 2, highlight_count: 0 });
    const last = s.rooms.join[roomId].timeline.events.at(-1).event_id;
    expect((await receipt(last, 'm.read', { thread_id: 'main' })).status).toBe(200);
    s = await sync(alice, threaded);
    expect(s.rooms.join[roomId].unread_notifications).toEqual({ notification_count: 0, highlight_count: 0 });
    expect(s.rooms.join[roomId].unread_thread_notifications).toEqual({ [root]: { notification_count: 1, highlight_count: 1 } });
    // An unthreaded receipt clears everything before it.
    expect((await receipt(last, 'm.read')).status).toBe(200);
    s = await sync(alice, threaded);
    expect(s.rooms.join[roomId].unread_thread_notifications).toBeUndefined();
  });

  test('past UNREAD_SCAN_LIMIT unread events: the count reports the limit, and a new event reads only itself', async () => {
    for (let i = 0; i < UNREAD_SCAN_LIMIT + 20; i++) await sendText(hs, bob, roomId, `m${i}`);
    const start = await sync(alice);
    expect(start.rooms.join[roomId].unread_notifications).toEqual({ notification_count: UNREAD_SCAN_LIMIT, highlight_count: 0 });

    // Count the timeline rows the next incremental sync reads.
    const kv = hs.services.ctx.kv;
    const read = kv.read.bind(kv);
    let rows = 0;
    kv.read = (fn) =>
      read((tx) =>
        fn({
          ...tx,
          get: tx.get.bind(tx),
          getMany: tx.getMany.bind(tx),
          count: tx.count.bind(tx),
          range: async (store, opts) => {
            const r = await tx.range(store, opts);
            if (store === STORES.roomTimeline) rows += r.length;
            return r;
          },
        } as typeof tx),
      );
    try {
      await send(hs, bob, roomId, { msgtype: 'm.text', body: 'and you', 'm.mentions': { user_ids: [alice.userId] } });
      const s = await sync(alice, { since: start.next_batch });
      expect(s.rooms.join[roomId].unread_notifications).toEqual({ notification_count: UNREAD_SCAN_LIMIT, highlight_count: 1 });
      expect(rows).toBeLessThan(50);
    } finally {
      kv.read = read;
    }
    // A receipt on the first of the last 30 events gives exact counts again: the 29 after it.
    const mid = (await sync(alice, { filter: JSON.stringify({ room: { timeline: { limit: 30 } } }) })).rooms.join[roomId].timeline.events[0].event_id;
    await receipt(mid);
    expect(await counts()).toEqual({ notification_count: 29, highlight_count: 1 });
  }, 60_000);

  test('redacting a counted event takes it out', async () => {
    const id = await send(hs, bob, roomId, { msgtype: 'm.text', body: 'oops', 'm.mentions': { user_ids: [alice.userId] } });
    const start = await sync(alice);
    expect(start.rooms.join[roomId].unread_notifications).toEqual({ notification_count: 1, highlight_count: 1 });
    expect((await call(hs, 'PUT', `${C}/rooms/${enc(roomId)}/redact/${enc(id)}/r1`, {}, bob.accessToken)).status).toBe(200);
    const s = await sync(alice, { since: start.next_batch });
    expect(s.rooms.join[roomId].unread_notifications).toEqual({ notification_count: 0, highlight_count: 0 });
  });
});

describe('GET /notifications', () => {
  let bob: TestUser;
  let roomId: string;

  beforeEach(async () => {
    bob = await newUser(hs, 'bob');
    roomId = await newPublicRoom(hs, alice);
    await joinRoom(hs, bob, roomId);
    await joinRoom(hs, await newUser(hs, 'carol'), roomId);
  });

  test('lists the events that notified, newest first, with actions and read state', async () => {
    const a = await sendText(hs, bob, roomId, 'a');
    await send(hs, bob, roomId, { msgtype: 'm.notice', body: 'not this' });
    const b = await send(hs, bob, roomId, { msgtype: 'm.text', body: 'b', 'm.mentions': { user_ids: [alice.userId] } });
    await sendText(hs, alice, roomId, 'my own');
    expect((await call(hs, 'POST', `${C}/rooms/${enc(roomId)}/receipt/m.read/${enc(a)}`, {}, alice.accessToken)).status).toBe(200);

    const res = await get(`${C}/notifications`);
    expect(res.status).toBe(200);
    const n = res.body.notifications;
    expect(n.map((x: any) => x.event.event_id)).toEqual([b, a]);
    expect(n[0]).toMatchObject({ room_id: roomId, read: false, actions: ['notify', { set_tweak: 'sound', value: 'default' }, { set_tweak: 'highlight' }] });
    expect(n[0].event).toMatchObject({ type: 'm.room.message', sender: bob.userId, content: { body: 'b' } });
    expect(n[0].event.room_id).toBeUndefined();
    expect(typeof n[0].ts).toBe('number');
    expect(n[1]).toMatchObject({ read: true, actions: ['notify'] });
    expect(res.body.next_token).toBeUndefined();

    const only = await get(`${C}/notifications?only=highlight`);
    expect(only.body.notifications.map((x: any) => x.event.event_id)).toEqual([b]);
  });

  test('pages with limit and next_token', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await sendText(hs, bob, roomId, `m${i}`));
    const seen: string[] = [];
    let from: string | undefined;
    for (let page = 0; page < 5; page++) {
      const res = await get(`${C}/notifications?limit=2${from ? `&from=${from}` : ''}`);
      expect(res.status).toBe(200);
      expect(res.body.notifications.length).toBeLessThanOrEqual(2);
      seen.push(...res.body.notifications.map((x: any) => x.event.event_id));
      from = res.body.next_token;
      if (!from) break;
    }
    expect(seen).toEqual([...ids].reverse());
  });

  test('bad input', async () => {
    expectError(await get(`${C}/notifications?from=yesterday`), 400, 'M_INVALID_PARAM');
    expectError(await get(`${C}/notifications?limit=lots`), 400, 'M_INVALID_PARAM');
    expectError(await get(`${C}/notifications?limit=0`), 400, 'M_INVALID_PARAM');
    expectError(await call(hs, 'GET', `${C}/notifications`), 401, 'M_MISSING_TOKEN');
  });
});
