/**
 * The peers we remember: the libp2p addresses of every Hearth server we have met, kept in the homeserver's storage
 * (`STORES.knownPeers`) so a restarted peer — or a browser tab opened tomorrow — can dial them again without a
 * bootstrap node. Updates are collected in memory and written in one transaction a moment later, so a burst of
 * identify events costs one write.
 */
import type { Clock, Logger } from '../services/context.js';
import { silentLogger, systemClock } from '../services/context.js';
import type { Kv } from '../storage/kv.js';
import { STORES } from '../storage/schema.js';

/** key: [serverName] → KnownPeerRecord */
export interface KnownPeerRecord {
  /** Multiaddrs (strings, without the /p2p/ suffix) the peer listens on or was reached at, newest first. */
  addrs: string[];
  /** When we were last connected to it (ms since the epoch). */
  lastSeenTs: number;
}

export interface PeerBookInit {
  clock?: Clock;
  logger?: Logger;
  /** How long updates wait before being written together (default 1 s). */
  flushDelayMs?: number;
  /** Addresses kept per peer (default 16). */
  maxAddrsPerPeer?: number;
  /** Peers kept; the least recently seen are forgotten beyond this (default 2,000). */
  maxPeers?: number;
}

export class PeerBook {
  private readonly kv: Kv;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly flushDelayMs: number;
  private readonly maxAddrs: number;
  private readonly maxPeers: number;
  private readonly peers = new Map<string, KnownPeerRecord>();
  private readonly dirty = new Set<string>();
  private readonly removed = new Set<string>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(kv: Kv, init: PeerBookInit = {}) {
    this.kv = kv;
    this.clock = init.clock ?? systemClock;
    this.logger = init.logger ?? silentLogger;
    this.flushDelayMs = init.flushDelayMs ?? 1000;
    this.maxAddrs = init.maxAddrsPerPeer ?? 16;
    this.maxPeers = init.maxPeers ?? 2000;
  }

  /** Reads the stored peers into memory. */
  async load(): Promise<void> {
    const entries = await this.kv.read((tx) => tx.range<KnownPeerRecord>(STORES.knownPeers));
    for (const [key, rec] of entries) {
      const name = key[0];
      if (typeof name === 'string' && Array.isArray(rec?.addrs)) this.peers.set(name, rec);
    }
  }

  get(serverName: string): KnownPeerRecord | undefined {
    return this.peers.get(serverName);
  }

  /** Every remembered peer, most recently seen first. */
  all(): Array<[serverName: string, record: KnownPeerRecord]> {
    return [...this.peers].sort((a, b) => b[1].lastSeenTs - a[1].lastSeenTs);
  }

  /** Records that we are connected to `serverName`, reachable at `addrs` (merged in front of what we knew). */
  remember(serverName: string, addrs: readonly string[]): void {
    const old = this.peers.get(serverName);
    const merged = [...new Set([...addrs, ...(old?.addrs ?? [])])].slice(0, this.maxAddrs);
    this.peers.set(serverName, { addrs: merged, lastSeenTs: this.clock.now() });
    this.removed.delete(serverName);
    this.dirty.add(serverName);
    if (this.peers.size > this.maxPeers) {
      const oldest = this.all().slice(this.maxPeers);
      for (const [name] of oldest) {
        this.peers.delete(name);
        this.dirty.delete(name);
        this.removed.add(name);
      }
    }
    this.schedule();
  }

  /** Writes pending updates now. */
  flush(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.flushing = this.flushing.then(() => this.writePending());
    return this.flushing;
  }

  /** Flushes and stops scheduling writes. */
  async stop(): Promise<void> {
    await this.flush();
  }

  private schedule(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => void this.flush(), this.flushDelayMs);
    // A pending flush must not keep a Node process alive on its own.
    (this.timer as { unref?: () => void }).unref?.();
  }

  private async writePending(): Promise<void> {
    if (this.dirty.size === 0 && this.removed.size === 0) return;
    const puts = [...this.dirty].map((name) => [name, this.peers.get(name)] as const);
    const deletes = [...this.removed];
    this.dirty.clear();
    this.removed.clear();
    try {
      await this.kv.write(async (tx) => {
        for (const [name, rec] of puts) if (rec) await tx.put(STORES.knownPeers, [name], rec);
        for (const name of deletes) await tx.delete(STORES.knownPeers, [name]);
      });
    } catch (e) {
      // Not fatal: the peers stay in memory and are written with the next change.
      this.logger.warn('could not store known peers', e);
      for (const [name] of puts) this.dirty.add(name);
      for (const name of deletes) this.removed.add(name);
    }
  }
}
