/**
 * One room as the client knows it, and the pure functions that fold /sync and /messages into it. Every change
 * returns a new object, so views can compare by identity.
 * https://spec.matrix.org/v1.19/client-server-api/#syncing
 * https://spec.matrix.org/v1.19/client-server-api/#local-echo (transaction IDs)
 */
import type { BasicEvent, ClientEvent, InvitedRoomSync, JoinedRoomSync, JsonObject, MessagesResponse, StrippedEvent } from '../api/types.js';

export type EchoStatus = 'sending' | 'sent' | 'failed';

/** A message this client sent that the server has not yet returned in /sync. */
export interface PendingEcho {
  readonly txnId: string;
  readonly type: string;
  readonly content: JsonObject;
  readonly ts: number;
  readonly status: EchoStatus;
  readonly eventId?: string;
  readonly error?: string;
}

export interface Receipt {
  readonly eventId: string;
  readonly ts: number;
}

export interface RoomState {
  readonly roomId: string;
  readonly membership: 'join' | 'invite';
  /** Current state, keyed by stateKeyOf(type, state_key). */
  readonly state: ReadonlyMap<string, ClientEvent>;
  /** Loaded timeline, oldest first, no duplicates. */
  readonly timeline: readonly ClientEvent[];
  /** Token to page further back; null once the start of the room was reached. */
  readonly prevBatch: string | null;
  readonly pending: readonly PendingEcho[];
  readonly notificationCount: number;
  readonly highlightCount: number;
  readonly typing: readonly string[];
  /** Latest m.read receipt per user. */
  readonly receipts: ReadonlyMap<string, Receipt>;
  readonly inviteState: readonly StrippedEvent[];
  readonly heroes: readonly string[];
}

export function stateKeyOf(type: string, stateKey: string): string {
  return `${type}\u0000${stateKey}`;
}

export function emptyRoom(roomId: string, membership: RoomState['membership']): RoomState {
  return {
    roomId,
    membership,
    state: new Map(),
    timeline: [],
    prevBatch: null,
    pending: [],
    notificationCount: 0,
    highlightCount: 0,
    typing: [],
    receipts: new Map(),
    inviteState: [],
    heroes: [],
  };
}

export function getState(room: RoomState, type: string, stateKey = ''): ClientEvent | undefined {
  return room.state.get(stateKeyOf(type, stateKey));
}

function withState(state: ReadonlyMap<string, ClientEvent>, events: readonly ClientEvent[]): ReadonlyMap<string, ClientEvent> {
  let out: Map<string, ClientEvent> | undefined;
  for (const e of events) {
    if (e.state_key === undefined) continue;
    out ??= new Map(state);
    out.set(stateKeyOf(e.type, e.state_key), e);
  }
  return out ?? state;
}

/** Folds one room of a /sync response's `rooms.join` into what we had (undefined: first time we see it). */
export function applyJoinedRoom(prev: RoomState | undefined, roomId: string, sync: JoinedRoomSync): RoomState {
  let room: RoomState = prev && prev.membership === 'join' ? prev : emptyRoom(roomId, 'join');
  const fresh = room !== prev;
  const stateEvents = sync.state?.events ?? [];
  const tl = sync.timeline;
  const incoming = tl?.events ?? [];
  let state = withState(room.state, stateEvents);
  state = withState(state, incoming);

  let timeline = room.timeline;
  let prevBatch = room.prevBatch;
  let pending = room.pending;
  if (fresh || tl?.limited) {
    // A gap (or a first sight): what we had no longer joins up with the new events, so start again from them.
    timeline = dedupe(incoming);
    prevBatch = tl?.prev_batch ?? null;
  } else if (incoming.length > 0) {
    const seen = new Set(timeline.map((e) => e.event_id));
    const added = incoming.filter((e) => !seen.has(e.event_id));
    if (added.length > 0) timeline = [...timeline, ...dedupe(added)];
  }
  if (incoming.some((e) => e.type === 'm.room.redaction')) timeline = applyRedactions(timeline, incoming);
  if (pending.length > 0 && incoming.length > 0) {
    const txns = new Set<string>();
    const ids = new Set<string>();
    for (const e of incoming) {
      ids.add(e.event_id);
      const t = e.unsigned?.transaction_id;
      if (typeof t === 'string') txns.add(t);
    }
    const left = pending.filter((p) => !txns.has(p.txnId) && !(p.eventId && ids.has(p.eventId)));
    if (left.length !== pending.length) pending = left;
  }

  let typing = room.typing;
  let receipts = room.receipts;
  for (const e of sync.ephemeral?.events ?? []) {
    if (e.type === 'm.typing') typing = stringList(e.content.user_ids);
    else if (e.type === 'm.receipt') receipts = applyReceipts(receipts, e);
  }
  const un = sync.unread_notifications;
  const heroes = sync.summary?.['m.heroes'] ?? room.heroes;
  room = {
    ...room,
    state,
    timeline,
    prevBatch,
    pending,
    typing,
    receipts,
    heroes,
    notificationCount: un?.notification_count ?? room.notificationCount,
    highlightCount: un?.highlight_count ?? room.highlightCount,
    inviteState: [],
  };
  return room;
}

