/**
 * History from before a remote join: /messages backwards from bob's join on B fetches the earlier events from
 * the resident A (GET /backfill) on demand and pages through all of them; they are history, not live /sync
 * events; a room whose history is `joined` gives nothing from before the join.
 * Spec: server-server-api.md §Backfilling; client-server-api modules/history_visibility.md.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call } from '../helpers/homeserver.js';
import { enc, newPublicRoom, sendText, setState } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';
import type { Federation } from '../helpers/federation.js';
import { newFederation, SyncView } from '../helpers/federation.js';

const C = '/_matrix/client/v3';
let fed: Federation;
let a: Homeserver, b: Homeserver;
let alice: TestUser, bob: TestUser;

beforeAll(async () => {
  fed = await newFederation(2);
  [a, b] = fed.servers;
  alice = await newUser(a, 'alice');
  bob = await newUser(b, 'bob');
});

afterAll(async () => {
  await fed?.stop();
});

async function join(room: string): Promise<void> {
  const res = await call(b, 'POST', `${C}/join/${enc(room)}?via=${enc(a.serverName)}`, {}, bob.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  await fed.settle();
}

/** Every event bob reaches paging back from now, 10 at a time. */
async function pageBack(room: string): Promise<any[]> {
  const events: any[] = [];
  let from: string | undefined;
  for (let page = 0; page < 50; page++) {
    const q = new URLSearchParams({ dir: 'b', limit: '10' });
    if (from) q.set('from', from);
    const res = await call(b, 'GET', `${C}/rooms/${enc(room)}/messages?${q}`, undefined, bob.accessToken);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    events.push(...res.body.chunk);
    if (res.body.end === undefined) return events;
    from = res.body.end;
  }
  throw new Error('pagination did not end');
}

describe('history before a remote join', () => {
  test('bob joins a room with 30 earlier messages and pages back through all of them', async () => {
    const room = await newPublicRoom(a, alice, { name: 'Archive' });
    for (let i = 1; i <= 30; i++) await sendText(a, alice, room, `old ${i}`);
    await join(room);
    const view = new SyncView(b, bob);
    await view.poll();

    const events = await pageBack(room);
    const bodies = events.filter((e) => e.type === 'm.room.message').map((e) => e.content.body);
    expect(bodies).toEqual(Array.from({ length: 30 }, (_, i) => `old ${30 - i}`));
    // Back to the very start: the room's creation, and no event twice.
    expect(events[events.length - 1].type).toBe('m.room.create');
    expect(new Set(events.map((e) => e.event_id)).size).toBe(events.length);
    expect(events[0].type).toBe('m.room.member');
    expect(events[0].state_key).toBe(bob.userId);

    // History is not news: /sync after the backfill brings none of it.
    await sendText(a, alice, room, 'new');
    await view.waitForMessage(room, 'new');
    expect(view.messages(room).filter((m) => m.startsWith('old'))).toEqual([]);

    // A second pass is answered from storage (no new backfill requests).
    const before = fed.net.stats.requests;
    const again = await pageBack(room);
    expect(again.slice(1).map((e) => e.event_id)).toEqual(events.map((e) => e.event_id));
    expect(again.filter((e) => e.type === 'm.room.message').map((e) => e.content.body)).toEqual(['new', ...bodies]);
    expect(fed.net.stats.requests - before).toBeLessThanOrEqual(1);
  });

  test("history_visibility 'joined': nothing from before bob's join", async () => {
    const room = await newPublicRoom(a, alice, { initial_state: [{ type: 'm.room.history_visibility', state_key: '', content: { history_visibility: 'joined' } }] });
    for (let i = 1; i <= 5; i++) await sendText(a, alice, room, `secret ${i}`);
    await join(room);
    const events = await pageBack(room);
    expect(events.filter((e) => e.type === 'm.room.message')).toEqual([]);
  });

  test('history visibility is judged at each backfilled event: joined → shared → joined, then bob joins', async () => {
    const hv = (v: string) => setState(a, alice, room, 'm.room.history_visibility', '', { history_visibility: v });
    const room = await newPublicRoom(a, alice, { initial_state: [{ type: 'm.room.history_visibility', state_key: '', content: { history_visibility: 'joined' } }] });
    await sendText(a, alice, room, 'before, joined only');
    await hv('shared');
    await sendText(a, alice, room, 'shared 1');
    const carol = await newUser(a, 'carol');
    expect((await call(a, 'POST', `${C}/join/${enc(room)}`, {}, carol.accessToken)).status).toBe(200);
    await call(a, 'PUT', `${C}/profile/${enc(carol.userId)}/displayname`, { displayname: 'Carol then' }, carol.accessToken);
    const carolSays = await sendText(a, carol, room, 'carol says hi');
    expect((await call(a, 'POST', `${C}/rooms/${enc(room)}/leave`, {}, carol.accessToken)).status).toBe(200);
    await sendText(a, alice, room, 'shared 2');
    await hv('joined');
    await sendText(a, alice, room, 'after, joined only');
    await join(room);

    // Exactly what the setting at each event allows bob, who joined at the end.
    const events = await pageBack(room);
    const bodies = events.filter((e) => e.type === 'm.room.message').map((e) => e.content.body);
    expect(bodies).toEqual(['shared 2', 'carol says hi', 'shared 1']);

    // The state at an old event is the state then: carol was in the room under her name of the time, and the
    // room's history was `shared`.
    const filter = enc(JSON.stringify({ lazy_load_members: true }));
    const ctx = await call(b, 'GET', `${C}/rooms/${enc(room)}/context/${enc(carolSays)}?limit=0&filter=${filter}`, undefined, bob.accessToken);
    expect(ctx.status, JSON.stringify(ctx.body)).toBe(200);
    const state = ctx.body.state as any[];
    const carolMember = state.find((e) => e.type === 'm.room.member' && e.state_key === carol.userId);
    expect(carolMember?.content).toMatchObject({ membership: 'join', displayname: 'Carol then' });
    expect(state.find((e) => e.type === 'm.room.history_visibility')?.content.history_visibility).toBe('shared');
    // And the room's current state is untouched by the history: carol is gone, history is `joined`.
    const now = await call(b, 'GET', `${C}/rooms/${enc(room)}/state/m.room.member/${enc(carol.userId)}`, undefined, bob.accessToken);
    expect(now.body.membership).toBe('leave');
    const hvNow = await call(b, 'GET', `${C}/rooms/${enc(room)}/state/m.room.history_visibility/`, undefined, bob.accessToken);
    expect(hvNow.body.history_visibility).toBe('joined');
  });

  test('a user who is not in the room cannot make the server backfill it', async () => {
    const room = await newPublicRoom(a, alice);
    await sendText(a, alice, room, 'x');
    const carol = await newUser(b, 'carol');
    await join(room);
    const res = await call(b, 'GET', `${C}/rooms/${enc(room)}/messages?dir=b`, undefined, carol.accessToken);
    expect(res.status).toBe(403);
    expect(res.body.errcode).toBe('M_FORBIDDEN');
  });
});
