/**
 * Each event is sent once: new PDUs go out on the room's gossip topic, and as `/send` transactions only to the
 * servers the gossip did not reach (not subscribed, offline); those still get them, through the outbox when they
 * are down. Receipts keep going by `/send`, typing by gossip. A failed publish falls back to `/send` for every
 * server. Then the stage marks that bench/federation-sync.ts --trace reads.
 * Spec: server-server-api.md §Transactions; issue 5 ("also sent as /send transactions to peers in the room that
 * gossip did not reach").
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { setFederationTrace } from '../../src/federation/trace.js';
import type { FederationRequest } from '../../src/federation/transport.js';
import type { Homeserver } from '../../src/homeserver.js';
import { call } from '../helpers/homeserver.js';
import { enc, newPublicRoom, sendText } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';
import type { Federation } from '../helpers/federation.js';
import { newFederation, SyncView } from '../helpers/federation.js';

const C = '/_matrix/client/v3';

interface SentTxn {
  from: string;
  to: string;
  pdus: any[];
  edus: any[];
}

let fed: Federation;
let a: Homeserver, b: Homeserver, c: Homeserver;
let alice: TestUser, bob: TestUser, carol: TestUser;
let va: SyncView, vb: SyncView, vc: SyncView;
/** Every /send transaction since the test began. */
let sent: SentTxn[] = [];

function record(from: string, to: string, req: FederationRequest): undefined {
  if (req.method === 'PUT' && req.path.startsWith('/_matrix/federation/v1/send/')) {
    sent.push({ from, to, pdus: (req.body?.pdus as any[]) ?? [], edus: (req.body?.edus as any[]) ?? [] });
  }
  return undefined;
}

const pdusTo = (hs: Homeserver) => sent.filter((t) => t.to === hs.serverName).flatMap((t) => t.pdus);
const bodies = (pdus: any[]) => pdus.filter((p) => p.type === 'm.room.message').map((p) => p.content.body);

async function newSharedRoom(): Promise<string> {
  const room = await newPublicRoom(a, alice);
  for (const [hs, u] of [[b, bob], [c, carol]] as const) {
    const res = await call(hs, 'POST', `${C}/join/${enc(room)}?via=${enc(a.serverName)}`, {}, u.accessToken);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  }
  await fed.settle();
  return room;
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
});

beforeEach(() => {
  sent = [];
  fed.net.intercept = record;
});

afterAll(async () => {
  fed.net.intercept = undefined;
  await fed?.stop();
});

