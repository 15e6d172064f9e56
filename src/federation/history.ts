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
 * not part of the room graph we follow (ingest never takes state from them).
 *
 * State: each event is stored with the room's state before and after it, so history visibility (which setting was
 * in force at each event, modules/history_visibility.md) and the state /messages and /context return for old
 * events are right. The state before the oldest event of a batch is the resident's (GET /state_ids at it, and the
 * state events we lack, through Ingest.remoteStateAfter); from there it is carried forward along prev_events
 * through the batch, each state event replacing its key. An event whose state cannot be carried (its prev event
 * was not served to us, or it merges branches) asks the resident again; only if that fails does it fall back to
 * the state at our join.
 */
import type { Pdu, StateMap } from '../core/event.js';
import { stateKey } from '../core/event.js';
import type { RoomVersion } from '../core/room-versions.js';
import type { JsonObject } from '../core/json.js';
import type { Key } from '../storage/kv.js';
import type { EventRecord } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import { EMPTY_STATE_GROUP, addStateGroup } from '../storage/state-groups.js';
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

/** The room's state around one backfilled event. */
interface BatchState {
  before: StateMap;
  after: StateMap;
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
      const states = await this.statesOf(server, roomId, version, good);
      return this.store(roomId, start.h, good, states);
    }
    return false;
  }

  /**
   * The state before and after each event of a backfilled batch (see the module comment); events missing from the
   * result fall back to the state at our join.
   */
  private async statesOf(server: string, roomId: string, version: RoomVersion, pdus: readonly Pdu[]): Promise<Map<string, BatchState>> {
    const out = new Map<string, BatchState>();
    // Oldest first, so each event's prev event is done before it.
    const ordered = [...pdus].sort((x, y) => x.depth - y.depth || x.originServerTs - y.originServerTs);
    for (const p of ordered) {
      const prev = p.prevEvents.length === 1 ? out.get(p.prevEvents[0]) : undefined;
      let before: StateMap | undefined = prev?.after ?? (p.prevEvents.length === 0 ? new Map() : undefined);
      if (!before) before = await this.remoteStateBefore(server, roomId, version, p);
      if (!before) continue;
      const after = p.stateKey === undefined ? before : new Map(before).set(stateKey(p.type, p.stateKey), p.eventId);
      out.set(p.eventId, { before, after });
    }
    return out;
  }

  /**
   * The resident's state before `p`: for an event that changes no state, its state after it (/state_ids at it);
   * for a state event, the state after its one prev event. Undefined when the resident cannot say.
   */
  private async remoteStateBefore(server: string, roomId: string, version: RoomVersion, p: Pdu): Promise<StateMap | undefined> {
    const at = p.stateKey === undefined ? p.eventId : p.prevEvents.length === 1 ? p.prevEvents[0] : undefined;
    if (at === undefined) return undefined;
    try {
      return await this.p.ingest.remoteStateAfter(server, roomId, at, version);
    } catch (e) {
      this.ctx.logger.debug('federation: no state for a backfilled event', { server, roomId, eventId: p.eventId, error: e });
      return undefined;
    }
  }

  /** Puts the events not yet in the timeline below its oldest one, newest first; marks the history done when none. */
  private store(roomId: string, h: HistoryRecord, pdus: readonly Pdu[], states: ReadonlyMap<string, BatchState>): Promise<boolean> {
    // Newest first by depth (then by timestamp): positions count down from the oldest held.
    const ordered = [...pdus].sort((x, y) => y.depth - x.depth || y.originServerTs - x.originServerTs);
    return this.p.rooms.runExclusive(roomId, () =>
      this.ctx.kv.write(async (tx) => {
        const join = await tx.get<EventRecord>(STORES.events, [h.joinEventId]);
        const [oldest] = await timelineRange(tx, roomId, { limit: 1 });
        const recs = await tx.getMany<EventRecord>(STORES.events, ordered.map((p) => [p.eventId]));
        // Which events go where: newest first, counting down from the oldest held.
        const placed: Array<{ rec: EventRecord; slot: number }> = [];
        let slot = (oldest?.[0] ?? h.floor) - 1;
        for (let i = 0; i < ordered.length && slot >= h.floor && join; i++) {
          const rec = recs[i];
          if (!rec || rec.pos !== undefined || rec.rejected !== undefined) continue;
          placed.push({ rec, slot: slot-- });
        }
        // One state group per distinct state, made oldest first: an event's state before is mostly its prev event's
        // state after (the same map), and its state after a one-key delta on it.
        const groups = new Map<StateMap, number>();
        const groupOf = async (map: StateMap, base?: { map: StateMap; group: number }): Promise<number> => {
          let g = groups.get(map);
          if (g !== undefined) return g;
          const onlyAdds = base !== undefined && [...base.map.keys()].every((k) => map.has(k));
          g = onlyAdds
            ? await addStateGroup(tx, base.group, new Map([...map].filter(([k, v]) => base.map.get(k) !== v)), base.map)
            : await addStateGroup(tx, EMPTY_STATE_GROUP, map);
          groups.set(map, g);
          return g;
        };
        const stateGroups = new Map<string, { before: number; after: number }>();
        for (const { rec } of [...placed].reverse()) {
          const st = states.get(rec.eventId);
          if (!st) continue;
          const before = await groupOf(st.before);
          stateGroups.set(rec.eventId, { before, after: await groupOf(st.after, { map: st.before, group: before }) });
        }
        for (const { rec, slot } of placed) {
          // Without the resident's state: the state at our join, as good a guess as we have.
          const g = stateGroups.get(rec.eventId) ?? { before: join!.stateBefore, after: join!.stateBefore };
          await tx.put(STORES.events, [rec.eventId], { ...rec, pos: slot, stateBefore: g.before, stateAfter: g.after, outlier: true } satisfies EventRecord);
          await tx.put(STORES.roomTimeline, [roomId, slot], rec.eventId);
        }
        const stored = placed.length;
        if (stored === 0) await tx.put(STORES.server, historyKey(roomId), { ...h, done: true } satisfies HistoryRecord);
        return stored > 0;
      }),
    );
  }
}
