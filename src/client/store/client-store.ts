/**
 * The client's state: every room the user is in or invited to, global account data and the sync status, kept
 * up to date by the sync loop and by the user's own actions (sent with local echo). Views subscribe and read
 * `snapshot`, which is replaced (never mutated) on every change.
 * https://spec.matrix.org/v1.19/client-server-api/#syncing
 * https://spec.matrix.org/v1.19/client-server-api/#transaction-identifiers
 */
import type { MatrixApi } from '../api/client.js';
import { MatrixApiError } from '../api/http.js';
import { SyncLoop } from '../api/sync-loop.js';
import type { SyncStatus } from '../api/sync-loop.js';
import type { JsonObject, SyncResponse } from '../api/types.js';
import { randomString } from '../lib/account.js';
import {
  addPending,
  applyInvitedRoom,
  applyJoinedRoom,
  prependHistory,
  removePending,
  updatePending,
} from './room-state.js';
import type { RoomState } from './room-state.js';
import { inviter, isDirect } from './room-summary.js';

export interface StoreSnapshot {
  readonly rooms: ReadonlyMap<string, RoomState>;
  readonly accountData: ReadonlyMap<string, JsonObject>;
  readonly syncStatus: SyncStatus;
  readonly syncError?: string;
  readonly initialSyncDone: boolean;
  /** Rooms with a /messages request in flight. */
  readonly paginating: ReadonlySet<string>;
}

export interface ClientStoreInit {
  api: MatrixApi;
  userId: string;
  deviceId: string;
  now?: () => number;
  syncTimeoutMs?: number;
  onLoggedOut?: () => void;
}

/** Sync filter: a longer first page than the default so a room opens with a screenful of history. */
export const SYNC_FILTER = JSON.stringify({ room: { timeline: { limit: 40 } } });
const PAGE_SIZE = 40;

export class ClientStore {
  readonly api: MatrixApi;
  readonly userId: string;
  readonly deviceId: string;
  snapshot: StoreSnapshot = {
    rooms: new Map(),
    accountData: new Map(),
    syncStatus: 'connecting',
    initialSyncDone: false,
    paginating: new Set(),
  };
  private readonly listeners = new Set<() => void>();
  private readonly loop: SyncLoop;
  private readonly now: () => number;
  private txnCounter = 0;
  /** Last receipt this client sent per room, so a re-render does not send it twice. */
  private readonly sentReceipts = new Map<string, string>();
  private readonly roomWaiters = new Map<string, (() => void)[]>();

