/**
 * Only one tab runs the libp2p node: the one holding the Web Lock `hearth-network`. The others queue for it, so when
 * the leader tab closes (the browser releases its locks) the next tab takes over and starts its own node. Every tab
 * can follow the network status (the leader broadcasts it).
 *
 * https://w3c.github.io/web-locks/
 */
import type { Logger } from '../../services/context.js';
import { silentLogger } from '../../services/context.js';
import { NetworkHost, statusListeners } from './network-host.js';
import type { NetworkHostInit } from './network-host.js';
import type { NetworkStatusMessage } from './protocol.js';
import { STATUS_CHANNEL } from './protocol.js';

export const NETWORK_LOCK = 'hearth-network';

export interface NetworkLeadership {
  /** The running host while this tab is the leader. */
  readonly host: NetworkHost | undefined;
  /** Resolves when this tab becomes leader and its node has started. */
  readonly leading: Promise<NetworkHost>;
  /** Gives up leadership (stops the node) and stops queueing for it. */
  stop(): Promise<void>;
}

/** Queues for leadership; once granted, runs a NetworkHost until `stop()` or the tab closes. Retries a failed start. */
export function startNetworkLeadership(init: NetworkHostInit = {}): NetworkLeadership {
  const logger: Logger = init.logger ?? silentLogger;
  const quit = new AbortController();
  let host: NetworkHost | undefined;
  let resolveLeading!: (h: NetworkHost) => void;
  const leading = new Promise<NetworkHost>((r) => (resolveLeading = r));
  const locks = (navigator as Navigator & { locks?: LockManager }).locks;

  const lead = async (): Promise<void> => {
    for (let attempt = 0; !quit.signal.aborted; attempt++) {
      const h = new NetworkHost(init);
      try {
        await h.start();
        host = h;
        resolveLeading(h);
        break;
      } catch (e) {
        logger.warn('network: could not start; retrying', e);
        await h.stop().catch(() => undefined);
        await new Promise<void>((r) => {
          const t = setTimeout(r, Math.min(30_000, 1000 * 2 ** attempt));
          quit.signal.addEventListener('abort', () => (clearTimeout(t), r()), { once: true });
        });
      }
    }
    // Hold the lock until we quit (or the tab goes away, which releases it).
    await new Promise<void>((r) => (quit.signal.aborted ? r() : quit.signal.addEventListener('abort', () => r(), { once: true })));
    const h = host;
    host = undefined;
    await h?.stop();
  };

  const held = locks
    ? locks.request(NETWORK_LOCK, { signal: quit.signal }, lead).catch((e: unknown) => {
        if ((e as { name?: string } | null)?.name !== 'AbortError') logger.error('network: leader election failed', e);
      })
    : lead(); // no Web Locks: every tab runs its own node (still correct, just more connections)

  return {
    get host() {
      return host;
    },
    leading,
    async stop() {
      quit.abort();
      await held;
    },
  };
}

/** Follows the network status broadcast by the leader tab (and by this tab when it leads). Returns an unsubscribe. */
export function onNetworkStatus(listener: (msg: NetworkStatusMessage) => void): () => void {
  const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel(STATUS_CHANNEL) : undefined;
  const onMessage = (e: MessageEvent) => {
    const msg = e.data as NetworkStatusMessage | null;
    if (msg?.type === 'status' && Array.isArray(msg.peers)) listener(msg);
  };
  channel?.addEventListener('message', onMessage);
  statusListeners.add(listener);
  return () => {
    statusListeners.delete(listener);
    channel?.close();
  };
}
