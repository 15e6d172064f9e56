/**
 * Send-to-device messaging: messages queued per device until the device's /sync acknowledges them.
 *
 * Spec: shared/matrix-spec/content/client-server-api/modules/send_to_device.md; data/api/client-server/to_device.yaml.
 *
 * to_device: [userId, deviceId, pos] → ToDeviceRecord; each message takes its own stream position (stream entry
 * `to_device`), so a device's queue is in arrival order. /sync lists the queue (at most TO_DEVICE_SYNC_LIMIT);
 * "When the client calls /sync again with the next_batch token from the first response, the server should infer
 * that any send-to-device messages in that response have been delivered successfully, and delete them": the sync
 * token carries the highest position delivered (sync.ts), and the next sync deletes up to it.
 *
 * to_device_txns: [userId, deviceId, txnId] → { ts } makes PUT /sendToDevice idempotent per device and txnId.
 * Only local recipients are served; messages for remote users are dropped until federation exists.
 */
import { invalidParam } from '../api/errors.js';
import { isValidUserId } from '../core/identifiers.js';
import type { JsonObject } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type { ReadTx } from '../storage/kv.js';
import type { StreamEntry } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import type { ServiceContext } from './context.js';
import { allocatePosition } from './notifier.js';

/** send_to_device.md: "100 messages is recommended as a reasonable limit". */
export const TO_DEVICE_SYNC_LIMIT = 100;

/** to_device: [userId, deviceId, pos] → ToDeviceRecord */
export interface ToDeviceRecord {
  sender: string;
  type: string;
  content: JsonObject;
}

export interface PendingToDevice {
  events: JsonObject[];
  /** Stream position of the last message listed (undefined when none). */
  lastPos?: number;
  /** More messages wait beyond the limit. */
  more: boolean;
}

/** The device's queue after `afterPos` (exclusive), oldest first, at most `limit`. */
export async function pendingToDeviceIn(
  tx: ReadTx,
  userId: string,
  deviceId: string,
  afterPos: number,
  limit = TO_DEVICE_SYNC_LIMIT,
): Promise<PendingToDevice> {
  const rows = await tx.range<ToDeviceRecord>(STORES.toDevice, {
    gt: [userId, deviceId, afterPos],
    lt: [userId, deviceId, ''],
    limit: limit + 1,
  });
  const more = rows.length > limit;
  const take = more ? rows.slice(0, limit) : rows;
  return {
    events: take.map(([, r]) => ({ sender: r.sender, type: r.type, content: r.content })),
    lastPos: take.length > 0 ? Number(take[take.length - 1][0][2]) : undefined,
    more,
  };
}

/**
 * What /sync needs of the device's queue, usually in one read: whether messages the token acknowledges (position ≤
 * `ack`) are still stored, and the queue after `ack` (as pendingToDeviceIn). Acknowledged leftovers are at most one
 * response's worth, so one range from the start of the queue normally covers both.
 */
export async function toDeviceForSyncIn(
  tx: ReadTx,
  userId: string,
  deviceId: string,
  ack: number,
  limit = TO_DEVICE_SYNC_LIMIT,
): Promise<{ hasAcked: boolean; pending: PendingToDevice }> {
  const cap = 2 * limit + 1;
  const rows = await tx.range<ToDeviceRecord>(STORES.toDevice, { gte: [userId, deviceId, 0], lt: [userId, deviceId, ''], limit: cap });
  let firstPending = rows.findIndex(([k]) => Number(k[2]) > ack);
  if (firstPending < 0) firstPending = rows.length;
  const hasAcked = firstPending > 0;
  const after = rows.slice(firstPending);
  // The read stopped inside the acknowledged part or before `limit + 1` pending rows: read the pending part itself.
  if (rows.length === cap && after.length <= limit) return { hasAcked, pending: await pendingToDeviceIn(tx, userId, deviceId, ack, limit) };
  const more = after.length > limit;
  const take = more ? after.slice(0, limit) : after;
  return {
    hasAcked,
    pending: {
      events: take.map(([, r]) => ({ sender: r.sender, type: r.type, content: r.content })),
      lastPos: take.length > 0 ? Number(take[take.length - 1][0][2]) : undefined,
      more,
    },
  };
}

/** Whether the device has acknowledged messages (position ≤ `upToPos`) still stored. */
export async function hasAckedToDeviceIn(tx: ReadTx, userId: string, deviceId: string, upToPos: number): Promise<boolean> {
  const rows = await tx.range(STORES.toDevice, { gte: [userId, deviceId, 0], lte: [userId, deviceId, upToPos], limit: 1 });
  return rows.length > 0;
}

export class ToDeviceService {
  /**
   * Messages for users of other servers, by user (set by federation, src/federation/edus.ts). `messageId` is the
   * same for a retried request, so the receiving server can drop duplicates.
   */
  remoteSend?: (sender: string, eventType: string, messageId: string, messages: Record<string, JsonObject>) => void;