  constructor(init: ClientStoreInit) {
    this.api = init.api;
    this.userId = init.userId;
    this.deviceId = init.deviceId;
    this.now = init.now ?? Date.now;
    this.loop = new SyncLoop(this.api, {
      filter: SYNC_FILTER,
      timeoutMs: init.syncTimeoutMs,
      onResponse: (res) => this.applySync(res),
      onStatus: (syncStatus, syncError) => this.set({ syncStatus, syncError }),
      onLoggedOut: () => init.onLoggedOut?.(),
    });
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** Retry now instead of waiting for the backoff (the browser came back online, the tab became visible). */
  reconnect(): void {
    this.loop.poke();
  }

  room(roomId: string): RoomState | undefined {
    return this.snapshot.rooms.get(roomId);
  }

  private set(patch: Partial<StoreSnapshot>): void {
    this.snapshot = { ...this.snapshot, ...patch };
    for (const fn of this.listeners) fn();
  }

  private setRoom(room: RoomState): void {
    const rooms = new Map(this.snapshot.rooms);
    rooms.set(room.roomId, room);
    this.set({ rooms });
  }

  private updateRoom(roomId: string, f: (r: RoomState) => RoomState): void {
    const r = this.room(roomId);
    if (r) {
      const next = f(r);
      if (next !== r) this.setRoom(next);
    }
  }

  /** Folds one /sync response in (public so tests can feed responses directly). */
  applySync(res: SyncResponse): void {
    const rooms = new Map(this.snapshot.rooms);
    let accountData = this.snapshot.accountData;
    for (const [roomId, r] of Object.entries(res.rooms?.join ?? {})) rooms.set(roomId, applyJoinedRoom(rooms.get(roomId), roomId, r));
    for (const [roomId, r] of Object.entries(res.rooms?.invite ?? {})) rooms.set(roomId, applyInvitedRoom(roomId, r));
    for (const roomId of Object.keys(res.rooms?.leave ?? {})) rooms.delete(roomId);
    const ad = res.account_data?.events ?? [];
    if (ad.length > 0) {
      const m = new Map(accountData);
      for (const e of ad) m.set(e.type, e.content);
      accountData = m;
    }
    this.set({ rooms, accountData, initialSyncDone: true });
    for (const roomId of rooms.keys()) {
      const w = this.roomWaiters.get(roomId);
      if (w) {
        this.roomWaiters.delete(roomId);
        w.forEach((f) => f());
      }
    }
  }

  /** Resolves once sync has delivered the room (after create/join), or after `timeoutMs`. */
  waitForRoom(roomId: string, timeoutMs = 10_000): Promise<boolean> {
    if (this.room(roomId)?.membership === 'join') return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      const list = this.roomWaiters.get(roomId) ?? [];
      list.push(() => (clearTimeout(t), resolve(true)));
      this.roomWaiters.set(roomId, list);
    });
  }

  newTxnId(): string {
    return `h${this.now().toString(36)}.${++this.txnCounter}.${randomString(6)}`;
  }

  /** Sends a text message with a local echo that sync's copy replaces (matched by transaction ID). */
  sendText(roomId: string, body: string): Promise<void> {
    const content: JsonObject = { msgtype: 'm.text', body };
    const txnId = this.newTxnId();
    this.updateRoom(roomId, (r) => addPending(r, { txnId, type: 'm.room.message', content, ts: this.now(), status: 'sending' }));
    return this.transmit(roomId, txnId);
  }

  /** Sends a failed echo again with the same transaction ID, so the server never stores it twice. */
  retry(roomId: string, txnId: string): Promise<void> {
    this.updateRoom(roomId, (r) => updatePending(r, txnId, { status: 'sending', error: undefined }));
    return this.transmit(roomId, txnId);
  }

  discard(roomId: string, txnId: string): void {
    this.updateRoom(roomId, (r) => removePending(r, txnId));
  }

  private async transmit(roomId: string, txnId: string): Promise<void> {
    const p = this.room(roomId)?.pending.find((x) => x.txnId === txnId);
    if (!p) return;
    try {
      const { event_id } = await this.api.send(roomId, p.type, txnId, p.content);
      this.updateRoom(roomId, (r) => updatePending(r, txnId, { status: 'sent', eventId: event_id }));
    } catch (e) {
      this.updateRoom(roomId, (r) => updatePending(r, txnId, { status: 'failed', error: errorText(e) }));
    }
  }

  /** Replaces the text of one of my messages (m.replace); the timeline shows it as edited when sync returns it. */
  async edit(roomId: string, eventId: string, body: string): Promise<void> {
    const newContent: JsonObject = { msgtype: 'm.text', body };
    await this.api.send(roomId, 'm.room.message', this.newTxnId(), {
      msgtype: 'm.text',
      body: `* ${body}`,
      'm.new_content': newContent,
      'm.relates_to': { rel_type: 'm.replace', event_id: eventId },
    });
  }

  async redact(roomId: string, eventId: string): Promise<void> {
    await this.api.redact(roomId, eventId, this.newTxnId());
  }

  /** Loads the previous page of the room's history, if any and not already loading. */
  async paginate(roomId: string): Promise<void> {
    const room = this.room(roomId);
    if (!room || room.membership !== 'join' || room.prevBatch === null || this.snapshot.paginating.has(roomId)) return;
    const from = room.prevBatch;
    this.set({ paginating: new Set([...this.snapshot.paginating, roomId]) });
    try {
      const res = await this.api.messages(roomId, from, PAGE_SIZE);
      // A limited sync may have replaced the timeline meanwhile; this page would not join up with it.
      this.updateRoom(roomId, (r) => (r.prevBatch === from ? prependHistory(r, res) : r));
    } finally {
      const paginating = new Set(this.snapshot.paginating);
      paginating.delete(roomId);
      this.set({ paginating });
    }
  }

  /** Marks the room read up to its newest event from someone else (m.read receipt). */
  markRead(roomId: string): void {
    const room = this.room(roomId);
    if (!room || room.membership !== 'join') return;
    const last = room.timeline[room.timeline.length - 1];
    if (!last || last.sender === this.userId) return;
    if (this.sentReceipts.get(roomId) === last.event_id || room.receipts.get(this.userId)?.eventId === last.event_id) return;
    this.sentReceipts.set(roomId, last.event_id);
    this.api.sendReceipt(roomId, last.event_id).catch(() => this.sentReceipts.delete(roomId));
  }

  setTyping(roomId: string, typing: boolean): void {
    this.api.setTyping(roomId, this.userId, typing).catch(() => undefined);
  }

  async createRoom(opts: { name: string; topic: string; isPublic: boolean }): Promise<string> {
    const { room_id } = await this.api.createRoom({
      name: opts.name || undefined,
      topic: opts.topic || undefined,
      preset: opts.isPublic ? 'public_chat' : 'private_chat',
      visibility: opts.isPublic ? 'public' : 'private',
    });
    return room_id;
  }

  mDirect(): Record<string, string[]> {
    const c = this.snapshot.accountData.get('m.direct') ?? {};
    const out: Record<string, string[]> = {};
    for (const [u, ids] of Object.entries(c)) if (Array.isArray(ids)) out[u] = ids.filter((x): x is string => typeof x === 'string');
    return out;
  }

  /** Opens the existing direct chat with the user, or creates one (is_direct invite + m.direct account data). */
  async startDirectChat(userId: string): Promise<string> {
    const existing = (this.mDirect()[userId] ?? []).find((id) => this.room(id)?.membership === 'join');
    if (existing) return existing;
    const { room_id } = await this.api.createRoom({ preset: 'trusted_private_chat', is_direct: true, invite: [userId] });
    await this.addDirect(userId, room_id);
    return room_id;
  }

  private async addDirect(userId: string, roomId: string): Promise<void> {
    const direct = this.mDirect();
    direct[userId] = [...(direct[userId] ?? []).filter((id) => id !== roomId), roomId];
    const content = direct as unknown as JsonObject;
    await this.api.setAccountData(this.userId, 'm.direct', content);
    const accountData = new Map(this.snapshot.accountData);
    accountData.set('m.direct', content);
    this.set({ accountData });
  }

  async join(roomIdOrAlias: string): Promise<string> {
    const { room_id } = await this.api.join(roomIdOrAlias);
    return room_id;
  }

  async acceptInvite(roomId: string): Promise<void> {
    const room = this.room(roomId);
    const direct = room ? isDirect(room, this.userId, {}) : false;
    const from = room ? inviter(room, this.userId) : undefined;
    await this.api.join(roomId);
    if (direct && from) await this.addDirect(from, roomId).catch(() => undefined);
  }

  /** Declining an invite and leaving a room are the same call; the room goes from the list at once. */
  async leave(roomId: string): Promise<void> {
    await this.api.leave(roomId);
    const rooms = new Map(this.snapshot.rooms);
    rooms.delete(roomId);
    this.set({ rooms });
  }
}

export function errorText(e: unknown): string {
  if (e instanceof MatrixApiError) {
    switch (e.errcode) {
      case 'M_FORBIDDEN':
        return `Not allowed: ${e.message}`;
      case 'M_NOT_FOUND':
        return 'Not found';
      case 'M_LIMIT_EXCEEDED':
        return 'Too many requests, try again in a moment';
      case 'M_RESOURCE_LIMIT_EXCEEDED':
        return 'Storage is full';
      default:
        return e.message;
    }
  }
  if (e instanceof Error && e.name === 'NetworkError') return 'The homeserver cannot be reached';
  return e instanceof Error ? e.message : String(e);
}
