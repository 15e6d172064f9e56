/**
 * A local send is answered as soon as its event is committed: the gossip publish of the event waits for the
 * current task (in which the answer is written) to end, and then goes out at once (src/federation/sender.ts fanOut).
 * Several sends in a row still reach the other server in order.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call } from '../helpers/homeserver.js';
import { enc, newPublicRoom, sendText } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';
import type { Federation } from '../helpers/federation.js';
import { newFederation, SyncView } from '../helpers/federation.js';

const C = '/_matrix/client/v3';

let fed: Federation;
let a: Homeserver, b: Homeserver;
let alice: TestUser, bob: TestUser;
let vb: SyncView;
let room: string;

beforeAll(async () => {
  fed = await newFederation(2);
  [a, b] = fed.servers;
  alice = await newUser(a, 'alice');
  bob = await newUser(b, 'bob');
  vb = new SyncView(b, bob);
  await vb.poll();
  room = await newPublicRoom(a, alice);
  const res = await call(b, 'POST', `${C}/join/${enc(room)}?via=${enc(a.serverName)}`, {}, bob.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  await fed.settle();
});

afterAll(async () => {
  await fed?.stop();
});

test('the sender gets its answer before the event is published, and the publish follows in the next turn', async () => {
  const order: string[] = [];
  const deliver = fed.net.deliverGossip.bind(fed.net);
  fed.net.deliverGossip = (from, roomId, message) => {
    if (from === a.serverName) order.push('published');
    return deliver(from, roomId, message);
  };
  try {
    const sending = sendText(a, alice, room, 'answered first');
    await sending;
    order.push('answered');
    // One turn of the event loop later the event is on its way.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['answered', 'published']);
    await vb.waitForMessage(room, 'answered first');
  } finally {
    fed.net.deliverGossip = deliver;
  }
});

test('concurrent sends reach the other server by gossip alone, in the order the sender committed them', async () => {
  const va = new SyncView(a, alice);
  await va.poll();
  const gossipBefore = fed.net.stats.gossip;
  const texts = ['first', 'second', 'third', 'fourth', 'fifth'];
  // Not awaited one by one: their publishes queue behind each other (one room, one chain).
  await Promise.all(texts.map((t) => sendText(a, alice, room, t)));
  for (const t of texts) {
    await va.waitForMessage(room, t);
    await vb.waitForMessage(room, t);
  }
  await fed.settle();
  expect(fed.net.stats.gossip - gossipBefore).toBe(texts.length);
  const bodies = (v: SyncView) =>
    (v.timeline.get(room) ?? []).map((e: { content?: { body?: unknown } }) => e.content?.body).filter((x): x is string => texts.includes(x as string));
  expect(bodies(vb)).toEqual(bodies(va));
  expect([...bodies(va)].sort()).toEqual([...texts].sort());
});
