/**
 * The page's libp2p node (src/browser/p2p/node.ts) puts on the wire what the Node peer does: one socket write per
 * noise message and a yamux window update per half window (coalescedWrites, lazyWindowUpdates in
 * src/net/libp2p-transport.ts; test/net/wire-writes.test.ts measures them between Node peers). The browser's own
 * links are covered by `npx vitest run --project browser test/browser/federation.test.ts`; this checks the wiring.
 */
import { afterEach, expect, test, vi } from 'vitest';

vi.mock('../../src/net/libp2p-transport.js', async (importOriginal) => {
  const m = await importOriginal<typeof import('../../src/net/libp2p-transport.js')>();
  return { ...m, coalescedWrites: vi.fn(m.coalescedWrites), lazyWindowUpdates: vi.fn(m.lazyWindowUpdates) };
});

const { coalescedWrites, lazyWindowUpdates } = await import('../../src/net/libp2p-transport.js');
const { createBrowserLibp2p } = await import('../../src/browser/p2p/node.js');

afterEach(() => vi.clearAllMocks());

test('the browser node wraps its noise encrypter and yamux muxer as the Node peer does', async () => {
  const node = await createBrowserLibp2p({ seed: new Uint8Array(32).fill(7) });
  try {
    expect(vi.mocked(coalescedWrites)).toHaveBeenCalledTimes(1);
    expect(vi.mocked(lazyWindowUpdates)).toHaveBeenCalledTimes(1);
  } finally {
    await node.stop();
  }
});
