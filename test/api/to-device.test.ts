/**
 * PUT /sendToDevice/{eventType}/{txnId} and the /sync `to_device` section
 * (modules/send_to_device.md: delivered until the next sync acknowledges them, at most 100 per sync).
 */
import { describe, expect, test } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import type { TestUser } from '../helpers/users.js';
import { login, newUser } from '../helpers/users.js';

let txn = 0;
function sendToDevice(hs: Homeserver, from: TestUser, messages: unknown, type = 'm.test', txnId = `t${++txn}`) {
  return call(hs, 'PUT', `/_matrix/client/v3/sendToDevice/${encodeURIComponent(type)}/${txnId}`, { messages }, from.accessToken);
}

async function sync(hs: Homeserver, user: { accessToken: string }, params: Record<string, string> = {}) {
  const q = new URLSearchParams(params).toString();
  const res = await call(hs, 'GET', `/_matrix/client/v3/sync${q ? `?${q}` : ''}`, undefined, user.accessToken);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

describe('send-to-device', () => {
  test('a message reaches the named device only, with sender and type', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs, undefined, { password: 'pw-bob-1' });
    const bob2 = await login(hs, bob.userId, 'pw-bob-1');
    const res = await sendToDevice(hs, alice, { [bob.userId]: { [bob.deviceId]: { hello: 'world' } } }, 'm.room_key_request');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});

    const s1 = await sync(hs, bob);
    expect(s1.to_device.events).toEqual([{ sender: alice.userId, type: 'm.room_key_request', content: { hello: 'world' } }]);
    expect((await sync(hs, bob2)).to_device.events).toEqual([]);
    expect((await sync(hs, alice)).to_device.events).toEqual([]);
  });

  test("'*' reaches every device of the user", async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs, undefined, { password: 'pw-bob-2' });
    const bob2 = await login(hs, bob.userId, 'pw-bob-2');
    await sendToDevice(hs, alice, { [bob.userId]: { '*': { n: 1 } } });
    expect((await sync(hs, bob)).to_device.events).toHaveLength(1);
    expect((await sync(hs, bob2)).to_device.events).toHaveLength(1);
  });

  test('messages are redelivered until the next sync acknowledges them, then deleted', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    await sendToDevice(hs, alice, { [bob.userId]: { [bob.deviceId]: { n: 1 } } });
    const first = await sync(hs, bob);
    expect(first.to_device.events.map((e: any) => e.content.n)).toEqual([1]);
    // The response got lost: the same request again gets the same message.
    const again = await sync(hs, bob);
    expect(again.to_device.events.map((e: any) => e.content.n)).toEqual([1]);
    await sendToDevice(hs, alice, { [bob.userId]: { [bob.deviceId]: { n: 2 } } });
    // Using next_batch acknowledges message 1; message 2 arrived after that token and is delivered.
    const next = await sync(hs, bob, { since: again.next_batch });
    expect(next.to_device.events.map((e: any) => e.content.n)).toEqual([2]);
    const last = await sync(hs, bob, { since: next.next_batch });
    expect(last.to_device.events).toEqual([]);
    // Acknowledged messages are gone from storage, not merely skipped.
    const stored = await hs.services.ctx.kv.read((tx) => tx.range('to_device', { prefix: [bob.userId] }));
    expect(stored).toEqual([]);
  });

  test('the same transaction ID is delivered once', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const messages = { [bob.userId]: { [bob.deviceId]: { n: 1 } } };
    expect((await sendToDevice(hs, alice, messages, 'm.test', 'same')).status).toBe(200);
    expect((await sendToDevice(hs, alice, messages, 'm.test', 'same')).status).toBe(200);
    expect((await sync(hs, bob)).to_device.events).toHaveLength(1);
  });

  test('at most 100 messages per sync; the token acknowledges only what was delivered', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    for (let i = 0; i < 130; i++) await sendToDevice(hs, alice, { [bob.userId]: { [bob.deviceId]: { n: i } } });
    const s1 = await sync(hs, bob);
    expect(s1.to_device.events.map((e: any) => e.content.n)).toEqual([...Array(100).keys()]);
    const s2 = await sync(hs, bob, { since: s1.next_batch });
    expect(s2.to_device.events.map((e: any) => e.content.n)).toEqual([...Array(30).keys()].map((i) => i + 100));
    const s3 = await sync(hs, bob, { since: s2.next_batch });
    expect(s3.to_device.events).toEqual([]);
  });

  test('a quiet device whose queue is known empty still gets the next message, once', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs, undefined, { password: 'pw-bob-2' });
    const bob2 = await login(hs, bob.userId, 'pw-bob-2');
    let s = await sync(hs, bob);
    // Empty incremental syncs: the queue becomes known empty, and later ones skip reading it.
    for (let i = 0; i < 3; i++) {
      await sendToDevice(hs, alice, { [bob.userId]: { [bob2.deviceId]: { other: i } } });
      s = await sync(hs, bob, { since: s.next_batch });
      expect(s.to_device.events).toEqual([]);
    }
    await sendToDevice(hs, alice, { [bob.userId]: { [bob.deviceId]: { n: 1 } } });
    s = await sync(hs, bob, { since: s.next_batch });
    expect(s.to_device.events.map((e: any) => e.content)).toEqual([{ n: 1 }]);
    s = await sync(hs, bob, { since: s.next_batch });
    expect(s.to_device.events).toEqual([]);
    await sendToDevice(hs, alice, { [bob.userId]: { '*': { n: 2 } } });
    s = await sync(hs, bob, { since: s.next_batch });
    expect(s.to_device.events.map((e: any) => e.content)).toEqual([{ n: 2 }]);
    expect((await sync(hs, bob2)).to_device.events.map((e: any) => e.content)).toEqual([{ other: 0 }, { other: 1 }, { other: 2 }, { n: 2 }]);
  });

  test('a to-device message wakes a waiting /sync', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const start = await sync(hs, bob);
    const t0 = performance.now();
    const polling = sync(hs, bob, { since: start.next_batch, timeout: '10000' });
    await new Promise((r) => setTimeout(r, 20));
    await sendToDevice(hs, alice, { [bob.userId]: { [bob.deviceId]: { wake: true } } });
    const woke = await polling;
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(woke.to_device.events.map((e: any) => e.content)).toEqual([{ wake: true }]);
  });

  test('unknown devices and users get nothing, and the request still succeeds', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const bob = await newUser(hs);
    const res = await sendToDevice(hs, alice, {
      [bob.userId]: { NOSUCHDEVICE: { n: 1 } },
      [`@nobody:${hs.serverName}`]: { '*': { n: 2 } },
    });
    expect(res.status).toBe(200);
    expect((await sync(hs, bob)).to_device.events).toEqual([]);
  });

  test('bad input', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs);
    const path = '/_matrix/client/v3/sendToDevice/m.test/bad1';
    const missing = await call(hs, 'PUT', path, {}, alice.accessToken);
    expect([missing.status, missing.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    const notObject = await call(hs, 'PUT', path, { messages: [] }, alice.accessToken);
    expect([notObject.status, notObject.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    const badUser = await call(hs, 'PUT', path, { messages: { 'not-a-user': { D: {} } } }, alice.accessToken);
    expect([badUser.status, badUser.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    const badContent = await call(hs, 'PUT', path, { messages: { [alice.userId]: { D: 'text' } } }, alice.accessToken);
    expect([badContent.status, badContent.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    const notJson = await call(hs, 'PUT', path, '{nope', alice.accessToken);
    expect([notJson.status, notJson.body.errcode]).toEqual([400, 'M_NOT_JSON']);
    const noToken = await call(hs, 'PUT', path, { messages: {} });
    expect([noToken.status, noToken.body.errcode]).toEqual([401, 'M_MISSING_TOKEN']);
  });
});
