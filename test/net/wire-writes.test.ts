/**
 * Socket writes per federation message between two real libp2p nodes on loopback (src/node/p2p.ts): one write per
 * frame sent, and none of the bare 2-byte noise length prefixes or 12-byte yamux window updates per frame received
 * that plain @libp2p/noise and @libp2p/yamux put on the wire (coalescedWrites, lazyWindowUpdates in
 * src/net/libp2p-transport.ts). Each extra write also wakes the other side for a read of its own.
 */
import { Socket } from 'node:net';
import { afterAll, beforeAll, expect, test, vi } from 'vitest';
import type { TestPeer } from './helpers.js';
import { connect, startPeer } from './helpers.js';

let a: TestPeer;
let b: TestPeer;

beforeAll(async () => {
  [a, b] = await Promise.all([startPeer(), startPeer()]);
  await connect(a, b);
});

afterAll(async () => {
  await Promise.all([a.stop(), b.stop()]);
});

test('a request and its answer are one socket write each: no bare length prefixes, no window update per frame', async () => {
  const body = { pdus: [{ type: 'm.room.message', content: { body: 'x'.repeat(900) } }] };
  const send = (i: number) => a.network.transport.request(b.serverName, { method: 'PUT', path: `/_matrix/federation/v1/send/w${i}`, body });
  // Stream set up, identify and gossipsub hellos out of the way.
  for (let i = 0; i < 3; i++) expect((await send(i)).status).toBe(200);
  await new Promise((r) => setTimeout(r, 200));

  const sizes: number[] = [];
  const write = Socket.prototype.write;
  const spy = vi.spyOn(Socket.prototype, 'write').mockImplementation(function (this: Socket, ...args: Parameters<Socket['write']>) {
    const chunk = args[0];
    sizes.push(typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.byteLength);
    return write.apply(this, args);
  });
  const rounds = 40;
  try {
    for (let i = 0; i < rounds; i++) expect((await send(100 + i)).status).toBe(200);
  } finally {
    spy.mockRestore();
  }
  // Plain noise writes [2-byte length, ciphertext] as two writes; plain yamux answers each data frame with a window
  // update (12 bytes + 18 of noise): 8 writes per round trip instead of 2.
  expect(sizes.filter((n) => n === 2)).toEqual([]);
  expect(sizes.filter((n) => n === 30)).toEqual([]);
  // Two frames per round trip, with a little room for a ping or gossipsub heartbeat that may fall in the window.
  expect(sizes.length).toBeGreaterThanOrEqual(2 * rounds);
  expect(sizes.length).toBeLessThanOrEqual(2 * rounds + 4);
});

test('a body much larger than the yamux window still crosses (window updates still go out when half is used)', async () => {
  const big = 'y'.repeat(3 * 1024 * 1024);
  const res = await a.network.transport.request(b.serverName, { method: 'PUT', path: '/_matrix/federation/v1/send/big', body: { big } });
  expect(res.status).toBe(200);
  expect((res.body as { body: { big: string } }).body.big.length).toBe(big.length);
});
