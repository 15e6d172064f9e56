/**
 * EDUs between two servers: presence, to-device messages, device-list updates, typing start and stop; EDUs about
 * users of another server than the sender's are ignored.
 * Spec: server-server-api.md §EDUs, §"Typing Notifications", §Presence, §"Device Management",
 * §"Send-to-device messaging".
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call } from '../helpers/homeserver.js';
import { enc, newPublicRoom } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { login, newUser } from '../helpers/users.js';
import type { Federation } from '../helpers/federation.js';
import { newFederation, SyncView } from '../helpers/federation.js';

const C = '/_matrix/client/v3';
let fed: Federation;
let a: Homeserver, b: Homeserver;
let alice: TestUser, bob: TestUser;
let room: string;
let va: SyncView, vb: SyncView;

beforeAll(async () => {
  fed = await newFederation(2);
  [a, b] = fed.servers;
  alice = await newUser(a, 'alice', { password: 'correct horse' });
  bob = await newUser(b, 'bob');
  room = await newPublicRoom(a, alice);
  expect((await call(b, 'POST', `${C}/join/${enc(room)}?via=${enc(a.serverName)}`, {}, bob.accessToken)).status).toBe(200);
  await fed.settle();
  va = new SyncView(a, alice);
  vb = new SyncView(b, bob);
  await Promise.all([va.poll(), vb.poll()]);
});

afterAll(async () => {
  await fed?.stop();
});

describe('EDUs across servers', () => {
  test("presence: alice's status reaches bob", async () => {
    const res = await call(a, 'PUT', `${C}/presence/${enc(alice.userId)}/status`, { presence: 'online', status_msg: 'by the fire' }, alice.accessToken);
    expect(res.status).toBe(200);
    const ev = await vb.until(() => vb.presence.find((e) => e.sender === alice.userId && e.content.status_msg === 'by the fire'), 5000, 'presence');
    expect(ev.content.presence).toBe('online');
    const status = await call(b, 'GET', `${C}/presence/${enc(alice.userId)}/status`, undefined, bob.accessToken);
    expect(status.body.presence).toBe('online');
  });

  test('to-device: a message from bob reaches the named device of alice, once, even when the request is retried', async () => {
    const body = { messages: { [alice.userId]: { [alice.deviceId]: { secret: 'hello device' } } } };
    for (let i = 0; i < 2; i++) {
      const res = await call(b, 'PUT', `${C}/sendToDevice/m.test/txn-1`, body, bob.accessToken);
      expect(res.status).toBe(200);
    }
    const msg = await va.until(() => va.toDevice.find((e) => e.content.secret === 'hello device'), 5000, 'to-device message');
    expect(msg.sender).toBe(bob.userId);
    expect(msg.type).toBe('m.test');
    await fed.settle();
    await va.poll();
    expect(va.toDevice.filter((e) => e.content.secret === 'hello device')).toHaveLength(1);
  });

  test('to-device to every device of a remote user (*)', async () => {
    const res = await call(b, 'PUT', `${C}/sendToDevice/m.test/txn-2`, { messages: { [alice.userId]: { '*': { all: true } } } }, bob.accessToken);
    expect(res.status).toBe(200);
    await va.until(() => va.toDevice.some((e) => e.content.all === true), 5000, 'wildcard to-device');
  });

  test("device lists: alice's new device shows in bob's device_lists.changed", async () => {
    await login(a, alice.userId, 'correct horse');
    await vb.until(() => vb.deviceListsChanged.has(alice.userId), 5000, 'device list change');
  });

  test('typing stops as well as starts', async () => {
    const path = `${C}/rooms/${enc(room)}/typing/${enc(alice.userId)}`;
    expect((await call(a, 'PUT', path, { typing: true, timeout: 20000 }, alice.accessToken)).status).toBe(200);
    await vb.until(() => (vb.ephemeral.get(room) ?? []).some((e) => e.type === 'm.typing' && e.content.user_ids.includes(alice.userId)), 5000, 'typing');
    expect((await call(a, 'PUT', path, { typing: false }, alice.accessToken)).status).toBe(200);
    await vb.until(() => {
      const typing = (vb.ephemeral.get(room) ?? []).filter((e) => e.type === 'm.typing');
      return typing.length > 0 && !typing[typing.length - 1].content.user_ids.includes(alice.userId);
    }, 5000, 'typing stopped');
  });

  test('typing goes by gossip to the servers following the room, and by /send only when gossip misses them', async () => {
    const path = `${C}/rooms/${enc(room)}/typing/${enc(alice.userId)}`;
    const typingSends: boolean[] = [];
    fed.net.intercept = (from, to, req) => {
      if (from !== a.serverName || to !== b.serverName || !req.path.includes('/send/')) return undefined;
      for (const edu of (req.body?.edus ?? []) as any[]) if (edu.edu_type === 'm.typing') typingSends.push(edu.content.typing);
      return undefined;
    };
    const typingNow = () => {
      const typing = (vb.ephemeral.get(room) ?? []).filter((e) => e.type === 'm.typing');
      return typing.length > 0 && typing[typing.length - 1].content.user_ids.includes(alice.userId);
    };
    try {
      const gossipBefore = fed.net.stats.gossip;
      expect((await call(a, 'PUT', path, { typing: true, timeout: 20000 }, alice.accessToken)).status).toBe(200);
      await vb.until(() => typingNow(), 5000, 'typing by gossip');
      expect(fed.net.stats.gossip).toBeGreaterThan(gossipBefore);
      await fed.settle();
      expect(typingSends).toEqual([]);

      // Gossip failing: /send carries it instead.
      fed.net.gossipFails = true;
      expect((await call(a, 'PUT', path, { typing: false }, alice.accessToken)).status).toBe(200);
      await vb.until(() => !typingNow(), 5000, 'typing stopped by /send');
      expect(typingSends).toEqual([false]);
    } finally {
      fed.net.gossipFails = false;
      fed.net.intercept = undefined;
    }
  });

  test("EDUs about another server's users are ignored", async () => {
    const res = await a.federation.handleRequest(b.serverName, {
      method: 'PUT',
      path: '/_matrix/federation/v1/send/edu-forgery',
      body: {
        origin: b.serverName,
        origin_server_ts: Date.now(),
        pdus: [],
        edus: [
          { edu_type: 'm.presence', content: { push: [{ user_id: alice.userId, presence: 'offline', last_active_ago: 0, status_msg: 'forged' }] } },
          { edu_type: 'm.direct_to_device', content: { sender: alice.userId, type: 'm.test', message_id: 'x', messages: { [alice.userId]: { '*': { forged: true } } } } },
          { edu_type: 'm.receipt', content: { [room]: { 'm.read': { [alice.userId]: { event_ids: ['$x'], data: { ts: 1 } } } } } },
        ],
      },
    });
    expect(res.status).toBe(200);
    const status = await call(a, 'GET', `${C}/presence/${enc(alice.userId)}/status`, undefined, alice.accessToken);
    expect(status.body.status_msg).toBe('by the fire');
    await va.poll();
    expect(va.toDevice.some((e) => e.content.forged)).toBe(false);
  });
});
