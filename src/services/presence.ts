/**
 * Presence: a user's online/unavailable/offline state, status message and last-active time.
 *
 * Spec: shared/matrix-spec/content/client-server-api/modules/presence.md; data/api/client-server/presence.yaml.
 *
 * presence: [userId] → PresenceRecord. A change of state or status message takes a stream position (stream entry
 * `presence`) so /sync delivers it to users sharing a room; a mere "still active" bump only refreshes `lastActiveTs`
 * (at most once a minute) without waking anyone, as the spec's `currently_active` mechanism intends.
 * Users with no record are offline. Presence is visible to the user themselves and to users who share a room with
 * them (presence.md, "Security considerations"; Synapse answers others with 403).
 *
 * Not done yet: "offline when not syncing" (Synapse's 30 s sync timeout) and bumping activity on sends; an online
 * user idle for over five minutes is reported as unavailable.
 */
import { forbidden, invalidParam, notFound } from '../api/errors.js';
import { isValidUserId } from '../core/identifiers.js';
import type { JsonObject } from '../core/json.js';
import type { ReadTx } from '../storage/kv.js';
import type { StreamEntry, UserRoomRecord } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import type { ServiceContext } from './context.js';
import { allocatePosition } from './notifier.js';

export type PresenceState = 'online' | 'unavailable' | 'offline';
export const PRESENCE_STATES: readonly PresenceState[] = ['online', 'unavailable', 'offline'];

/** presence: [userId] → PresenceRecord */
export interface PresenceRecord {
  presence: PresenceState;
  statusMsg?: string;
  lastActiveTs: number;
  /** Stream position of the last change clients were told about. */
  pos: number;
}

/** presence.md "Idle timeout": online but inactive this long reads as unavailable. */
export const IDLE_AFTER_MS = 5 * 60_000;
/** How stale `lastActiveTs` may get before a sync refreshes it; also the `currently_active` window. */
export const ACTIVE_GRANULARITY_MS = 60_000;

/** The presence content clients see (m.presence event content / GET …/status). */
export function presenceContent(rec: PresenceRecord | undefined, now: number): JsonObject {
  if (!rec) return { presence: 'offline' };
  const ago = Math.max(0, now - rec.lastActiveTs);
  const presence = rec.presence === 'online' && ago > IDLE_AFTER_MS ? 'unavailable' : rec.presence;
  const out: JsonObject = { presence, last_active_ago: ago };
  if (presence === 'online') out.currently_active = ago < ACTIVE_GRANULARITY_MS;
  if (rec.statusMsg !== undefined) out.status_msg = rec.statusMsg;
  return out;
}

/** The rooms `userId` (a local user) has joined. */
export async function joinedRoomsIn(tx: ReadTx, userId: string): Promise<string[]> {
  const rows = await tx.range<UserRoomRecord>(STORES.userRooms, { prefix: [userId] });
  return rows.filter(([, r]) => r.membership === 'join').map(([k]) => String(k[1]));
}

/**
 * Which of `candidates` share a joined room with the local user `userId` (the user themselves always does).
 * One batched lookup of room_members over the user's joined rooms × candidates.
 */
export async function sharingRoomIn(
  tx: ReadTx,
  userId: string,
  candidates: Iterable<string>,
  joinedRooms?: readonly string[],
): Promise<Set<string>> {
  const out = new Set<string>();
  const others: string[] = [];
  for (const c of new Set(candidates)) (c === userId ? out.add(c) : others.push(c));
  if (others.length === 0) return out;
  const rooms = joinedRooms ?? (await joinedRoomsIn(tx, userId));
  const keys = rooms.flatMap((r) => others.map((u) => [r, u]));
  const recs = await tx.getMany<{ membership: string }>(STORES.roomMembers, keys);
  recs.forEach((m, i) => {
    if (m?.membership === 'join') out.add(others[i % others.length]);
  });
  return out;
}

/** Local users whose presence record `PresenceService` remembers at most (then it starts over). */
const KNOWN_LIMIT = 10_000;

export class PresenceService {
  /**
   * The presence records of local users as last read or written here. Only this service writes a local user's
   * record (federation stores only remote users' presence), so an entry stays true and `syncing` — run by every
   * /sync request — needs no read transaction to decide that nothing changes.
   */
  private readonly known = new Map<string, PresenceRecord>();

  constructor(private readonly ctx: ServiceContext) {}

