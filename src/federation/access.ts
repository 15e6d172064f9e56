/**
 * Which servers are in a room, and what another server may see of it.
 * Spec: shared/matrix-spec/content/server-server-api.md (a server "participating in the room" has a joined member);
 * client-server-api/modules/history_visibility.md (Synapse's filter_events_for_server where the spec is silent:
 * a server sees an event when the room is world-readable, or when it had a member joined (or invited, for
 * `invited` rooms) at the event, or for `shared` rooms when it is in the room now).
 */
import { stateKey } from '../core/event.js';
import { isJsonObject } from '../core/json.js';
import type { Kv, ReadTx } from '../storage/kv.js';
import type { EventRecord, MemberRecord } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import { loadStateGroup } from '../storage/state-groups.js';
import { domainOf } from './checks.js';
import { recordsById } from './pdus.js';

/** Servers with a joined member per room, cached; dropped whenever a member event of the room is stored. */
export class RoomServers {
  private readonly cache = new Map<string, Set<string>>();

  constructor(private readonly kv: Kv) {}

  async get(roomId: string): Promise<Set<string>> {
    const hit = this.cache.get(roomId);
    if (hit) return hit;
    const servers = await this.kv.read((tx) => joinedServersIn(tx, roomId));
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(roomId, servers);
    return servers;
  }

  invalidate(roomId: string): void {
    this.cache.delete(roomId);
  }

  /**
   * A member event was stored: a join only adds its server (no re-read: rooms with many joins stay cheap);
   * anything else may remove one, so the room is read again next time.
   */
  noteMembership(roomId: string, userId: string, membership: string | undefined): void {
    const hit = this.cache.get(roomId);
    if (hit && membership === 'join') hit.add(domainOf(userId));
    else this.cache.delete(roomId);
  }
}

export async function joinedServersIn(tx: ReadTx, roomId: string): Promise<Set<string>> {
  const rows = await tx.range<MemberRecord>(STORES.roomMembers, { prefix: [roomId] });
  const out = new Set<string>();
  for (const [key, m] of rows) if (m.membership === 'join') out.add(domainOf(String(key[1])));
  return out;
}

/** history_visibility of a stored state event's content ('shared' when absent or unknown). */
function visibilityOf(rec: EventRecord | undefined): string {
  const c = rec && isJsonObject(rec.json.content) ? rec.json.content.history_visibility : undefined;
  return c === 'world_readable' || c === 'joined' || c === 'invited' || c === 'shared' ? c : 'shared';
}

/** The room's current history visibility. */
export async function currentHistoryVisibility(tx: ReadTx, roomId: string): Promise<string> {
  const id = await tx.get<string>(STORES.currentState, [roomId, 'm.room.history_visibility', '']);
  return visibilityOf(id === undefined ? undefined : await tx.get<EventRecord>(STORES.events, [id]));
}

/** Whether `server` may ask about the room at all: it is in it now, or the room is world-readable. */
export async function serverMayReadRoom(tx: ReadTx, roomId: string, server: string, inRoom: Set<string>): Promise<boolean> {
  if (inRoom.has(server)) return true;
  return (await currentHistoryVisibility(tx, roomId)) === 'world_readable';
}

/**
 * Whether `server` may see `record` (see the module comment). Member events of the server's own users are always
 * visible to it. Rejected events are never served.
 */
export async function serverMaySeeEvent(tx: ReadTx, record: EventRecord, server: string, inRoomNow: boolean): Promise<boolean> {
  if (record.rejected !== undefined) return false;
  const json = record.json;
  if (json.type === 'm.room.member' && typeof json.state_key === 'string' && domainOf(json.state_key) === server) return true;
  if (record.outlier) return inRoomNow;
  // The state before the event: its history visibility and the server's members.
  const state = await loadStateGroup(tx, record.stateBefore);
  const hvs = [visibilityOf(await getById(tx, state.get(stateKey('m.room.history_visibility', ''))))];
  // A history_visibility event is visible when the setting before or after it allows (modules/history_visibility.md).
  if (json.type === 'm.room.history_visibility' && json.state_key === '') hvs.push(visibilityOf(record));
  if (hvs.includes('world_readable')) return true;
  if (hvs.includes('shared') && inRoomNow) return true;
  const memberIds: string[] = [];
  for (const [k, id] of state) {
    if (!k.startsWith('m.room.member\u0000')) continue;
    if (domainOf(k.slice('m.room.member\u0000'.length)) === server) memberIds.push(id);
  }
  const recs = await recordsById(tx, memberIds);
  for (const r of recs.values()) {
    const m = isJsonObject(r.json.content) ? r.json.content.membership : undefined;
    if (m === 'join' || (hvs.includes('invited') && m === 'invite')) return true;
  }
  return false;
}

async function getById(tx: ReadTx, id: string | undefined): Promise<EventRecord | undefined> {
  return id === undefined ? undefined : tx.get<EventRecord>(STORES.events, [id]);
}
