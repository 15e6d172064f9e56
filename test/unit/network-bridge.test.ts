/**
 * The service worker's federation transport (sw/network-bridge.ts) against a fake leader tab on a real MessageChannel:
 * `publishTo` crosses the bridge with the servers gossip reached, and falls back to `/send` for everyone (reject, or
 * `[]`) when the leader is of an older version or absent. The real leader (src/browser/p2p/network-host.ts) is
 * exercised in Chromium by test/browser/federation.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NetworkBridge } from '../../sw/network-bridge.js';
import type { ToLeader, ToWorker } from '../../src/browser/p2p/protocol.js';
import { HELLO } from '../../src/browser/p2p/protocol.js';
import { silentLogger } from '../../src/services/context.js';
import type { Kv } from '../../src/storage/kv.js';

const channels: MessageChannel[] = [];
afterEach(() => {
  for (const ch of channels.splice(0)) {
    ch.port1.close();
    ch.port2.close();
  }
});

/** A bridge with a leader attached whose answer to `publish` is `answer` (undefined: the leader never answers). */
async function bridgeWithLeader(answer: (msg: Extract<ToLeader, { t: 'publish' }>) => ToWorker | undefined) {
  const bridge = new NetworkBridge({
    homeserver: async () => ({
      serverName: 'self',
      seed: new Uint8Array(32),
      kv: {} as Kv, // only the `wanted` message reads it
      federation: { handleRequest: async () => ({ status: 404, body: {} }), handleGossip: async () => undefined },
    }),
    logger: silentLogger,
  });
  const ch = new MessageChannel();
  channels.push(ch);
  const published: unknown[] = [];
  const identity = new Promise<void>((resolve) => {
    ch.port2.onmessage = (e: MessageEvent) => {
      const msg = e.data as ToLeader;
      if (msg.t === 'identity') resolve();
      if (msg.t === 'publish') {
        published.push(msg.message);
        const reply = answer(msg);
        if (reply) ch.port2.postMessage(reply);
      }
    };
  });
  await bridge.onMessage({ data: { type: HELLO }, ports: [ch.port1] } as unknown as ExtendableMessageEvent);
  await identity;
  return { bridge, published };
}

describe('NetworkBridge.publishTo', () => {
  it('publishes through the leader and resolves with the servers gossip reached', async () => {
    const { bridge, published } = await bridgeWithLeader((m) => ({ t: 'response', id: m.id, reached: ['a.example', 'b.example'] }));
    await expect(bridge.publishTo('!r:x', { pdus: [] })).resolves.toEqual(['a.example', 'b.example']);
    expect(published).toEqual([{ pdus: [] }]);
  });

  it('rejects when the leader publishes without saying to whom (an older leader): the sender then sends to all', async () => {
    const { bridge, published } = await bridgeWithLeader((m) => ({ t: 'response', id: m.id }));
    await expect(bridge.publishTo('!r:x', { pdus: [] })).rejects.toThrow(/which servers/);
    expect(published).toHaveLength(1);
    // The plain publish is satisfied by the same answer.
    await expect(bridge.publish('!r:x', { pdus: [] })).resolves.toBeUndefined();
  });

  it('rejects with the leader’s error (e.g. over the gossip size limit)', async () => {
    const { bridge } = await bridgeWithLeader((m) => ({ t: 'response', id: m.id, error: { name: 'RangeError', message: 'too big' } }));
    await expect(bridge.publishTo('!r:x', { pdus: [] })).rejects.toMatchObject({ name: 'RangeError' });
  });

  it('drops anything but server names from the answer', async () => {
    const { bridge } = await bridgeWithLeader((m) => ({ t: 'response', id: m.id, reached: ['a.example', 7, null] as unknown as string[] }));
    await expect(bridge.publishTo('!r:x', {})).resolves.toEqual(['a.example']);
  });

  it('reaches nobody without a leader', async () => {
    const bridge = new NetworkBridge({ homeserver: () => Promise.reject(new Error('unused')), logger: silentLogger });
    await expect(bridge.publishTo('!r:x', {})).resolves.toEqual([]);
  });
});
