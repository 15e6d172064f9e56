/**
 * Ephemeral room data: typing notifications, receipts and the fully-read marker.
 *
 * Spec: shared/matrix-spec/content/client-server-api/modules/typing_notifications.md, receipts.md,
 * read_markers.md; data/api/client-server/typing.yaml, receipts.yaml, read_markers.yaml.
 *
 * Every change takes a stream position in its write transaction and writes a stream entry (`typing` / `receipt` with
 * the room, `account_data` for m.fully_read), then notifies after the commit, so /sync long polls wake at once.
 * /sync reads the current typing list and the receipts changed since its token through the `…In(tx, …)` helpers,
 * inside its own read transaction.
 *
 * Typing is kept in storage (the service worker may be stopped at any time) with an expiry; a timer per typing
 * user writes the "stopped typing" change when the timeout passes, and readers ignore expired entries anyway, so a
 * restart loses nothing but that one wake-up.
 */
import { badJson, forbidden, invalidParam, notFound } from '../api/errors.js';
import type { JsonObject } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import { isValidEventId, isValidRoomId, isValidUserId } from '../core/identifiers.js';
import type { ReadTx, WriteTx } from '../storage/kv.js';
import type { EventRecord, StreamEntry, UserRoomRecord } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import type { AccountDataRecord } from './account-data.js';
import { putAccountDataInTx } from './account-data.js';
import type { ServiceContext } from './context.js';
import { allocatePosition } from './notifier.js';

/** Default and maximum typing timeout (Synapse uses the same: 30 s default, capped at 120 s). */
export const TYPING_DEFAULT_TIMEOUT_MS = 30_000;
export const TYPING_MAX_TIMEOUT_MS = 120_000;

export const RECEIPT_TYPES = ['m.read', 'm.read.private', 'm.fully_read'] as const;
export type ReceiptType = (typeof RECEIPT_TYPES)[number];

/** typing: [roomId, userId] → TypingRecord */
export interface TypingRecord {
  expiresTs: number;
  /** Stream position at which this user started typing. */
  pos: number;
}

/** receipts: [roomId, receiptType, threadId or '', userId] → ReceiptRecord */
export interface ReceiptRecord {
  eventId: string;
  ts: number;
  /** Stream position of this receipt change. */
  pos: number;
  /** Stream position of the receipted event, so receipts only move forward. */
  eventPos: number;
}

/** What a write produced: the new stream position to notify, if anything changed. */
type Changed = number | undefined;

export async function membershipIn(tx: ReadTx, userId: string, roomId: string): Promise<string | undefined> {
  return (await tx.get<UserRoomRecord>(STORES.userRooms, [userId, roomId]))?.membership;
}

/** The user IDs typing in `roomId` at `now`. */
export async function typingUsersIn(tx: ReadTx, roomId: string, now: number): Promise<string[]> {
  const rows = await tx.range<TypingRecord>(STORES.typing, { prefix: [roomId] });
  return rows.filter(([, r]) => r.expiresTs > now).map(([k]) => String(k[1]));
}

/**
 * The `m.receipt` event content for `roomId` as `forUserId` may see it: receipts changed after `sincePos` (all of
 * them when undefined); other users' private receipts are left out (receipts.md: "Servers MUST NOT send the
 * m.read.private receipt to any other user than the one which originally sent it"). Undefined when empty.
 */
export async function receiptContentIn(
  tx: ReadTx,
  roomId: string,
  forUserId: string,
  sincePos?: number,
): Promise<JsonObject | undefined> {
  const rows = await tx.range<ReceiptRecord>(STORES.receipts, { prefix: [roomId] });
  let content: JsonObject | undefined;
  for (const [key, r] of rows) {
    if (sincePos !== undefined && r.pos <= sincePos) continue;
    const type = String(key[1]);
    const threadId = String(key[2]);
    const userId = String(key[3]);
    if (type === 'm.read.private' && userId !== forUserId) continue;
    content ??= {};
    const byType = (content[r.eventId] ??= {}) as JsonObject;
    const byUser = (byType[type] ??= {}) as JsonObject;
    const entry: JsonObject = { ts: r.ts };
    if (threadId !== '') entry.thread_id = threadId;
    byUser[userId] = entry;
  }
  return content;
}

/**
 * The user's own read-up-to position in a room: the later of their unthreaded/main-timeline m.read and
 * m.read.private receipts (receipts.md, "Private read receipts"). 0 when none.
 */
