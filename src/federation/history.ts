/**
 * Room history from before a remote join, fetched on demand. After send_join this server holds the room's state
 * but none of its earlier timeline; when a client's /messages pages back past the oldest event we hold,
 * TimelineService calls `fetchHistory`, which asks a resident server (GET /backfill, spec server-server-api.md
 * §Backfilling) for the events before it and stores them as history.
 *
 * Where they go: the join reserved a gap of stream positions below itself (membership.ts, `reservePositions`).
 * Backfilled events take positions in that gap, newest first counting down, in the room's timeline index only:
 * /messages and /context see them in order, but no stream entry is written, so they never arrive through /sync
 * as live events (as Synapse's negative stream orderings for backfilled events; our storage keys are unsigned).
 *
 * Checks: each event passes steps 1–4 (format, signatures, content hash, auth against its auth events) through
 * Ingest.storeOutliers; rejected events are kept out of the timeline. The events stay marked `outlier`: they are
 * not part of the room graph we follow (ingest never takes state from them), and their state groups are the
 * state at our join — enough for the history-visibility checks that decide what a client may read, since the
 * resident already served only what our server may see (shared / world_readable history).
 */
import type { Pdu } from '../core/event.js';
import type { JsonObject } from '../core/json.js';
import type { Key } from '../storage/kv.js';
import type { EventRecord } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import { timelineRange } from '../services/event-store.js';
import type { FederationParts } from './parts.js';
import { enc, objectList } from './remote.js';

/** Timeline positions reserved below a remote join: the most history one join can hold. */
export const HISTORY_GAP = 1_000_000;
/** Most events asked for in one backfill request. */
const MAX_BATCH = 100;
const BACKFILL_TIMEOUT_MS = 10_000;

/** server: ['history', roomId] → HistoryRecord */
export interface HistoryRecord {
  /** The lowest position of the gap. */
  floor: number;
  joinEventId: string;
  /** The resident had nothing older to give: stop asking. */
  done?: boolean;
}

export function historyKey(roomId: string): Key {
  return ['history', roomId];
}

export class History {
  /** One backfill per room at a time; concurrent pages wait for it. */
  private readonly running = new Map<string, Promise<boolean>>();

  constructor(private readonly p: FederationParts) {}

  private get ctx() {
    return this.p.ctx;
  }

  /** Fetches up to `want` events older than the room's oldest stored one; whether any were stored. */
  fetchHistory(roomId: string, want: number): Promise<boolean> {
    const busy = this.running.get(roomId);
    if (busy) return busy;
    const work = this.fetch(roomId, want).finally(() => this.running.delete(roomId));
    this.running.set(roomId, work);
    return work;
  }

  private async fetch(roomId: string, want: number): Promise<boolean> {
    if (!this.p.remote.available) return false;
    const start = await this.ctx.kv.read(async (tx) => {
      const h = await tx.get<HistoryRecord>(STORES.server, historyKey(roomId));
      if (!h || h.done) return undefined;
      const [oldest] = await timelineRange(tx, roomId, { limit: 1 });
      if (!oldest || oldest[0] <= h.floor) return undefined;
      return { h, oldestId: oldest[1] };
    });
    if (!start) return false;
    const version = await this.p.ingest.versionOf(roomId);
    if (!version) return false;
    const servers = [...(await this.p.servers.get(roomId))].filter((s) => s !== this.ctx.serverName);
    const limit = Math.min(MAX_BATCH, Math.max(want, 1) + 1);
    for (const server of servers) {
      let pdus: JsonObject[];
      try {
        const body = await this.p.remote.request(
          server,
          'GET',
          `/_matrix/federation/v1/backfill/${enc(roomId)}?v=${enc(start.oldestId)}&limit=${limit}`,
          undefined,
          { timeoutMs: BACKFILL_TIMEOUT_MS },
        );
        pdus = objectList(body, 'pdus', MAX_BATCH);
      } catch (e) {
        this.ctx.logger.debug('federation: backfill failed', { server, roomId, error: e });
        continue;
      }
      const checked = await this.p.ingest.storeOutliers(server, version, roomId, pdus);
      const good = [...checked.values()].filter((c) => c.rejected === undefined).map((c) => c.pdu);
      return this.store(roomId, start.h, good);
    }
    return false;
  }

  /** Puts the events not yet in the timeline below its oldest one, newest first; marks the history done when none. */
  private store(roomId: string, h: HistoryRecord, pdus: readonly Pdu[]): Promise<boolean> {
    // Newest first by depth (then by timestamp): positions count down from the oldest held.
    const ordered = [...pdus].sort((x, y) => y.depth - x.depth || y.originServerTs - x.originServerTs);
    return this.p.rooms.runExclusive(roomId, () =>
      this.ctx.kv.write(async (tx) => {
        const join = await tx.get<EventRecord>(STORES.events, [h.joinEventId]);
        const [oldest] = await timelineRange(tx, roomId, { limit: 1 });
        const recs = await tx.getMany<EventRecord>(STORES.events, ordered.map((p) => [p.eventId]));
        let slot = (oldest?.[0] ?? h.floor) - 1;
        let stored = 0;
        for (let i = 0; i < ordered.length && slot >= h.floor && join; i++) {
          const rec = recs[i];
          if (!rec || rec.pos !== undefined || rec.rejected !== undefined) continue;
          await tx.put(STORES.events, [rec.eventId], { ...rec, pos: slot, stateBefore: join.stateBefore, stateAfter: join.stateBefore, outlier: true } satisfies EventRecord);
          await tx.put(STORES.roomTimeline, [roomId, slot], rec.eventId);
          slot--;
          stored++;
        }
        if (stored === 0) await tx.put(STORES.server, historyKey(roomId), { ...h, done: true } satisfies HistoryRecord);
        return stored > 0;
      }),
    );
  }
}
