/**
 * Stored events as federation sees them: the wire form of a stored PDU, the auth chain of a set of events, and
 * an event source over storage for state resolution (core/state-res).
 * Spec: shared/matrix-spec/content/server-server-api.md (§PDUs, §"Retrieving event authorisation information");
 * rooms/fragments/v2-state-res.md §Definitions ("Auth chain").
 */
import type { Pdu } from '../core/event.js';
import type { JsonObject } from '../core/json.js';
import { redactEvent } from '../core/redaction.js';
import type { RoomVersion } from '../core/room-versions.js';
import type { EventSource } from '../core/state-res/index.js';
import type { Kv, ReadTx } from '../storage/kv.js';
import type { EventRecord } from '../storage/records.js';
import { getEvents, pduOf } from '../services/event-store.js';

/**
 * The PDU to send for a stored event: its JSON without `unsigned` (our local additions such as prev_content and
 * invite_room_state are not part of the event), redacted when it was redacted.
 */
export function federationJson(record: EventRecord, version: RoomVersion): JsonObject {
  if (record.redactedBy !== undefined) return redactEvent(record.json, version);
  const { unsigned: _u, ...rest } = record.json;
  return rest;
}

/** Reads records by ID in one round trip; a Map of those found. */
export async function recordsById(tx: ReadTx, ids: Iterable<string>): Promise<Map<string, EventRecord>> {
  const list = [...new Set(ids)];
  const recs = await getEvents(tx, list);
  const out = new Map<string, EventRecord>();
  list.forEach((id, i) => {
    const r = recs[i];
    if (r) out.set(id, r);
  });
  return out;
}

/**
 * The auth chain of `ids` in `roomId` (every event reachable over `auth_events`), as records, breadth first with
 * one batched read per level. `includeStart` adds the starting events themselves.
 */
export async function authChainRecords(
  tx: ReadTx,
  roomId: string,
  ids: Iterable<string>,
  includeStart = false,
  limit = 20_000,
): Promise<Map<string, EventRecord>> {
  const out = new Map<string, EventRecord>();
  const seen = new Set<string>();
  let frontier = [...new Set(ids)];
  let first = true;
  while (frontier.length > 0 && out.size < limit) {
    const recs = await recordsById(tx, frontier);
    const next: string[] = [];
    for (const id of frontier) {
      const r = recs.get(id);
      if (!r || r.roomId !== roomId) continue;
      if (!first || includeStart) out.set(id, r);
      for (const a of authEventIds(r)) {
        if (!seen.has(a)) {
          seen.add(a);
          next.push(a);
        }
      }
    }
    first = false;
    frontier = next.filter((id) => !out.has(id));
  }
  return out;
}

function authEventIds(r: EventRecord): string[] {
  const list = r.json.auth_events;
  if (!Array.isArray(list)) return [];
  const out: string[] = [];
  for (const item of list) {
    if (typeof item === 'string') out.push(item);
    else if (Array.isArray(item) && typeof item[0] === 'string') out.push(item[0]);
  }
  return out;
}

/** Events for state resolution, read from storage (redacted events in their redacted form). */
export class StoreEventSource implements EventSource {
  /** Events not (yet) in storage that resolution may need (e.g. the event being checked). */
  readonly extra = new Map<string, Pdu>();

  constructor(
    private readonly kv: Kv,
    private readonly version: RoomVersion,
  ) {}

  async getEvent(id: string): Promise<Pdu | undefined> {
    return (await this.getEvents([id])).get(id);
  }

  async getEvents(ids: string[]): Promise<Map<string, Pdu>> {
    const out = new Map<string, Pdu>();
    const want = ids.filter((id) => {
      const e = this.extra.get(id);
      if (e) out.set(id, e);
      return !e;
    });
    if (want.length === 0) return out;
    const recs = await this.kv.read((tx) => recordsById(tx, want));
    for (const [id, r] of recs) out.set(id, pduOf(r, this.version));
    return out;
  }

  async getRejected(ids: string[]): Promise<Set<string>> {
    const recs = await this.kv.read((tx) => recordsById(tx, ids));
    const out = new Set<string>();
    for (const [id, r] of recs) if (r.rejected !== undefined) out.add(id);
    return out;
  }
}