export async function readUpToPosIn(tx: ReadTx, roomId: string, userId: string): Promise<number> {
  const keys = ['m.read', 'm.read.private'].flatMap((t) => [
    [roomId, t, '', userId],
    [roomId, t, 'main', userId],
  ]);
  const recs = await tx.getMany<ReceiptRecord>(STORES.receipts, keys);
  let best = 0;
  for (const r of recs) if (r && r.eventPos > best) best = r.eventPos;
  return best;
}

function relatesTo(json: JsonObject): { relType?: string; eventId?: string } {
  const content = isJsonObject(json.content) ? json.content : {};
  const rel = isJsonObject(content['m.relates_to']) ? content['m.relates_to'] : undefined;
  if (!rel) return {};
  return {
    relType: typeof rel.rel_type === 'string' ? rel.rel_type : undefined,
    eventId: typeof rel.event_id === 'string' ? rel.event_id : undefined,
  };
}

export class EphemeralService {
  private readonly ctx: ServiceContext;
  /** Pending "stopped typing" wake-ups, by `roomId NUL userId`. */
  private readonly typingTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private stopped = false;
  /** Told after a local user's typing state was set (federation sends m.typing to the room's servers). */
  readonly typingListeners: Array<(roomId: string, userId: string, typing: boolean, timeoutMs: number) => void> = [];
  /** Told after a local user's public receipt was stored (federation sends m.receipt). */
  readonly receiptListeners: Array<
    (roomId: string, userId: string, type: string, eventId: string, threadId: string | undefined, ts: number) => void
  > = [];

