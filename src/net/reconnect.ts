/**
 * Keeps the peers that matter connected: the servers we share rooms with (room-peers.ts) and the bootstrap peers.
 * A wanted peer that is not connected is dialled; a failed dial is retried after an exponentially growing, jittered
 * delay (1 s, 2 s, 4 s … up to a minute by default), and a dropped connection starts the cycle again. The wanted
 * list is re-read periodically, so joining a room with a new server soon connects to it.
 */
import type { Libp2p, PeerId } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { Logger } from '../services/context.js';
import { silentLogger } from '../services/context.js';
import { serverNameToPeerId } from './peer-id.js';

export interface ReconnectorInit {
  /** Dials a Hearth server by name and opens its federation stream (Libp2pTransport.connect). */
  connectServer: (serverName: string, signal: AbortSignal) => Promise<void>;
  /** The servers to keep connected (called at start and every `refreshMs`). */
  wanted?: () => Promise<readonly string[]>;
  /** Bootstrap multiaddrs, each ending in /p2p/<peer id>. */
  bootstrap?: readonly string[];
  /** First retry delay (default 1 s). */
  baseDelayMs?: number;
  /** Longest retry delay (default 60 s). */
  maxDelayMs?: number;
  /** How often the wanted list is re-read (default 30 s). */
  refreshMs?: number;
  /** Time allowed for one dial (default 10 s). */
  dialTimeoutMs?: number;
  logger?: Logger;
}

interface Target {
  peerId: PeerId;
  dial: (signal: AbortSignal) => Promise<unknown>;
  bootstrap: boolean;
  attempts: number;
  timer?: ReturnType<typeof setTimeout>;
  dialing: boolean;
}

function unref(t: ReturnType<typeof setTimeout>): void {
  (t as { unref?: () => void }).unref?.();
}

export class Reconnector {
  private readonly node: Libp2p;
  private readonly init: ReconnectorInit;
  private readonly logger: Logger;
  private readonly targets = new Map<string, Target>();
  private refreshTimer: ReturnType<typeof setInterval> | undefined;
  private running = false;

  constructor(node: Libp2p, init: ReconnectorInit) {
    this.node = node;
    this.init = init;
    this.logger = init.logger ?? silentLogger;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    for (const addr of this.init.bootstrap ?? []) {
      let ma: Multiaddr;
      let peerId: PeerId;
      try {
        ma = multiaddr(addr);
        const id = ma.getComponents().findLast((c) => c.name === 'p2p')?.value;
        if (id === undefined) throw new Error('no /p2p/<peer id>');
        peerId = peerIdFromString(id);
      } catch (e) {
        this.logger.warn(`ignoring bootstrap address ${addr}: ${(e as Error).message}`);
        continue;
      }
      if (peerId.equals(this.node.peerId)) continue;
      this.targets.set(peerId.toString(), { peerId, dial: (signal) => this.node.dial(ma, { signal }), bootstrap: true, attempts: 0, dialing: false });
    }
    this.node.addEventListener('peer:disconnect', this.onDisconnect);
    const refreshMs = this.init.refreshMs ?? 30_000;
    this.refreshTimer = setInterval(() => void this.refresh(), refreshMs);
    unref(this.refreshTimer);
    void this.refresh();
  }

  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.node.removeEventListener('peer:disconnect', this.onDisconnect);
    if (this.refreshTimer !== undefined) clearInterval(this.refreshTimer);
    for (const t of this.targets.values()) if (t.timer !== undefined) clearTimeout(t.timer);
    this.targets.clear();
  }

  /** Re-reads the wanted servers and dials those not connected. */
  async refresh(): Promise<void> {
    let wanted: readonly string[] = [];
    try {
      wanted = (await this.init.wanted?.()) ?? [];
    } catch (e) {
      this.logger.warn('could not read the servers to keep connected', e);
    }
    if (!this.running) return;
    const keep = new Set<string>();
    for (const name of wanted) {
      const peerId = serverNameToPeerId(name);
      if (peerId === undefined || peerId.equals(this.node.peerId)) continue;
      const key = peerId.toString();
      keep.add(key);
      if (!this.targets.has(key)) {
        this.targets.set(key, { peerId, dial: (signal) => this.init.connectServer(name, signal), bootstrap: false, attempts: 0, dialing: false });
      }
    }
    for (const [key, t] of this.targets) {
      if (!t.bootstrap && !keep.has(key)) {
        if (t.timer !== undefined) clearTimeout(t.timer);
        this.targets.delete(key);
        continue;
      }
      if (!this.connected(t.peerId)) this.schedule(t, 0);
    }
  }

  /** Peer IDs being kept connected (for status and tests). */
  wantedPeers(): string[] {
    return [...this.targets.keys()];
  }

  private connected(peerId: PeerId): boolean {
    return this.node.getConnections(peerId).some((c) => c.status === 'open');
  }

  private readonly onDisconnect = (ev: CustomEvent<PeerId>): void => {
    const t = this.targets.get(ev.detail.toString());
    if (t === undefined) return;
    // Wait a little first: the peer may be restarting, and it may dial us itself.
    this.schedule(t, this.delay(Math.max(1, t.attempts)));
  };

  private delay(attempts: number): number {
    const base = this.init.baseDelayMs ?? 1000;
    const max = this.init.maxDelayMs ?? 60_000;
    const d = Math.min(max, base * 2 ** Math.max(0, attempts - 1));
    // Jitter (50–100 %) so peers that lost each other at the same moment do not redial in lockstep.
    return Math.round(d * (0.5 + Math.random() * 0.5));
  }

  private schedule(t: Target, delayMs: number): void {
    if (!this.running || t.timer !== undefined || t.dialing) return;
    t.timer = setTimeout(() => {
      t.timer = undefined;
      void this.attempt(t);
    }, delayMs);
    unref(t.timer);
  }

  private async attempt(t: Target): Promise<void> {
    if (!this.running || this.targets.get(t.peerId.toString()) !== t) return;
    if (this.connected(t.peerId)) {
      t.attempts = 0;
      return;
    }
    t.dialing = true;
    try {
      await t.dial(AbortSignal.timeout(this.init.dialTimeoutMs ?? 10_000));
      t.attempts = 0;
    } catch (e) {
      t.attempts++;
      this.logger.debug(`dial ${t.peerId.toString()} failed (attempt ${t.attempts})`, (e as Error).message);
    } finally {
      t.dialing = false;
    }
    if (t.attempts > 0) this.schedule(t, this.delay(t.attempts));
  }
}
