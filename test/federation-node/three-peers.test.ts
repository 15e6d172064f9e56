/**
 * Three real `hearth serve` processes federating over libp2p on loopback (TCP, Noise, Yamux, gossipsub): a room on A,
 * users on B and C invited and joined, messages in every direction through each peer's /sync, a profile change and
 * typing across peers, and C killed (SIGKILL) while A and B keep talking, then restarted on the same data directory:
 * it catches up to the same timeline as A. B and C bootstrap to A only: they find each other's addresses by asking A
 * (the transport's address lookup, src/net/libp2p-transport.ts), which typing from C to B and B's outbox to the
 * restarted C depend on.
 * Spec: shared/matrix-spec/content/server-server-api.md (§Joining Rooms, §Inviting to a room, §Transactions, §EDUs,
 * §Retrieving events) — issue 5, "Tests: Node↔Node".
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { expectStatus, http, registerUser } from '../helpers/serve.js';
import type { Account, ServedPeer } from '../helpers/serve.js';
import { createRoom, CS, enc, HttpSyncView, invite, join, sendText, startPeers, timelineIds } from './peers.js';

let a: ServedPeer, b: ServedPeer, c: ServedPeer;
let alice: Account, bob: Account, carol: Account;
let va: HttpSyncView, vb: HttpSyncView, vc: HttpSyncView;
let room: string;

/** Retries `check` until it stops throwing (state that crosses peers takes a moment). */
async function eventually(check: () => Promise<void>, what: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

beforeAll(async () => {
  [a, b, c] = await startPeers(3, process.env.H10_DUMP ? { args: ['--log-level', 'debug'] } : {});
  [alice, bob, carol] = await Promise.all([registerUser(a, 'alice'), registerUser(b, 'bob'), registerUser(c, 'carol')]);
  va = new HttpSyncView(a, alice);
  vb = new HttpSyncView(b, bob);
  vc = new HttpSyncView(c, carol);
  await Promise.all([va.poll(), vb.poll(), vc.poll()]);
}, 90_000);

afterAll(async () => {
  if (process.env.H10_DUMP) for (const [n, p] of [['a', a], ['b', b], ['c', c]] as const) (await import('node:fs')).writeFileSync(`/tmp/h10-${n}.log`, p.stderr());
  await Promise.all([a, b, c].map((p) => p?.dispose()));
}, 60_000);

describe('three Node peers over libp2p', () => {
  test('each peer is its own server, named by its key', () => {
    const names = new Set([a.serverName, b.serverName, c.serverName]);
    expect(names.size).toBe(3);
    for (const p of [a, b, c]) expect(p.multiaddrs.every((m) => m.endsWith(`/p2p/${p.multiaddrs[0].split('/p2p/')[1]}`))).toBe(true);
    expect(bob.userId).toBe(`@bob:${b.serverName}`);
  });

  test('a room on A; the users on B and C are invited and see the invite through /sync', async () => {
    room = await createRoom(a, alice, { name: 'Loopback', preset: 'private_chat' });
    await invite(a, alice, room, bob.userId);
    await invite(a, alice, room, carol.userId);
    const inv = await vb.until(() => vb.invites.get(room), 20_000, 'invite on B');
    expect(inv.invite_state.events.some((e: any) => e.type === 'm.room.name' && e.content.name === 'Loopback')).toBe(true);
    await vc.until(() => vc.invites.get(room), 20_000, 'invite on C');
  }, 60_000);

  test('they join, and every peer sees all three members', async () => {
    expect(await join(b, bob, room, [a.serverName])).toBe(room);
    expect(await join(c, carol, room, [a.serverName])).toBe(room);
    const everyone = [alice, bob, carol].map((u) => u.userId).sort();
    for (const [peer, user] of [[a, alice], [b, bob], [c, carol]] as const) {
      await eventually(async () => {
        const res = await http(peer, 'GET', `${CS}/rooms/${enc(room)}/joined_members`, undefined, user.accessToken);
        expect(res.status).toBe(200);
        expect(Object.keys(res.body.joined).sort()).toEqual(everyone);
      }, `all members joined, seen on ${user.userId}'s peer`);
    }
  }, 60_000);

  test('messages in every direction arrive through /sync', async () => {
    await sendText(a, alice, room, 'from A');
    await sendText(b, bob, room, 'from B');
    await sendText(c, carol, room, 'from C');
    for (const v of [va, vb, vc]) {
      for (const m of ['from A', 'from B', 'from C']) await v.waitForMessage(room, m);
    }
  }, 60_000);

  test('a display name change on B reaches A and C as a member event, and A answers B’s profile', async () => {
    const res = await http(b, 'PUT', `${CS}/profile/${enc(bob.userId)}/displayname`, { displayname: 'Bobby' }, bob.accessToken);
    expectStatus(res, 200, 'set displayname');
    for (const v of [va, vc]) {
      await v.until(
        () => (v.timeline.get(room) ?? []).some((e) => e.type === 'm.room.member' && e.state_key === bob.userId && e.content.displayname === 'Bobby'),
        15_000,
        'new display name',
      );
    }
    const profile = await http(a, 'GET', `${CS}/profile/${enc(bob.userId)}`, undefined, alice.accessToken);
    expect(profile.status).toBe(200);
    expect(profile.body.displayname).toBe('Bobby');
  }, 60_000);

  test('typing on C shows on A and B', async () => {
    const t = await http(c, 'PUT', `${CS}/rooms/${enc(room)}/typing/${enc(carol.userId)}`, { typing: true, timeout: 20_000 }, carol.accessToken);
    expectStatus(t, 200, 'typing');
    for (const v of [va, vb]) {
      await v.until(
        () => (v.ephemeral.get(room) ?? []).some((e) => e.type === 'm.typing' && e.content.user_ids.includes(carol.userId)),
        15_000,
        'typing',
      );
    }
  }, 60_000);

  test('C is killed; A and B keep talking; C restarts on its data and catches up to A’s timeline', async () => {
    await c.kill9();
    const sent: string[] = [];
    for (let i = 0; i < 4; i++) {
      sent.push(await sendText(a, alice, room, `while C was down A${i}`));
      sent.push(await sendText(b, bob, room, `while C was down B${i}`));
    }
    expectStatus(await http(a, 'PUT', `${CS}/rooms/${enc(room)}/state/m.room.topic/`, { topic: 'set while C was down' }, alice.accessToken), 200, 'topic');
    for (let i = 0; i < 4; i++) {
      await vb.waitForMessage(room, `while C was down A${i}`);
      await va.waitForMessage(room, `while C was down B${i}`);
    }

    await c.restart();
    // The restarted process keeps carol's token (the data directory is the same).
    for (let i = 0; i < 4; i++) {
      await vc.waitForMessage(room, `while C was down A${i}`, 30_000);
      await vc.waitForMessage(room, `while C was down B${i}`, 30_000);
    }
    await vc.until(() => (vc.timeline.get(room) ?? []).some((e) => e.type === 'm.room.topic'), 30_000, 'the new topic');
    const topic = await http(c, 'GET', `${CS}/rooms/${enc(room)}/state/m.room.topic/`, undefined, carol.accessToken);
    expect(topic.body).toEqual({ topic: 'set while C was down' });

    // And the peers agree on history: C's timeline is A's (A's visible history; C holds the room since its join).
    const carolJoin = (va.timeline.get(room) ?? []).find(
      (e) => e.type === 'm.room.member' && e.state_key === carol.userId && e.content.membership === 'join',
    );
    const [allA, allC] = await Promise.all([timelineIds(a, alice, room), timelineIds(c, carol, room)]);
    // From carol's join on (newest first); whatever history C holds from before its join must be A's too.
    const sinceJoin = (ids: string[]) => ids.slice(0, ids.indexOf(carolJoin.event_id) + 1);
    const [ta, tc] = [sinceJoin(allA), sinceJoin(allC)];
    expect(ta.length).toBeGreaterThan(sent.length + 4);
    for (const id of sent) expect(tc).toContain(id);
    expect([...tc].sort()).toEqual([...ta].sort());
    for (const id of allC) expect(allA).toContain(id);

    // C is live again, both ways.
    await sendText(c, carol, room, 'C is back');
    await va.waitForMessage(room, 'C is back');
    await vb.waitForMessage(room, 'C is back');
    await sendText(a, alice, room, 'welcome back');
    await vc.waitForMessage(room, 'welcome back');
  }, 180_000);
});