  constructor(ctx: ServiceContext) {
    this.ctx = ctx;
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.typingTimers.values()) clearTimeout(t);
    this.typingTimers.clear();
  }

  // ---- Typing (typing.yaml)

  /** PUT /rooms/{roomId}/typing/{userId}: only for yourself, only in rooms you have joined. */
  async setTyping(actor: string, userId: string, roomId: string, typing: boolean, timeoutMs?: number): Promise<void> {
    if (!isValidUserId(userId)) throw invalidParam('userId', 'is not a valid user ID');
    if (actor !== userId) throw forbidden('You may only set your own typing state');
    if (!isValidRoomId(roomId)) throw invalidParam('roomId', 'is not a valid room ID');
    if (timeoutMs !== undefined && timeoutMs < 0) throw invalidParam('timeout', 'must not be negative');
    const expiresInMs = Math.min(timeoutMs ?? TYPING_DEFAULT_TIMEOUT_MS, TYPING_MAX_TIMEOUT_MS);
    await this.writeTyping(roomId, userId, typing, expiresInMs, async (tx) => {
      if ((await membershipIn(tx, userId, roomId)) !== 'join') throw forbidden(`${userId} is not in room ${roomId}`);
    });
    for (const l of this.typingListeners) l(roomId, userId, typing, expiresInMs);
  }

  /**
   * Typing of a user of another server (an m.typing EDU). The caller has checked that the user is joined to the
   * room; the timeout is ours (the EDU carries none).
   */
  async setRemoteTyping(roomId: string, userId: string, typing: boolean, timeoutMs = TYPING_DEFAULT_TIMEOUT_MS): Promise<void> {
    await this.writeTyping(roomId, userId, typing, Math.min(timeoutMs, TYPING_MAX_TIMEOUT_MS));
  }

  /**
   * Records a user's typing state in one write (after `check`, inside the same transaction), takes a stream
   * position only when the list of typing users changes, and (re)arms the expiry timer.
   */
  private async writeTyping(
    roomId: string,
    userId: string,
    typing: boolean,
    expiresInMs: number,
    check?: (tx: WriteTx) => Promise<void>,
  ): Promise<void> {
    const now = this.ctx.clock.now();
    const expiresTs = now + expiresInMs;
    const pos = await this.ctx.kv.write(async (tx): Promise<Changed> => {
      if (check) await check(tx);
      const existing = await tx.get<TypingRecord>(STORES.typing, [roomId, userId]);
      const wasTyping = existing !== undefined && existing.expiresTs > now;
      if (typing) {
        // Still typing: only the expiry moves; the typing list clients see does not change.
        if (wasTyping) {
          await tx.put(STORES.typing, [roomId, userId], { expiresTs, pos: existing.pos } satisfies TypingRecord);
          return undefined;
        }
        const p = await allocatePosition(tx);
        await tx.put(STORES.typing, [roomId, userId], { expiresTs, pos: p } satisfies TypingRecord);
        await tx.put(STORES.stream, [p], { kind: 'typing', roomId } satisfies StreamEntry);
        return p;
      }
      if (!existing) return undefined;
      await tx.delete(STORES.typing, [roomId, userId]);
      if (!wasTyping) return undefined;
      const p = await allocatePosition(tx);
      await tx.put(STORES.stream, [p], { kind: 'typing', roomId } satisfies StreamEntry);
      return p;
    });
    const key = roomId + '\u0000' + userId;
    const timer = this.typingTimers.get(key);
    if (timer !== undefined) clearTimeout(timer);
    this.typingTimers.delete(key);
    if (typing && !this.stopped) this.scheduleTypingExpiry(key, roomId, userId, expiresInMs);
    if (pos !== undefined) this.ctx.notifier.notify(pos);
  }


  /**
   * A receipt of a user of another server (an m.receipt EDU), for an event in the room's timeline here; receipts
   * for events we do not have are ignored (Synapse keeps them; we have nowhere to place them in the stream).
   */
  async setRemoteReceipt(roomId: string, userId: string, type: string, eventId: string, threadId: string | undefined, ts: number): Promise<void> {
    if (type !== 'm.read') return;
    const pos = await this.ctx.kv.write(async (tx): Promise<Changed> => {
      const ev = await tx.get<EventRecord>(STORES.events, [eventId]);
      if (!ev || ev.roomId !== roomId || ev.pos === undefined || ev.rejected !== undefined) return undefined;
      return writeReceipt(tx, userId, roomId, type, threadId ?? '', eventId, ev.pos, ts);
    });
    if (pos !== undefined) this.ctx.notifier.notify(pos);
  }

  private scheduleTypingExpiry(key: string, roomId: string, userId: string, delayMs: number): void {
    const t = setTimeout(() => {
      this.typingTimers.delete(key);
      this.expireTyping(roomId, userId).catch((e) => this.ctx.logger.warn('typing expiry failed', e));
    }, delayMs + 1);
    // Never keep a Node process alive just to announce that someone stopped typing.
    (t as { unref?: () => void }).unref?.();
    this.typingTimers.set(key, t);
  }

  /** Removes an expired typing entry and tells /sync that the typing list changed. */
  private async expireTyping(roomId: string, userId: string): Promise<void> {
    if (this.stopped) return;
    const now = this.ctx.clock.now();
    const pos = await this.ctx.kv.write(async (tx): Promise<Changed> => {
      const existing = await tx.get<TypingRecord>(STORES.typing, [roomId, userId]);
      if (!existing || existing.expiresTs > now) return undefined;
      await tx.delete(STORES.typing, [roomId, userId]);
      const p = await allocatePosition(tx);
      await tx.put(STORES.stream, [p], { kind: 'typing', roomId } satisfies StreamEntry);
      return p;
    });
    if (pos !== undefined) this.ctx.notifier.notify(pos);
  }

  // ---- Receipts (receipts.yaml) and read markers (read_markers.yaml)

  /** POST /rooms/{roomId}/receipt/{receiptType}/{eventId}. */
  async postReceipt(userId: string, roomId: string, receiptType: string, eventId: string, body: JsonObject): Promise<void> {
    if (!isValidRoomId(roomId)) throw invalidParam('roomId', 'is not a valid room ID');
    if (!(RECEIPT_TYPES as readonly string[]).includes(receiptType)) {
      throw invalidParam('receiptType', `must be one of: ${RECEIPT_TYPES.join(', ')}`);
    }
    if (!isValidEventId(eventId)) throw invalidParam('eventId', 'is not a valid event ID');
    let threadId: string | undefined;
    if (body.thread_id !== undefined) {
      if (typeof body.thread_id !== 'string' || body.thread_id === '') {
        throw invalidParam('thread_id', 'must be a non-empty string');
      }
      if (receiptType === 'm.fully_read') throw invalidParam('thread_id', 'is not compatible with m.fully_read');
      if (body.thread_id !== 'main' && !isValidEventId(body.thread_id)) {
        throw invalidParam('thread_id', "must be 'main' or a thread root event ID");
      }
      threadId = body.thread_id;
    }
    await this.setMarkers(userId, roomId, [{ type: receiptType as ReceiptType, eventId, threadId }]);
  }

  /** POST /rooms/{roomId}/read_markers: the fully-read marker and/or receipts, in one transaction. */
  async setReadMarkers(userId: string, roomId: string, body: JsonObject): Promise<void> {
    if (!isValidRoomId(roomId)) throw invalidParam('roomId', 'is not a valid room ID');
    const updates: MarkerUpdate[] = [];
    for (const type of ['m.fully_read', 'm.read', 'm.read.private'] as const) {
      const v = body[type];
      if (v === undefined) continue;
      if (typeof v !== 'string') throw badJson(`'${type}' must be a string`);
      if (!isValidEventId(v)) throw invalidParam(type, 'is not a valid event ID');
      updates.push({ type, eventId: v });
    }
    await this.setMarkers(userId, roomId, updates);
  }

  private async setMarkers(userId: string, roomId: string, updates: readonly MarkerUpdate[]): Promise<void> {
    const now = this.ctx.clock.now();
    const sent: MarkerUpdate[] = [];
    const positions = await this.ctx.kv.write(async (tx) => {
      sent.length = 0;
      if ((await membershipIn(tx, userId, roomId)) !== 'join') throw forbidden(`${userId} is not in room ${roomId}`);
      const events = await tx.getMany<EventRecord>(STORES.events, updates.map((u) => [u.eventId]));
      const out: number[] = [];
      for (let i = 0; i < updates.length; i++) {
        const u = updates[i];
        const ev = events[i];
        // Only events in the room's timeline can be read up to.
        if (!ev || ev.roomId !== roomId || ev.pos === undefined || ev.rejected !== undefined) {
          throw notFound(`Event ${u.eventId} not found in room ${roomId}`);
        }
        if (u.threadId !== undefined) await checkThread(tx, u.eventId, ev, u.threadId);
        const p = u.type === 'm.fully_read'
          ? await writeFullyRead(tx, userId, roomId, u.eventId, ev.pos)
          : await writeReceipt(tx, userId, roomId, u.type, u.threadId ?? '', u.eventId, ev.pos, now);
        if (p !== undefined) out.push(p);
        if (p !== undefined && u.type === 'm.read') sent.push(u);
      }
      return out;
    });
    if (positions.length > 0) this.ctx.notifier.notify(Math.max(...positions));
    for (const u of sent) for (const l of this.receiptListeners) l(roomId, userId, u.type, u.eventId, u.threadId, now);
  }
}