  /**
   * By "userId\0deviceId": a stream position at or below which the device has no message stored (acknowledged
   * ones deleted, or none were there). It only ever holds: new messages take positions above the current one. With
   * it, /sync can tell from its stream range alone that a device's queue is empty (sync.ts).
   */
  private readonly clearUpTo = new Map<string, number>();

  constructor(private readonly ctx: ServiceContext) {}

  /** Whether the device is known to hold no message at or below `pos`. */
  isClearUpTo(userId: string, deviceId: string, pos: number): boolean {
    return (this.clearUpTo.get(`${userId}\u0000${deviceId}`) ?? -1) >= pos;
  }

  /** Records that the device held no message at or below `pos` (as seen in a committed snapshot). */
  noteClearUpTo(userId: string, deviceId: string, pos: number): void {
    const key = `${userId}\u0000${deviceId}`;
    if ((this.clearUpTo.get(key) ?? -1) >= pos) return;
    if (this.clearUpTo.size >= 10_000) this.clearUpTo.clear();
    this.clearUpTo.set(key, pos);
  }

  /** PUT /sendToDevice/{eventType}/{txnId}. */
  async send(
    sender: string,
    senderDevice: string | undefined,
    eventType: string,
    txnId: string,
    messages: JsonObject,
  ): Promise<void> {
    // Resolve recipients before the write: validation first, then one transaction for the whole send.
    const targets: Array<{ userId: string; deviceId: string; content: JsonObject }> = [];
    const wildcard: Array<{ userId: string; content: JsonObject }> = [];
    const remote: Record<string, JsonObject> = {};
    for (const [userId, byDevice] of Object.entries(messages)) {
      if (!isValidUserId(userId)) throw invalidParam(`messages[${JSON.stringify(userId)}]`, 'is not a valid user ID');
      if (!isJsonObject(byDevice)) throw invalidParam(`messages[${JSON.stringify(userId)}]`, 'must be an object');
      if (!userId.endsWith(':' + this.ctx.serverName)) {
        if (this.remoteSend) remote[userId] = byDevice;
        else this.ctx.logger.debug('to-device message for a remote user dropped (no federation)', { userId });
        continue;
      }
      for (const [deviceId, content] of Object.entries(byDevice)) {
        if (!isJsonObject(content)) throw invalidParam(`messages[${JSON.stringify(userId)}][${JSON.stringify(deviceId)}]`, 'must be an object');
        if (deviceId === '*') wildcard.push({ userId, content });
        else targets.push({ userId, deviceId, content });
      }
    }
    const txnKey = [sender, senderDevice ?? '', txnId];
    if (Object.keys(remote).length > 0) this.remoteSend?.(sender, eventType, `${senderDevice ?? ''}/${txnId}`, remote);
    const now = this.ctx.clock.now();
    const last = await this.ctx.kv.write(async (tx) => {
      if (await tx.get(STORES.toDeviceTxns, txnKey)) return undefined;
      await tx.put(STORES.toDeviceTxns, txnKey, { ts: now });
      const deliveries = new Map<string, { userId: string; deviceId: string; content: JsonObject }>();
      for (const w of wildcard) {
        const devices = await tx.range(STORES.devices, { prefix: [w.userId] });
        for (const [k] of devices) {
          const deviceId = String(k[1]);
          deliveries.set(JSON.stringify([w.userId, deviceId]), { userId: w.userId, deviceId, content: w.content });
        }
      }
      // A named device wins over '*' for that device; unknown devices get nothing (as Synapse).
      const known = await tx.getMany(STORES.devices, targets.map((t) => [t.userId, t.deviceId]));
      targets.forEach((t, i) => {
        if (known[i] !== undefined) deliveries.set(JSON.stringify([t.userId, t.deviceId]), t);
      });
      let pos: number | undefined;
      for (const d of deliveries.values()) {
        pos = await allocatePosition(tx);
        await tx.put(STORES.toDevice, [d.userId, d.deviceId, pos], { sender, type: eventType, content: d.content } satisfies ToDeviceRecord);
        await tx.put(STORES.stream, [pos], { kind: 'to_device', userId: d.userId, deviceId: d.deviceId } satisfies StreamEntry);
      }
      return pos;
    });
    if (last !== undefined) this.ctx.notifier.notify(last);
  }

  /** Deletes the device's messages up to `upToPos`: the client has confirmed it received them. */
  async acknowledge(userId: string, deviceId: string, upToPos: number): Promise<void> {
    await this.ctx.kv.write((tx) =>
      tx.deleteRange(STORES.toDevice, { gte: [userId, deviceId, 0], lte: [userId, deviceId, upToPos] }),
    );
    this.noteClearUpTo(userId, deviceId, upToPos);
  }
}
