/**
 * The federation request protocol between real libp2p nodes on loopback: one stream per peer for both directions,
 * multiplexed requests, timeouts, the authenticated origin, and hostile frames that must not hurt the receiver.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { generateSeed } from '../../src/core/crypto/ed25519.js';
import { serverIdentityFromSeed } from '../../src/core/server-key.js';
import { UnreachableError } from '../../src/federation/transport.js';
import { encodeFrame } from '../../src/net/framing.js';
import { STORES } from '../../src/storage/schema.js';
import { openMemoryKv } from '../../src/storage/memory-kv.js';
import { HOMESERVER_STORES } from '../../src/storage/schema.js';
import type { TestPeer } from './helpers.js';
import { connect, eventually, federationStreams, rawFrame, rawStream, startPeer } from './helpers.js';

let a: TestPeer;
let b: TestPeer;

beforeAll(async () => {
  [a, b] = await Promise.all([startPeer({ maxFrameBytes: 64 * 1024 }), startPeer({ maxFrameBytes: 64 * 1024 })]);
  await connect(a, b);
});

afterAll(async () => {
  await Promise.all([a.stop(), b.stop()]);
});

describe('requests', () => {
  test('round trip in both directions over one stream, origin taken from the connection', async () => {
    const ab = await a.network.transport.request(b.serverName, { method: 'PUT', path: '/_matrix/federation/v1/send/t1', body: { pdus: [] } });
    expect(ab).toEqual({ status: 200, body: { origin: a.serverName, method: 'PUT', path: '/_matrix/federation/v1/send/t1', body: { pdus: [] } } });
    const ba = await b.network.transport.request(a.serverName, { method: 'GET', path: '/_matrix/federation/v1/event/%24e' });
    expect(ba).toEqual({ status: 200, body: { origin: b.serverName, method: 'GET', path: '/_matrix/federation/v1/event/%24e' } });
    // B answered A's request on A's stream and reused it for its own request: one stream each side.
    expect(federationStreams(a, b)).toBe(1);
    expect(federationStreams(b, a)).toBe(1);
    expect(b.inbound.requests.at(-1)?.origin).toBe(a.serverName);
  });

  test('100 concurrent requests are multiplexed on the one stream and each gets its own answer', async () => {
    b.inbound.respond = async (_origin, req) => {
      await new Promise((r) => setTimeout(r, Math.random() * 20));
      return { status: 200, body: { n: (req.body as { n: number }).n * 2 } };
    };
    try {
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, n) => a.network.transport.request(b.serverName, { method: 'POST', path: '/x', body: { n } })),
      );
      expect(results.map((r) => (r.body as { n: number }).n)).toEqual(Array.from({ length: 100 }, (_, n) => n * 2));
      expect(federationStreams(a, b)).toBe(1);
    } finally {
      b.inbound.resetRespond();
    }
  });

  test('a request without an answer times out with UnreachableError, and the stream keeps working', async () => {
    b.inbound.respond = (_o, req) => (req.path === '/hang' ? new Promise(() => {}) : Promise.resolve({ status: 200, body: {} }));
    try {
      const started = Date.now();
      const err = await a.network.transport.request(b.serverName, { method: 'GET', path: '/hang' }, { timeoutMs: 300 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnreachableError);
      expect((err as UnreachableError).destination).toBe(b.serverName);
      expect(Date.now() - started).toBeLessThan(3000);
      expect((await a.network.transport.request(b.serverName, { method: 'GET', path: '/fine' })).status).toBe(200);
    } finally {
      b.inbound.resetRespond();
    }
  });

  test('a request to a peer that stops meanwhile fails at once with UnreachableError', async () => {
    const c = await startPeer();
    c.inbound.respond = () => new Promise(() => {});
    await connect(a, c);
    const started = Date.now();
    const outcome = a.network.transport.request(c.serverName, { method: 'GET', path: '/never' }, { timeoutMs: 20_000 }).catch((e: unknown) => e);
    await eventually(() => c.inbound.requests.length === 1, 5000, 'the request to arrive');
    await c.stop();
    expect(await outcome).toBeInstanceOf(UnreachableError);
    expect(Date.now() - started).toBeLessThan(10_000);
    await eventually(() => !a.network.transport.connectedServers().includes(c.serverName), 5000, 'c to be gone');
  });

  test('an aborted request rejects with the abort reason', async () => {
    b.inbound.respond = () => new Promise(() => {});
    try {
      const ctl = new AbortController();
      const p = a.network.transport.request(b.serverName, { method: 'GET', path: '/slow' }, { signal: ctl.signal });
      setTimeout(() => ctl.abort(new Error('user gave up')), 50);
      await expect(p).rejects.toThrow('user gave up');
    } finally {
      b.inbound.resetRespond();
    }
  });

  test('a handler that throws answers 500 M_UNKNOWN without detail', async () => {
    b.inbound.respond = async () => {
      throw new Error('secret internals');
    };
    try {
      const res = await a.network.transport.request(b.serverName, { method: 'GET', path: '/boom' });
      expect(res.status).toBe(500);
      expect(res.body).toEqual({ errcode: 'M_UNKNOWN', error: 'Internal server error' });
    } finally {
      b.inbound.resetRespond();
    }
  });

  test('unknown servers fail fast with UnreachableError', async () => {
    const nobody = serverIdentityFromSeed(generateSeed()).serverName;
    const started = Date.now();
    await expect(a.network.transport.request(nobody, { method: 'GET', path: '/x' })).rejects.toBeInstanceOf(UnreachableError);
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(a.network.transport.request('matrix.org', { method: 'GET', path: '/x' })).rejects.toBeInstanceOf(UnreachableError);
    await expect(a.network.transport.request(a.serverName, { method: 'GET', path: '/x' })).rejects.toBeInstanceOf(UnreachableError);
  });

  test('a request over the frame limit is answered 413 locally, without being sent', async () => {
    const before = b.inbound.requests.length;
    const res = await a.network.transport.request(b.serverName, { method: 'PUT', path: '/big', body: { x: 'y'.repeat(70 * 1024) } });
    expect(res).toMatchObject({ status: 413, body: { errcode: 'M_TOO_LARGE' } });
    expect(b.inbound.requests.length).toBe(before);
  });

  test('large bodies (a few MB, like a send_join answer) cross intact under the default limit', async () => {
    const [x, y] = await Promise.all([startPeer(), startPeer()]);
    try {
      await connect(x, y);
      const state = Array.from({ length: 5000 }, (_, i) => ({ type: 'm.room.member', state_key: `@u${i}:x`, content: { membership: 'join', pad: 'p'.repeat(800) } }));
      y.inbound.respond = async (_o, req) => ({ status: 200, body: { state: req.body!.state } });
      const res = await x.network.transport.request(y.serverName, { method: 'PUT', path: '/big', body: { state } });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ state });
    } finally {
      await Promise.all([x.stop(), y.stop()]);
    }
  });

  test('a response over the sender’s frame limit becomes 500 M_TOO_LARGE', async () => {
    b.inbound.respond = async () => ({ status: 200, body: { x: 'y'.repeat(70 * 1024) } });
    try {
      const res = await a.network.transport.request(b.serverName, { method: 'GET', path: '/big-answer' });
      expect(res).toMatchObject({ status: 500, body: { errcode: 'M_TOO_LARGE' } });
    } finally {
      b.inbound.resetRespond();
    }
  });

  test('three nodes: each reaches the other two at once, each answer naming the right origin', async () => {
    const c = await startPeer();
    try {
      await Promise.all([connect(c, a), connect(c, b)]);
      // The dialled side registers the connection a moment after the dialler.
      await eventually(() => a.network.transport.connectedServers().includes(c.serverName) && b.network.transport.connectedServers().includes(c.serverName), 10_000, 'a and b to see c');
      const [toA, toB, fromA, fromB] = await Promise.all([
        c.network.transport.request(a.serverName, { method: 'GET', path: '/c-to-a' }),
        c.network.transport.request(b.serverName, { method: 'GET', path: '/c-to-b' }),
        a.network.transport.request(c.serverName, { method: 'GET', path: '/a-to-c' }),
        b.network.transport.request(c.serverName, { method: 'GET', path: '/b-to-c' }),
      ]);
      expect([toA.body, toB.body]).toMatchObject([{ origin: c.serverName, path: '/c-to-a' }, { origin: c.serverName, path: '/c-to-b' }]);
      expect([fromA.body, fromB.body]).toMatchObject([{ origin: a.serverName, path: '/a-to-c' }, { origin: b.serverName, path: '/b-to-c' }]);
      expect(c.network.transport.connectedServers().sort()).toEqual([a.serverName, b.serverName].sort());
    } finally {
      await c.stop();
    }
  });

  test('a response over the receiver’s frame limit fails that request with UnreachableError, not the stream', async () => {
    const d = await startPeer(); // default 32 MiB limit, answering a peer whose limit is 64 KiB
    try {
      d.inbound.respond = async (_o, req) => ({ status: 200, body: { x: req.path === '/big' ? 'y'.repeat(100 * 1024) : '' } });
      await connect(a, d);
      const err = await a.network.transport.request(d.serverName, { method: 'GET', path: '/big' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnreachableError);
      expect((err as Error).message).toContain('exceeds');
      expect((await a.network.transport.request(d.serverName, { method: 'GET', path: '/small' })).status).toBe(200);
    } finally {
      await d.stop();
    }
  });

  test('connectedServers lists the peer and peerConnected was called', async () => {
    expect(a.network.transport.connectedServers()).toContain(b.serverName);
    expect(b.network.transport.connectedServers()).toContain(a.serverName);
    expect(a.inbound.connected).toContain(b.serverName);
    const status = a.network.transport.status();
    expect(status.connections.some((c) => c.serverName === b.serverName && c.transport === 'tcp' && !c.limited)).toBe(true);
  });
});

describe('hostile frames', () => {
  test('a frame cannot claim another origin', async () => {
    const raw = await rawStream(a, b);
    const other = serverIdentityFromSeed(generateSeed()).serverName;
    raw.send(rawFrame(JSON.stringify({ id: 1, method: 'PUT', path: '/_matrix/federation/v1/send/x', origin: other, body: { origin: other, pdus: [] } })));
    const res = await raw.next();
    expect(res).toMatchObject({ kind: 'response', frame: { id: 1, status: 200 } });
    expect(b.inbound.requests.at(-1)?.origin).toBe(a.serverName);
    raw.stream.abort(new Error('done'));
  });

  test('malformed and oversize frames are answered with errors on the same stream, which keeps working', async () => {
    const raw = await rawStream(a, b);
    raw.send(rawFrame('{"id":1,"method":"GET","path":"/x", oops'));
    expect(await raw.next()).toMatchObject({ kind: 'response', frame: { id: 1, status: 400, body: { errcode: 'M_NOT_JSON' } } });
    raw.send(rawFrame('{"id":2,"method":"BREW","path":"/x"}'));
    expect(await raw.next()).toMatchObject({ kind: 'response', frame: { id: 2, status: 400, body: { errcode: 'M_BAD_JSON' } } });
    raw.send(rawFrame('{"id":3,"method":"PUT","path":"/x","body":"text"}'));
    expect(await raw.next()).toMatchObject({ kind: 'response', frame: { id: 3, status: 400, body: { errcode: 'M_BAD_JSON' } } });
    // 100 KiB against a 64 KiB limit, sent in pieces.
    const big = encodeFrame({ id: 4, method: 'PUT', path: '/big', body: { x: 'y'.repeat(100 * 1024) } });
    for (let i = 0; i < big.length; i += 8192) raw.send(big.subarray(i, i + 8192));
    expect(await raw.next()).toMatchObject({ kind: 'response', frame: { id: 4, status: 413, body: { errcode: 'M_TOO_LARGE' } } });
    // A response to nothing is ignored.
    raw.send(rawFrame('{"id":99,"status":200,"body":{}}'));
    raw.send(encodeFrame({ id: 5, method: 'GET', path: '/still-fine' }));
    expect(await raw.next()).toMatchObject({ kind: 'response', frame: { id: 5, status: 200, body: { origin: a.serverName, path: '/still-fine' } } });
    raw.stream.abort(new Error('done'));
  });

  test('garbage with no id resets the stream; the peer stays healthy', async () => {
    const raw = await rawStream(a, b);
    raw.send(rawFrame('this is not a frame'));
    await raw.closed;
    expect(raw.stream.status).not.toBe('open');
    expect((await a.network.transport.request(b.serverName, { method: 'GET', path: '/after-garbage' })).status).toBe(200);
    expect((await b.network.transport.request(a.serverName, { method: 'GET', path: '/after-garbage' })).status).toBe(200);
  });

  test('more concurrent requests than allowed are answered 429', async () => {
    const c = await startPeer({ maxConcurrentInbound: 2 });
    try {
      const release: Array<() => void> = [];
      c.inbound.respond = () => new Promise((resolve) => release.push(() => resolve({ status: 200, body: {} })));
      await connect(a, c);
      const ps = [0, 1, 2].map((i) => a.network.transport.request(c.serverName, { method: 'GET', path: `/slot/${i}` }));
      const third = await ps[2];
      expect(third).toMatchObject({ status: 429, body: { errcode: 'M_LIMIT_EXCEEDED' } });
      await eventually(() => release.length === 2, 5000, 'two requests in the handler');
      for (const r of release) r();
      expect((await Promise.all(ps.slice(0, 2))).map((r) => r.status)).toEqual([200, 200]);
    } finally {
      await c.stop();
    }
  });
});

describe('dialling', () => {
  test('a server not connected is dialled by name with an address from the peer book', async () => {
    const kv = await openMemoryKv({ name: 'dial-by-name', stores: HOMESERVER_STORES });
    const tcp = b.tcpAddr().replace(/\/p2p\/.*$/, '');
    await kv.write((tx) => tx.put(STORES.knownPeers, [b.serverName], { addrs: [tcp], lastSeenTs: 1 }));
    const c = await startPeer({ kv });
    try {
      expect(c.network.node.getConnections().length).toBe(0);
      const res = await c.network.transport.request(b.serverName, { method: 'GET', path: '/hello' });
      expect(res).toMatchObject({ status: 200, body: { origin: c.serverName } });
    } finally {
      await c.stop();
    }
  });

  test('a server whose address is wrong is UnreachableError within the timeout', async () => {
    const kv = await openMemoryKv({ name: 'dial-wrong', stores: HOMESERVER_STORES });
    const name = serverIdentityFromSeed(generateSeed()).serverName;
    // A port with nothing listening (the TCP port of a stopped node).
    const gone = await startPeer();
    const addr = gone.tcpAddr().replace(/\/p2p\/.*$/, '');
    await gone.stop();
    await kv.write((tx) => tx.put(STORES.knownPeers, [name], { addrs: [addr], lastSeenTs: 1 }));
    const c = await startPeer({ kv });
    try {
      await expect(c.network.transport.request(name, { method: 'GET', path: '/x' }, { timeoutMs: 3000 })).rejects.toBeInstanceOf(UnreachableError);
    } finally {
      await c.stop();
    }
  });
});
