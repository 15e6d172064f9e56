/**
 * The presence/device-list follower (federation/edus.ts) reads the stream only after commits that may hold such an
 * entry: a busy room's event commits (which tell the notifier they wrote only events) cost it nothing, while a
 * presence change is still read and sent on.
 */
import { afterAll, beforeAll, expect, test, vi } from 'vitest';
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
let room: string;
/** Storage reads A's follower made itself (told apart by the calling frame). */
let followerReads = 0;

beforeAll(async () => {
  fed = await newFederation(2);
  [a, b] = fed.servers;
  alice = await newUser(a, 'alice');
  bob = await newUser(b, 'bob');
  room = await newPublicRoom(a, alice);
  expect((await call(b, 'POST', `${C}/join/${enc(room)}?via=${enc(a.serverName)}`, {}, bob.accessToken)).status).toBe(200);
  await fed.settle();
  const kv = a.services.ctx.kv;
  const read = kv.read.bind(kv);
  vi.spyOn(kv, 'read').mockImplementation(((fn: Parameters<typeof read>[0]) => {
    // The frame that called kv.read, past this wrapper and the spy's own.
    const caller = (new Error().stack ?? '').split('\n').slice(1).find((l) => !l.includes('edus-follow.test') && !l.includes('@vitest'));
    if (caller !== undefined && /\bEdus\.follow\b/.test(caller)) followerReads++;
    return read(fn);
  }) as typeof kv.read);
});

afterAll(async () => {
  vi.restoreAllMocks();
  await fed?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('messages sent on A and received from B do not make the follower read', async () => {
  await sleep(50);
  const before = followerReads;
  for (let i = 0; i < 5; i++) await sendText(a, alice, room, `from a ${i}`);
  for (let i = 0; i < 5; i++) await sendText(b, bob, room, `from b ${i}`);
  await fed.settle();
  await new SyncView(a, alice).waitForMessage(room, 'from b 4');
  await sleep(50);
  expect(followerReads - before).toBe(0);
});

test('a presence change is read and reaches the other server', async () => {
  const before = followerReads;
  const res = await call(a, 'PUT', `${C}/presence/${enc(alice.userId)}/status`, { presence: 'online', status_msg: 'followed' }, alice.accessToken);
  expect(res.status).toBe(200);
  const vb = new SyncView(b, bob);
  await vb.until(() => vb.presence.find((e) => e.sender === alice.userId && e.content.status_msg === 'followed'), 5000, 'presence on B');
  expect(followerReads - before).toBeGreaterThan(0);
});
