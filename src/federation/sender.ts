/**
 * Outgoing PDUs and EDUs: new PDUs are gossiped on the room's topic, and go as `/send` transactions only to the
 * room's servers the gossip was not handed to directly (FederationTransport.publishTo), so each receiver processes
 * an event once. EDUs (typing, receipts, presence, device lists, to-device) always go by `/send`: they are few,
 * and a receiver only believes them from their origin. One queue per destination.
 * Spec: shared/matrix-spec/content/server-server-api.md §Transactions (at most 50 PDUs and 100 EDUs each),
 * data/api/server-server/transactions.yaml.
 *
 * One transaction in flight per destination; what arrives meanwhile waits in memory and goes in the next one.
 * When a destination cannot be reached (or answers 5xx), what was waiting is written to the `federation_outbox`
 * store and retried with exponential backoff, immediately when the transport says the server connected again
 * (`peerConnected`), and after a restart. Ephemeral EDUs (typing, presence) are not kept: they are stale by then.
 * Delivering straight from memory keeps the send path free of an extra durable write; a crash before delivery
 * loses nothing the destination cannot fetch itself (get_missing_events on the next event it receives).
 */
import type { JsonObject } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import { roomVersion } from '../core/room-versions.js';
import type { EventRecord } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import type { ServiceContext } from '../services/context.js';
import { roomVersionOf } from '../services/event-store.js';
import { federationJson, recordsById } from './pdus.js';
import type { RemoteClient } from './remote.js';
import { RemoteError } from './remote.js';
import { traceEach } from './trace.js';
import type { FederationTransport } from './transport.js';