interface MarkerUpdate {
  type: ReceiptType;
  eventId: string;
  threadId?: string;
}

/** Receipts move forward only: an older event than the current receipt's is accepted and ignored (as Synapse). */
async function writeReceipt(
  tx: WriteTx,
  userId: string,
  roomId: string,
  type: string,
  threadId: string,
  eventId: string,
  eventPos: number,
  now: number,
): Promise<Changed> {
  const key = [roomId, type, threadId, userId];
  const existing = await tx.get<ReceiptRecord>(STORES.receipts, key);
  if (existing && existing.eventPos >= eventPos) return undefined;
  const pos = await allocatePosition(tx);
  await tx.put(STORES.receipts, key, { eventId, ts: now, pos, eventPos } satisfies ReceiptRecord);
  await tx.put(STORES.stream, [pos], { kind: 'receipt', roomId } satisfies StreamEntry);
  return pos;
}

/** m.fully_read lives in room account data (read_markers.md), and also only moves forward. */
async function writeFullyRead(tx: WriteTx, userId: string, roomId: string, eventId: string, eventPos: number): Promise<Changed> {
  const key = [userId, roomId, 'm.fully_read'];
  const existing = await tx.get<AccountDataRecord>(STORES.accountData, key);
  const oldId = existing?.content.event_id;
  if (typeof oldId === 'string') {
    if (oldId === eventId) return undefined;
    const old = await tx.get<EventRecord>(STORES.events, [oldId]);
    if (old?.pos !== undefined && old.pos >= eventPos) return undefined;
  }
  return putAccountDataInTx(tx, userId, roomId, 'm.fully_read', { event_id: eventId });
}

/**
 * receipts.yaml 400: "The event_id is not related to the thread_id". Following relations up to 3 hops (receipts.md,
 * "Threaded read receipts"): a thread relation names the event's thread; an event with none is in the main
 * timeline. A thread root (an event that has thread replies), and events related to it by other relations, also
 * count for the root's own thread (as Synapse allows).
 */
async function checkThread(tx: ReadTx, eventId: string, ev: EventRecord, threadId: string): Promise<void> {
  const chain = [eventId];
  let thread = 'main';
  let cur: EventRecord | undefined = ev;
  for (let hop = 0; cur && hop < 3; hop++) {
    const { relType, eventId: parent } = relatesTo(cur.json);
    if (!relType || !parent) break;
    if (relType === 'm.thread') {
      thread = parent;
      break;
    }
    chain.push(parent);
    cur = await tx.get<EventRecord>(STORES.events, [parent]);
  }
  if (thread === threadId) return;
  if (threadId !== 'main' && thread === 'main' && chain.includes(threadId)) {
    // Only a real thread root: some event has a thread relation to it.
    const children = await tx.range(STORES.relations, { prefix: [threadId, 'm.thread'], limit: 1 });
    if (children.length > 0) return;
  }
  throw invalidParam('thread_id', `event ${eventId} is not related to thread ${threadId}`);
}