  private remember(userId: string, rec: PresenceRecord): void {
    if (this.known.size >= KNOWN_LIMIT && !this.known.has(userId)) this.known.clear();
    this.known.set(userId, rec);
  }

  /** PUT /presence/{userId}/status. You cannot set the presence of another user. */
  async setPresence(actor: string, userId: string, presence: PresenceState, statusMsg?: string): Promise<void> {
    if (!isValidUserId(userId)) throw invalidParam('userId', 'is not a valid user ID');
    if (actor !== userId) throw forbidden('You cannot set the presence state of another user');
    const now = this.ctx.clock.now();
    const pos = await this.ctx.kv.write(async (tx) => {
      const old = await tx.get<PresenceRecord>(STORES.presence, [userId]);
      const p = await allocatePosition(tx);
      const rec: PresenceRecord = { presence, lastActiveTs: presence === 'online' ? now : (old?.lastActiveTs ?? now), pos: p };
      // An absent status_msg clears it (as Synapse).
      if (statusMsg !== undefined) rec.statusMsg = statusMsg;
      await tx.put(STORES.presence, [userId], rec);
      await tx.put(STORES.stream, [p], { kind: 'presence', userId } satisfies StreamEntry);
      return { p, rec };
    });
    this.remember(userId, pos.rec);
    this.ctx.notifier.notify(pos.p);
  }

  /** GET /presence/{userId}/status. */
  async getPresence(observer: string, userId: string): Promise<JsonObject> {
    if (!isValidUserId(userId)) throw invalidParam('userId', 'is not a valid user ID');
    const now = this.ctx.clock.now();
    return this.ctx.kv.read(async (tx) => {
      if (userId.endsWith(':' + this.ctx.serverName) && !(await tx.get(STORES.users, [userId]))) {
        throw notFound('No such user');
      }
      const visible = await sharingRoomIn(tx, observer, [userId]);
      if (!visible.has(userId)) throw forbidden('You are not allowed to see their presence');
      return presenceContent(await tx.get<PresenceRecord>(STORES.presence, [userId]), now);
    });
  }

  /**
   * /sync's `set_presence` (sync.yaml): omitted means online; `offline` leaves presence alone; `unavailable` marks
   * the user idle. Writes only when the state changes or the activity time is stale.
   */
  async syncing(userId: string, setPresence: PresenceState): Promise<void> {
    if (setPresence === 'offline') return;
    const now = this.ctx.clock.now();
    let old = this.known.get(userId);
    if (old === undefined) {
      old = await this.ctx.kv.read((tx) => tx.get<PresenceRecord>(STORES.presence, [userId]));
      if (old !== undefined) this.remember(userId, old);
    }
    const changes = old?.presence !== setPresence;
    const stale = setPresence === 'online' && (old === undefined || now - old.lastActiveTs >= ACTIVE_GRANULARITY_MS);
    if (!changes && !stale) return;
    const written = await this.ctx.kv.write(async (tx) => {
      const cur = await tx.get<PresenceRecord>(STORES.presence, [userId]);
      const rec: PresenceRecord = {
        presence: setPresence,
        lastActiveTs: setPresence === 'online' ? now : (cur?.lastActiveTs ?? now),
        pos: cur?.pos ?? 0,
      };
      if (cur?.statusMsg !== undefined) rec.statusMsg = cur.statusMsg;
      // Clients hear about a change of state, or about an online user becoming "currently active" again.
      const announce = cur?.presence !== setPresence || (setPresence === 'online' && now - cur.lastActiveTs >= ACTIVE_GRANULARITY_MS);
      if (announce) {
        rec.pos = await allocatePosition(tx);
        await tx.put(STORES.stream, [rec.pos], { kind: 'presence', userId } satisfies StreamEntry);
      }
      await tx.put(STORES.presence, [userId], rec);
      return { pos: announce ? rec.pos : undefined, rec };
    });
    this.remember(userId, written.rec);
    if (written.pos !== undefined) this.ctx.notifier.notify(written.pos);
  }
}

/** m.presence events for `userIds` (sync.yaml `presence`); users with no record are left out. */
export async function presenceEventsIn(tx: ReadTx, userIds: readonly string[], now: number): Promise<JsonObject[]> {
  const recs = await tx.getMany<PresenceRecord>(STORES.presence, userIds.map((u) => [u]));
  const out: JsonObject[] = [];
  recs.forEach((r, i) => {
    if (r) out.push({ type: 'm.presence', sender: userIds[i], content: presenceContent(r, now) });
  });
  return out;
}