/** Resolves once the current task and its microtasks are done (setImmediate in Node; a 0 ms timer elsewhere). */
function afterThisTask(): Promise<void> {
  const g = globalThis as { setImmediate?: (cb: () => void) => unknown };
  return new Promise((resolve) => (g.setImmediate ? g.setImmediate(resolve) : setTimeout(resolve, 0)));
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** federation_outbox: [destination, seq] → OutboxItem */
export type OutboxItem = { eventId: string } | { edu: JsonObject };

type Pending = { kind: 'pdu'; eventId: string; json: JsonObject } | { kind: 'edu'; edu: JsonObject; keep: boolean };

/** One transaction's worth: its PDUs (and their IDs), EDUs, and what to do once it was delivered. */
interface Batch {
  pdus: JsonObject[];
  edus: JsonObject[];
  ids: string[];
  done: () => Promise<void>;
}

export const MAX_TXN_PDUS = 50;
export const MAX_TXN_EDUS = 100;

export interface SenderOptions {
  /** First retry delay after a failure; doubles up to `retryMaxMs`. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Time a /send may take. */
  timeoutMs?: number;
}

interface Destination {
  readonly name: string;
  memory: Pending[];
  /** The outbox store may hold items for it. */
  stored: boolean;
  sending: boolean;
  timer?: ReturnType<typeof setTimeout>;
  delayMs: number;
  /** Outbox writes of items queued while the destination is known to be down, in order. */
  writes: Promise<void>;
  pendingWrites: number;
}

export class FederationSender {
  private readonly dests = new Map<string, Destination>();
  private txnCounter = 0;
  private readonly txnPrefix = Date.now().toString(36);
  private stopped = false;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly timeoutMs: number;
  /** Resolvers waiting for every queue to drain (tests, shutdown). */
  private idleWaiters: Array<() => void> = [];
  /** Gossip publishes not yet settled (their /send remainder is not queued yet), and the last one per room. */
  private publishing = 0;
  private readonly roomPublishes = new Map<string, Promise<void>>();

  constructor(
    private readonly ctx: ServiceContext,
    private readonly remote: RemoteClient,
    private readonly transport: FederationTransport | undefined,
    opts: SenderOptions = {},
  ) {
    this.retryBaseMs = opts.retryBaseMs ?? 2_000;
    this.retryMaxMs = opts.retryMaxMs ?? 10 * 60_000;
    this.timeoutMs = opts.timeoutMs ?? 15_000;
  }

  /** Picks up destinations that still have items in the outbox (from before a restart). */
  async start(): Promise<void> {
    const rows = await this.ctx.kv.read((tx) => tx.range<OutboxItem>(STORES.federationOutbox, {}));
    for (const [key] of rows) {
      const d = this.dest(String(key[0]));
      if (!d.stored) {
        d.stored = true;
        this.schedule(d, this.retryBaseMs);
      }
    }
  }

  stop(): void {
    this.stopped = true;
    for (const d of this.dests.values()) if (d.timer) clearTimeout(d.timer);
  }

  /**
   * Sends a room's new PDUs to `destinations`: gossip on the room's topic first, then `/send` only to the servers
   * the gossip was not handed to (each receiver processes an event once). A transport without `publishTo`, or a
   * failed publish, means `/send` to all. Publishes of one room go out one after another, so the /send queues
   * keep the events' order.
   */
  fanOut(roomId: string, destinations: Iterable<string>, pdus: ReadonlyArray<{ eventId: string; json: JsonObject }>): void {
    if (pdus.length === 0) return;
    traceEach(pdus.map((p) => p.eventId), 'A fanOut');
    const dests = [...new Set(destinations)].filter((n) => n !== this.ctx.serverName);
    const transport = this.transport;
    if (!transport) return this.sendPdus(dests, pdus);
    if (!transport.publishTo) {
      this.sendPdus(dests, pdus);
      for (const chunk of chunks(pdus, MAX_TXN_PDUS)) {
        transport.publish(roomId, this.gossipMessage(chunk)).catch((e) => this.ctx.logger.debug('federation: gossip publish failed', e));
      }
      return;
    }
    const publishTo = transport.publishTo.bind(transport);
    this.publishing++;
    // The first publish waits for the current task to end: a local send's answer to its client is written in the
    // microtasks that follow the commit, and must not queue behind the gossip write (in which the kernel wakes the
    // receiver, and on a busy machine often runs it first). Measured both ways (bench/federation.ts sync-tcp --trace,
    // 2 cores at load 15–20, so only the order is telling): publishing first, the answer left 9–16 ms after the
    // commit; answering first, 2–8 ms, the gossip leaving 0.1–4 ms later than it would have (the answer's write and
    // what it woke). On a quiet machine the answer's write costs the gossip ~0.1 ms.
    const previous = this.roomPublishes.get(roomId) ?? afterThisTask();
    const next = previous.then(async () => {
      if (this.stopped) return;
      // Receivers read at most MAX_TXN_PDUS from a gossip message: larger batches go out in several.
      for (const chunk of chunks(pdus, MAX_TXN_PDUS)) {
        let reached: ReadonlySet<string>;
        traceEach(chunk.map((p) => p.eventId), 'A publish start');
        try {
          reached = new Set(await publishTo(roomId, this.gossipMessage(chunk)));
          traceEach(chunk.map((p) => p.eventId), 'A publish done');
        } catch (e) {
          this.ctx.logger.debug('federation: gossip publish failed, sending to every server', e);
          reached = new Set();
        }
        this.sendPdus(dests.filter((n) => !reached.has(n)), chunk);
      }
    });
    this.roomPublishes.set(roomId, next);
    void next.finally(() => {
      if (this.roomPublishes.get(roomId) === next) this.roomPublishes.delete(roomId);
      this.publishing--;
      this.checkIdle();
    });
  }

  private gossipMessage(pdus: ReadonlyArray<{ json: JsonObject }>): JsonObject {
    return { origin: this.ctx.serverName, origin_server_ts: this.ctx.clock.now(), pdus: pdus.map((p) => p.json), edus: [] };
  }

  /** Queues PDUs (wire JSON with their IDs) for each destination. */
  sendPdus(destinations: Iterable<string>, pdus: ReadonlyArray<{ eventId: string; json: JsonObject }>): void {
    if (pdus.length === 0) return;
    for (const name of destinations) {
      if (name === this.ctx.serverName) continue;
      const d = this.dest(name);
      for (const p of pdus) d.memory.push({ kind: 'pdu', eventId: p.eventId, json: p.json });
      this.kick(d);
    }
  }

  /** Queues an EDU for each destination; `keep` ones survive an unreachable destination (receipts, to-device…). */
  sendEdu(destinations: Iterable<string>, edu: JsonObject, keep: boolean): void {
    for (const name of destinations) {
      if (name === this.ctx.serverName) continue;
      const d = this.dest(name);
      d.memory.push({ kind: 'edu', edu, keep });
      this.kick(d);
    }
  }

  /** The transport says `name` is reachable again: retry now. */
  peerConnected(name: string): void {
    const d = this.dests.get(name);
    if (!d) return;
    d.delayMs = 0;
    if (d.timer) {
      clearTimeout(d.timer);
      d.timer = undefined;
    }
    this.kick(d);
  }

  /** Drops everything waiting for a destination (it will fetch what it lacks itself, with get_missing_events). */
  async forget(name: string): Promise<void> {
    const d = this.dests.get(name);
    if (d) {
      d.memory.length = 0;
      d.stored = false;
      if (d.timer) clearTimeout(d.timer);
      d.timer = undefined;
    }
    await this.ctx.kv.write((tx) => tx.deleteRange(STORES.federationOutbox, { prefix: [name] }));
  }

  /** Items waiting per destination (memory; `stored` when the outbox also holds some). */
  status(): Array<{ destination: string; waiting: number; stored: boolean; retryInMs?: number }> {
    return [...this.dests.values()].map((d) => ({
      destination: d.name,
      waiting: d.memory.length,
      stored: d.stored,
      ...(d.timer ? { retryInMs: d.delayMs } : {}),
    }));
  }

  /** Resolves when no destination has a transaction in flight or items in memory (backing-off ones excepted). */
  whenIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private isIdle(): boolean {
    if (this.publishing > 0) return false;
    for (const d of this.dests.values()) {
      if (d.sending || d.pendingWrites > 0) return false;
      if (!d.timer && (d.memory.length > 0 || d.stored)) return false;
    }
    return true;
  }

  private checkIdle(): void {
    if (this.idleWaiters.length === 0 || !this.isIdle()) return;
    const ws = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of ws) w();
  }

  private dest(name: string): Destination {
    let d = this.dests.get(name);
    if (!d) {
      d = { name, memory: [], stored: false, sending: false, delayMs: 0, writes: Promise.resolve(), pendingWrites: 0 };
      this.dests.set(name, d);
    }
    return d;
  }

  private kick(d: Destination): void {
    if (this.stopped) return;
    // Known to be down: what arrives now goes straight to the outbox, so a restart before it is back loses nothing.
    if (d.timer) return this.persistQueued(d);
    if (d.sending) return;
    this.flush(d).catch((e) => this.ctx.logger.error('federation: sender failed', e));
  }

  private persistQueued(d: Destination): void {
    d.pendingWrites++;
    d.writes = d.writes
      .then(() => this.keep(d))
      .catch((e) => this.ctx.logger.error('federation: could not keep items for an unreachable server', e))
      .finally(() => {
        d.pendingWrites--;
        this.checkIdle();
      });
  }

  private schedule(d: Destination, delayMs: number): void {
    if (this.stopped) return;
    if (d.timer) clearTimeout(d.timer);
    d.delayMs = delayMs;
    d.timer = setTimeout(() => {
      d.timer = undefined;
      this.kick(d);
    }, delayMs);
    (d.timer as { unref?: () => void }).unref?.();
  }

  private async flush(d: Destination): Promise<void> {
    d.sending = true;
    try {
      await d.writes;
      while (!this.stopped) {
        const batch = d.stored ? await this.storedBatch(d) : this.memoryBatch(d);
        if (!batch) break;
        const txnId = `${this.txnPrefix}.${++this.txnCounter}`;
        const body: JsonObject = {
          origin: this.ctx.serverName,
          origin_server_ts: this.ctx.clock.now(),
          pdus: batch.pdus,
          edus: batch.edus,
        };
        traceEach(batch.ids, 'A /send start');
        try {
          await this.remote.request(d.name, 'PUT', `/_matrix/federation/v1/send/${encodeURIComponent(txnId)}`, body, {
            timeoutMs: this.timeoutMs,
          });
        } catch (e) {
          const refused = e instanceof RemoteError && e.status >= 400 && e.status < 500 && e.status !== 429 && e.status !== 408;
          if (!refused) {
            // Unreachable, timed out or failing: keep what waits, try again later.
            await this.keep(d);
            const next = d.delayMs === 0 ? this.retryBaseMs : Math.min(d.delayMs * 2, this.retryMaxMs);
            this.schedule(d, next);
            // Items queued while the outbox write above ran found the destination sending, not down: keep them too.
            if (d.memory.length > 0) this.persistQueued(d);
            this.ctx.logger.debug('federation: destination unreachable, will retry', { destination: d.name, inMs: next, error: e });
            break;
          }
          // The destination refused this transaction: retrying the same one would not help.
          this.ctx.logger.warn('federation: transaction refused', { destination: d.name, error: e });
        }
        traceEach(batch.ids, 'A /send done');
        d.delayMs = 0;
        await batch.done();
      }
    } finally {
      d.sending = false;
      this.checkIdle();
    }
  }

  private memoryBatch(d: Destination): Batch | undefined {
    if (d.memory.length === 0) return undefined;
    const pdus: JsonObject[] = [];
    const ids: string[] = [];
    const edus: JsonObject[] = [];
    let taken = 0;
    for (const item of d.memory) {
      if (item.kind === 'pdu') {
        if (pdus.length >= MAX_TXN_PDUS) break;
        pdus.push(item.json);
        ids.push(item.eventId);
      } else {
        if (edus.length >= MAX_TXN_EDUS) break;
        edus.push(item.edu);
      }
      taken++;
    }
    const items = d.memory.slice(0, taken);
    return {
      pdus,
      edus,
      ids,
      done: async () => {
        // Remove exactly what was sent (more may have been queued meanwhile).
        d.memory.splice(0, items.length);
      },
    };
  }

  /** The oldest stored items (a transaction's worth), loading the PDUs' JSON from the events store. */
  private async storedBatch(d: Destination): Promise<Batch | undefined> {
    const rows = await this.ctx.kv.read((tx) =>
      tx.range<OutboxItem>(STORES.federationOutbox, { prefix: [d.name], limit: MAX_TXN_PDUS + MAX_TXN_EDUS }),
    );
    if (rows.length === 0) {
      d.stored = false;
      return this.memoryBatch(d);
    }
    const taken: typeof rows = [];
    let pduCount = 0;
    let eduCount = 0;
    for (const row of rows) {
      const item = row[1];
      if ('eventId' in item) {
        if (pduCount >= MAX_TXN_PDUS) break;
        pduCount++;
      } else {
        if (eduCount >= MAX_TXN_EDUS) break;
        eduCount++;
      }
      taken.push(row);
    }
    const ids = taken.flatMap(([, item]) => ('eventId' in item ? [item.eventId] : []));
    const pdus = await this.ctx.kv.read(async (tx) => {
      const recs = await recordsById(tx, ids);
      const out: JsonObject[] = [];
      for (const id of ids) {
        const r: EventRecord | undefined = recs.get(id);
        if (!r) continue;
        const v = (await roomVersionOf(tx, r.roomId)) ?? roomVersion('10')!;
        out.push(federationJson(r, v));
      }
      return out;
    });
    const edus = taken.flatMap(([, item]) => ('edu' in item && isJsonObject(item.edu) ? [item.edu] : []));
    return {
      pdus,
      edus,
      ids,
      done: async () => {
        await this.ctx.kv.write(async (tx) => {
          for (const [key] of taken) await tx.delete(STORES.federationOutbox, key);
        });
      },
    };
  }

  /** Writes what waits in memory to the outbox (ephemeral EDUs are dropped). */
  private async keep(d: Destination): Promise<void> {
    const items = d.memory.splice(0, d.memory.length);
    const kept: OutboxItem[] = [];
    for (const item of items) {
      if (item.kind === 'pdu') kept.push({ eventId: item.eventId });
      else if (item.keep) kept.push({ edu: item.edu });
    }
    if (kept.length === 0) return;
    await this.ctx.kv.write(async (tx) => {
      let seq = (await tx.get<number>(STORES.server, ['nextId', 'outbox'])) ?? 0;
      for (const item of kept) await tx.put(STORES.federationOutbox, [d.name, ++seq], item);
      await tx.put(STORES.server, ['nextId', 'outbox'], seq);
    });
    d.stored = true;
  }
}