export function applyInvitedRoom(roomId: string, sync: InvitedRoomSync): RoomState {
  return { ...emptyRoom(roomId, 'invite'), inviteState: sync.invite_state?.events ?? [] };
}

/** Adds a page of older events from /messages (dir=b: newest first) in front of the timeline. */
export function prependHistory(room: RoomState, res: MessagesResponse): RoomState {
  const seen = new Set(room.timeline.map((e) => e.event_id));
  const older = res.chunk.filter((e) => !seen.has(e.event_id)).reverse();
  const prevBatch = res.chunk.length === 0 || !res.end ? null : res.end;
  return { ...room, timeline: older.length ? [...dedupe(older), ...room.timeline] : room.timeline, prevBatch };
}

export function addPending(room: RoomState, echo: PendingEcho): RoomState {
  return { ...room, pending: [...room.pending, echo] };
}

export function updatePending(room: RoomState, txnId: string, patch: Partial<PendingEcho>): RoomState {
  if (!room.pending.some((p) => p.txnId === txnId)) return room;
  // The server's copy may already be in the timeline (sync won the race): then the echo is done.
  if (patch.eventId && room.timeline.some((e) => e.event_id === patch.eventId)) return removePending(room, txnId);
  return { ...room, pending: room.pending.map((p) => (p.txnId === txnId ? { ...p, ...patch } : p)) };
}

export function removePending(room: RoomState, txnId: string): RoomState {
  return { ...room, pending: room.pending.filter((p) => p.txnId !== txnId) };
}

function applyReceipts(receipts: ReadonlyMap<string, Receipt>, ev: BasicEvent): ReadonlyMap<string, Receipt> {
  let out: Map<string, Receipt> | undefined;
  for (const [eventId, byType] of Object.entries(ev.content)) {
    const read = byType && typeof byType === 'object' && !Array.isArray(byType) ? byType['m.read'] : undefined;
    if (!read || typeof read !== 'object' || Array.isArray(read)) continue;
    for (const [userId, info] of Object.entries(read)) {
      const o = info && typeof info === 'object' && !Array.isArray(info) ? info : {};
      // Threaded receipts do not move the user's place in the main timeline.
      if (typeof o.thread_id === 'string' && o.thread_id !== 'main') continue;
      out ??= new Map(receipts);
      out.set(userId, { eventId, ts: typeof o.ts === 'number' ? o.ts : 0 });
    }
  }
  return out ?? receipts;
}

/**
 * A redaction that arrives after its target empties the target's content, as the server's copy now is, so every
 * view (timeline, room list preview) sees the message as deleted. State events keep theirs: their redacted form
 * keeps some keys, and the timeline does not show their content anyway.
 */
function applyRedactions(timeline: readonly ClientEvent[], incoming: readonly ClientEvent[]): readonly ClientEvent[] {
  const by = new Map<string, ClientEvent>();
  for (const e of incoming) {
    if (e.type !== 'm.room.redaction') continue;
    const target = e.redacts ?? e.content.redacts; // room v11+ moved `redacts` into content
    if (typeof target === 'string') by.set(target, e);
  }
  let changed = false;
  const out = timeline.map((e) => {
    const r = by.get(e.event_id);
    if (!r || e.state_key !== undefined || e.unsigned?.redacted_because) return e;
    changed = true;
    return { ...e, content: {}, unsigned: { ...e.unsigned, redacted_because: r } };
  });
  return changed ? out : timeline;
}

function dedupe(events: readonly ClientEvent[]): ClientEvent[] {
  const seen = new Set<string>();
  return events.filter((e) => (seen.has(e.event_id) ? false : (seen.add(e.event_id), true)));
}

function stringList(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}