describe('fan-out: gossip first, /send for the rest', () => {
  test('when gossip reaches every server, no /send transaction carries a PDU', async () => {
    const room = await newSharedRoom();
    sent = [];
    const gossipBefore = fed.net.stats.gossip;
    for (let i = 0; i < 3; i++) await sendText(a, alice, room, `from A ${i}`);
    await sendText(b, bob, room, 'from B');
    for (const v of [va, vb, vc]) {
      for (const m of ['from A 0', 'from A 1', 'from A 2', 'from B']) await v.waitForMessage(room, m);
    }
    await fed.settle();
    expect(sent.filter((t) => t.pdus.length > 0)).toEqual([]);
    // Four events, each handed to the two other servers.
    expect(fed.net.stats.gossip - gossipBefore).toBe(8);
  });

  test('typing goes by gossip, receipts still by /send, and both arrive', async () => {
    const room = await newSharedRoom();
    const last = await sendText(a, alice, room, 'read me');
    await vb.waitForMessage(room, 'read me');
    sent = [];
    expect((await call(b, 'PUT', `${C}/rooms/${enc(room)}/typing/${enc(bob.userId)}`, { typing: true, timeout: 10000 }, bob.accessToken)).status).toBe(200);
    expect((await call(b, 'POST', `${C}/rooms/${enc(room)}/receipt/m.read/${enc(last)}`, {}, bob.accessToken)).status).toBe(200);
    for (const v of [va, vc]) {
      await v.until(() => (v.ephemeral.get(room) ?? []).some((e) => e.type === 'm.typing' && e.content.user_ids.includes(bob.userId)), 5000, 'typing');
      await v.until(() => (v.ephemeral.get(room) ?? []).some((e) => e.type === 'm.receipt' && e.content[last]?.['m.read']?.[bob.userId]), 5000, 'receipt');
    }
    const eduTypes = (to: Homeserver) => sent.filter((t) => t.from === b.serverName && t.to === to.serverName).flatMap((t) => t.edus.map((e) => e.edu_type));
    for (const hs of [a, c]) {
      expect(eduTypes(hs)).toContain('m.receipt');
      expect(eduTypes(hs)).not.toContain('m.typing');
    }
  });

  test('a server not following the gossip gets the events by /send, in order; the others by gossip alone', async () => {
    const room = await newSharedRoom();
    fed.net.dropTopic(c.serverName, room);
    sent = [];
    const texts = ['one', 'two', 'three', 'four'];
    // Each send answers before its fan-out is done, so fan-outs overlap: the /send queue still keeps their order.
    for (const t of texts) await sendText(a, alice, room, t);
    for (const t of texts) await vc.waitForMessage(room, t);
    await fed.settle();
    expect(bodies(pdusTo(c))).toEqual(texts);
    expect(pdusTo(b)).toEqual([]);
    for (const t of texts) await vb.waitForMessage(room, t);
  });

  test('an offline server gets the events through the outbox when it is back; the others never by /send', async () => {
    const room = await newSharedRoom();
    fed.offline(c);
    sent = [];
    for (let i = 0; i < 3; i++) await sendText(a, alice, room, `away ${i}`);
    for (let i = 0; i < 3; i++) await vb.waitForMessage(room, `away ${i}`);
    await fed.settle();
    const outbox = (hs: Homeserver) => a.services.ctx.kv.read((tx) => tx.count('federation_outbox', { prefix: [hs.serverName] }));
    expect(await outbox(c)).toBe(3);
    expect(await outbox(b)).toBe(0);
    expect(pdusTo(c)).toEqual([]);
    fed.online(c);
    for (let i = 0; i < 3; i++) await vc.waitForMessage(room, `away ${i}`);
    await fed.settle();
    expect(bodies(pdusTo(c))).toEqual(['away 0', 'away 1', 'away 2']);
    expect(await outbox(c)).toBe(0);
    expect(pdusTo(b)).toEqual([]);
  });

  test('when publishing fails, every server gets the events by /send', async () => {
    const room = await newSharedRoom();
    sent = [];
    fed.net.gossipFails = true;
    try {
      await sendText(a, alice, room, 'no gossip');
      for (const v of [vb, vc]) await v.waitForMessage(room, 'no gossip');
      await fed.settle();
    } finally {
      fed.net.gossipFails = false;
    }
    expect(bodies(pdusTo(b))).toEqual(['no gossip']);
    expect(bodies(pdusTo(c))).toEqual(['no gossip']);
  });

  test('a batch larger than a transaction is gossiped in transaction-sized messages', async () => {
    const room = await newSharedRoom();
    fed.net.dropTopic(c.serverName, room);
    sent = [];
    const gossipBefore = fed.net.stats.gossip;
    // Made-up PDUs (receivers drop them): only how they are split is under test.
    const items = Array.from({ length: 60 }, (_, i) => ({ eventId: `$fake${i}`, json: { room_id: room, type: 'x.fake', n: i } }));
    a.federation.sender.fanOut(room, [b.serverName, c.serverName], items);
    await fed.settle();
    // Two gossip messages (50 + 10 PDUs) reached B only; C got the same two as /send transactions.
    expect(fed.net.stats.gossip - gossipBefore).toBe(2);
    expect(sent.filter((t) => t.to === c.serverName && t.pdus.length > 0).map((t) => t.pdus.length)).toEqual([50, 10]);
    expect(pdusTo(b)).toEqual([]);
  });
});

describe('stage marks (bench/federation-sync.ts --trace)', () => {
  test('follow an event from the commit on A to the notify on each receiver, in order', async () => {
    const room = await newSharedRoom();
    const marks: Array<[string, string, number]> = [];
    setFederationTrace((eventId, stage, at) => marks.push([eventId, stage, at]));
    let eventId: string;
    try {
      eventId = await sendText(a, alice, room, 'traced');
      for (const v of [vb, vc]) await v.waitForMessage(room, 'traced');
      await fed.settle();
    } finally {
      setFederationTrace(undefined);
    }
    const mine = marks.filter(([id]) => id === eventId);
    const sender = ['A committed', 'A fanOut', 'A publish start', 'A publish done'];
    const receiver = ['B gossip in', 'B receive', 'B checked 1-3', 'B prereqs', 'B locked', 'B read', 'B checked 4-6', 'B write queued', 'B written', 'B notified'];
    expect(mine.filter(([, s]) => s.startsWith('A ')).map(([, s]) => s)).toEqual(sender);
    // Each of the two receivers goes through every stage once; the first time of each stage never comes before
    // the previous stage's.
    expect(mine.filter(([, s]) => s.startsWith('B ')).map(([, s]) => s).sort()).toEqual([...receiver, ...receiver].sort());
    const order = [...sender, ...receiver];
    const firstAt = order.map((st) => Math.min(...mine.filter(([, s]) => s === st).map(([, , t]) => t)));
    for (let i = 1; i < firstAt.length; i++) expect(firstAt[i], order[i]).toBeGreaterThanOrEqual(firstAt[i - 1]);
  });
});
