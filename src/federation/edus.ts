/**
 * EDUs, both ways: typing, receipts, presence, device-list updates and to-device messages.
 * Spec: shared/matrix-spec/content/server-server-api.md §EDUs, §"Typing Notifications", §Presence, §Receipts,
 * §"Device Management", §"Send-to-device messaging"; data/api/server-server/definitions/{event-schemas/m.typing,
 * m.receipt, m.presence, m.device_list_update, m.direct_to_device}.yaml.
 *
 * Incoming EDUs are only believed about users of the server that sent them (the authenticated origin), and
 * typing/receipts only for users joined to the room. Outgoing: typing and receipts go to the servers of the room;
 * presence and device-list changes of our users to every server sharing a room with them (read from the stream
 * after each change, so the services need no federation hooks); to-device messages to the recipients' servers.
 *
 * Device lists (§"Device Management"): each change of one of our users' devices is an m.device_list_update naming
 * the device, its current keys (or `deleted`), `stream_id` = the change's stream position and `prev_id` = the
 * user's previous one (kept in `server` ['deviceListPrev', userId]); a cross-signing key change is an
 * m.signing_key_update. Display names are not sent (federation/keys.ts: they stay on their server). Received
 * updates mark the user changed for our users' /sync and /keys/changes. We keep no copy of remote device lists —
 * /keys/query asks the user's server each time (federation/keys.ts) — so the spec's resync on an unknown `prev_id`
 * has nothing to rebuild: every update is treated like a resync (the user is marked changed and the next query is
 * fresh). The last `stream_id` seen per remote user (['remoteDeviceList', userId]) makes a redelivered update a no-op.
 */
import { isValidUserId } from '../core/identifiers.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type { MemberRecord, StreamEntry } from '../storage/records.js';
import type { WriteTx } from '../storage/kv.js';
import type { CrossSigningKeyRecord, DeviceKeysRecord } from '../services/keys.js';
import { STORES } from '../storage/schema.js';
import { allocatePosition, currentPosition, streamRange } from '../services/notifier.js';
import type { PresenceRecord } from '../services/presence.js';
import { joinedRoomsIn, presenceContent } from '../services/presence.js';
import type { ToDeviceRecord } from '../services/to-device.js';
import { domainOf } from './checks.js';
import type { FederationParts } from './parts.js';

const PRESENCE_STATES = new Set(['online', 'unavailable', 'offline']);
/** Devices a wildcard to-device message fans out to at most (a hostile sender cannot make it unbounded). */
const MAX_TO_DEVICE_MESSAGES = 1000;
/** The stream follower reads at most once per this many milliseconds (changes in between are read together). */
const FOLLOW_BATCH_MS = 25;
/** The stream entries the follower acts on. */
const FOLLOWED_KINDS = ['presence', 'device_list'] as const;

export class Edus {
  private followPos = 0;
  private following = false;
  private stopped = false;
  /** Set by a commit that may have written a followed entry; the follower reads only then. */
  private dirty = true;
  /** Wakes the idle follower. */
  private wake: (() => void) | undefined;
  private unwatch: (() => void) | undefined;
  /** Ends the batching pause when the server stops. */
  private readonly abort = new AbortController();

  constructor(private readonly p: FederationParts) {}

  private get ctx() {
    return this.p.ctx;
  }

  // ---- Outgoing

  /** Wires the services' hooks and follows the stream for presence and device-list changes. */
  async start(): Promise<void> {
    const eph = this.p.sync.ephemeral;
    eph.typingListeners.push((roomId, userId, typing, timeoutMs) => {
      void this.typingToRoom(roomId, { edu_type: 'm.typing', content: { room_id: roomId, user_id: userId, typing, timeout: timeoutMs } });
    });
    eph.receiptListeners.push((roomId, userId, type, eventId, threadId, ts) => {
      const data: JsonObject = { ts };
      if (threadId !== undefined) data.thread_id = threadId;
      void this.toRoom(roomId, { edu_type: 'm.receipt', content: { [roomId]: { [type]: { [userId]: { event_ids: [eventId], data } } } } }, true);
    });
    this.p.sync.toDevice.remoteSend = (sender, type, messageId, messages) => this.sendToDevice(sender, type, messageId, messages);
    // Watch before reading the position, so no commit falls between the two.
    this.unwatch = this.ctx.notifier.watchKinds(FOLLOWED_KINDS, () => {
      this.dirty = true;
      this.wake?.();
    });
    this.followPos = await this.ctx.kv.read((tx) => currentPosition(tx));
    this.following = true;
    void this.follow();
  }

  stop(): void {
    this.stopped = true;
    this.unwatch?.();
    this.abort.abort();
    this.wake?.();
  }

  private async toRoom(roomId: string, edu: JsonObject, keep: boolean): Promise<void> {
    const servers = await this.p.servers.get(roomId);
    this.p.sender.sendEdu(servers, edu, keep);
  }

  /**
   * Typing goes on the room's gossip topic first, as new events do (sender.ts fanOut), and by `/send` only to the
   * servers gossip did not reach: receivers take EDUs from gossip straight from their origin (service.ts
   * handleGossip). Typing is ephemeral and superseded by the next change, so a lost one costs little.
   */
  private async typingToRoom(roomId: string, edu: JsonObject): Promise<void> {
    const dests = [...(await this.p.servers.get(roomId))].filter((s) => s !== this.ctx.serverName);
    if (dests.length === 0) return;
    let reached = new Set<string>();
    const transport = this.p.transport;
    if (transport?.publishTo) {
      try {
        const message: JsonObject = { origin: this.ctx.serverName, origin_server_ts: this.ctx.clock.now(), pdus: [], edus: [edu] };
        reached = new Set(await transport.publishTo(roomId, message));
      } catch (e) {
        this.ctx.logger.debug('federation: typing gossip failed, sending to every server', e);
      }
    }
    this.p.sender.sendEdu(dests.filter((s) => !reached.has(s)), edu, false);
  }

  private sendToDevice(sender: string, type: string, messageId: string, messages: Record<string, JsonObject>): void {
    const byServer = new Map<string, JsonObject>();
    for (const [userId, devices] of Object.entries(messages)) {
      const server = domainOf(userId);
      const m = byServer.get(server) ?? {};
      m[userId] = devices;
      byServer.set(server, m);
    }
    for (const [server, subset] of byServer) {
      this.p.sender.sendEdu([server], { edu_type: 'm.direct_to_device', content: { sender, type, message_id: messageId, messages: subset } }, true);
    }
  }

  /**
   * Reads the stream after each commit that may hold a presence or device-list entry (Notifier.watchKinds: the
   * commits of events say they hold none, so a busy room costs nothing here) and sends EDUs for our users. Idle
   * (no timer, no read) until such a commit.
   */
  private async follow(): Promise<void> {
    while (!this.stopped && this.following) {
      if (!this.dirty) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      this.dirty = false;
      const lastRead = performance.now();
      try {
        const { rows, pos } = await this.ctx.kv.read(async (tx) => {
          const pos = await currentPosition(tx);
          const rows = pos > this.followPos ? await streamRange(tx, this.followPos, pos) : [];
          return { rows, pos };
        });
        this.followPos = Math.max(this.followPos, pos);
        for (const [key, e] of rows) {
          if (e.kind === 'presence' && domainOf(e.userId) === this.ctx.serverName) await this.announcePresence(e.userId);
          // In stream order, one at a time: each update's prev_id is the one before it.
          if (e.kind === 'device_list' && domainOf(e.userId) === this.ctx.serverName) await this.announceDevices(e, key[0] as number);
        }
      } catch (e) {
        this.ctx.logger.warn('federation: following the stream failed', e);
      }
      // The commits of a busy moment (many presence updates) are gathered and read with one snapshot per
      // FOLLOW_BATCH_MS rather than one each (presence and device-list EDUs are not that urgent).
      const wait = lastRead + FOLLOW_BATCH_MS - performance.now();
      if (this.dirty && wait > 0 && !this.stopped) await this.pause(wait);
    }
  }

  /** Resolves after `ms`, or at once when the server stops. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const signal = this.abort.signal;
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** Every other server sharing a room with one of the `rooms`. */
  private async serversOf(rooms: readonly string[]): Promise<Set<string>> {
    const dests = new Set<string>();
    for (const roomId of rooms) for (const s of await this.p.servers.get(roomId)) dests.add(s);
    dests.delete(this.ctx.serverName);
    return dests;
  }

  private async announcePresence(userId: string): Promise<void> {
    const { rooms, presence } = await this.ctx.kv.read(async (tx) => ({
      rooms: await joinedRoomsIn(tx, userId),
      presence: await tx.get<PresenceRecord>(STORES.presence, [userId]),
    }));
    const dests = await this.serversOf(rooms);
    if (dests.size === 0) return;
    const c = presenceContent(presence, this.ctx.clock.now());
    const push: JsonObject = { user_id: userId, presence: c.presence ?? 'offline', last_active_ago: c.last_active_ago ?? 0 };
    if (c.currently_active !== undefined) push.currently_active = c.currently_active;
    if (c.status_msg !== undefined) push.status_msg = c.status_msg;
    this.p.sender.sendEdu(dests, { edu_type: 'm.presence', content: { push: [push] } }, false);
  }

  /**
   * The EDU for one device-list stream entry of a local user (at stream position `pos`): the device's current keys,
   * or `deleted`; the user's cross-signing keys when no device is named. The prev_id chain advances even when no
   * server shares a room yet (one that joins later then sees a prev_id it does not know, and resyncs, as the spec
   * wants).
   */
  private async announceDevices(e: Extract<StreamEntry, { kind: 'device_list' }>, pos: number): Promise<void> {
    const { userId, deviceId } = e;
    const { rooms, edu } = await this.ctx.kv.write(async (tx) => ({
      rooms: await joinedRoomsIn(tx, userId),
      edu: deviceId === undefined ? await signingKeyUpdate(tx, userId) : await deviceListUpdate(tx, userId, deviceId, e.deleted === true, pos),
    }));
    if (!edu) return;
    const dests = await this.serversOf(rooms);
    if (dests.size > 0) this.p.sender.sendEdu(dests, edu, true);
  }

  // ---- Incoming

  /** The EDUs of a transaction from `origin`; bad ones are skipped (a transaction is never refused for them). */
  async receive(origin: string, edus: readonly JsonValue[]): Promise<void> {
    for (const edu of edus) {
      if (!isJsonObject(edu) || typeof edu.edu_type !== 'string' || !isJsonObject(edu.content)) continue;
      try {
        switch (edu.edu_type) {
          case 'm.typing':
            await this.typing(origin, edu.content);
            break;
          case 'm.receipt':
            await this.receipts(origin, edu.content);
            break;
          case 'm.presence':
            await this.presence(origin, edu.content);
            break;
          case 'm.direct_to_device':
            await this.toDevice(origin, edu.content);
            break;
          case 'm.device_list_update':
            await this.deviceList(origin, edu.content);
            break;
          case 'm.signing_key_update':
            await this.deviceList(origin, edu.content, true);
            break;
          default:
            break;
        }
      } catch (e) {
        this.ctx.logger.debug('federation: EDU not applied', { origin, type: edu.edu_type, error: e });
      }
    }
  }

  private fromOrigin(origin: string, userId: JsonValue | undefined): userId is string {
    return typeof userId === 'string' && isValidUserId(userId) && domainOf(userId) === origin;
  }

  private async joined(roomId: string, userId: string): Promise<boolean> {
    const m = await this.ctx.kv.read((tx) => tx.get<MemberRecord>(STORES.roomMembers, [roomId, userId]));
    return m?.membership === 'join';
  }

  private async typing(origin: string, c: JsonObject): Promise<void> {
    const { room_id: roomId, user_id: userId, typing } = c;
    if (typeof roomId !== 'string' || typeof typing !== 'boolean' || !this.fromOrigin(origin, userId)) return;
    if (!(await this.joined(roomId, userId))) return;
    const timeout = typeof c.timeout === 'number' && c.timeout > 0 ? c.timeout : undefined;
    await this.p.sync.ephemeral.setRemoteTyping(roomId, userId, typing, timeout);
  }

  private async receipts(origin: string, c: JsonObject): Promise<void> {
    for (const [roomId, byType] of Object.entries(c)) {
      if (!isJsonObject(byType)) continue;
      const read = byType['m.read'];
      if (!isJsonObject(read)) continue;
      for (const [userId, r] of Object.entries(read)) {
        if (!isJsonObject(r) || !this.fromOrigin(origin, userId) || !(await this.joined(roomId, userId))) continue;
        const ids = Array.isArray(r.event_ids) ? r.event_ids.filter((x): x is string => typeof x === 'string') : [];
        const data = isJsonObject(r.data) ? r.data : {};
        const ts = typeof data.ts === 'number' ? data.ts : this.ctx.clock.now();
        const thread = typeof data.thread_id === 'string' ? data.thread_id : undefined;
        for (const eventId of ids.slice(0, 10)) await this.p.sync.ephemeral.setRemoteReceipt(roomId, userId, 'm.read', eventId, thread, ts);
      }
    }
  }

  private async presence(origin: string, c: JsonObject): Promise<void> {
    const push = Array.isArray(c.push) ? c.push : [];
    const now = this.ctx.clock.now();
    for (const item of push.slice(0, 100)) {
      if (!isJsonObject(item) || !this.fromOrigin(origin, item.user_id)) continue;
      const state = item.presence;
      if (typeof state !== 'string' || !PRESENCE_STATES.has(state)) continue;
      const userId = item.user_id as string;
      const ago = typeof item.last_active_ago === 'number' && item.last_active_ago >= 0 ? item.last_active_ago : 0;
      const pos = await this.ctx.kv.write(async (tx) => {
        const p = await allocatePosition(tx);
        const rec: PresenceRecord = { presence: state as PresenceRecord['presence'], lastActiveTs: now - ago, pos: p };
        if (typeof item.status_msg === 'string') rec.statusMsg = item.status_msg;
        await tx.put(STORES.presence, [userId], rec);
        await tx.put(STORES.stream, [p], { kind: 'presence', userId } satisfies StreamEntry);
        return p;
      });
      this.ctx.notifier.notify(pos);
    }
  }

  /** m.device_list_update (and m.signing_key_update, which has no device): our users learn `userId` changed. */
  private async deviceList(origin: string, c: JsonObject, signingKeys = false): Promise<void> {
    if (!this.fromOrigin(origin, c.user_id)) return;
    const userId = c.user_id as string;
    let entry: StreamEntry = { kind: 'device_list', userId };
    let streamId: number | undefined;
    if (!signingKeys) {
      if (typeof c.device_id !== 'string' || c.device_id === '' || !Number.isSafeInteger(c.stream_id)) return;
      streamId = c.stream_id as number;
      entry = { kind: 'device_list', userId, deviceId: c.device_id, ...(c.deleted === true ? { deleted: true } : {}) };
    }
    const pos = await this.ctx.kv.write(async (tx) => {
      if (streamId !== undefined) {
        const seenKey = ['remoteDeviceList', userId];
        // The same update again (a retried transaction): nothing new to tell our users.
        if ((await tx.get<number>(STORES.server, seenKey)) === streamId) return undefined;
        await tx.put(STORES.server, seenKey, streamId);
      }
      const p = await allocatePosition(tx);
      await tx.put(STORES.stream, [p], entry);
      return p;
    });
    if (pos !== undefined) this.ctx.notifier.notify(pos);
  }

  private async toDevice(origin: string, c: JsonObject): Promise<void> {
    const { sender, type, message_id: messageId, messages } = c;
    if (!this.fromOrigin(origin, sender) || typeof type !== 'string' || typeof messageId !== 'string' || !isJsonObject(messages)) return;
    const last = await this.ctx.kv.write(async (tx) => {
      // The same message_id again is a retry: deliver once.
      const txnKey = [sender, '', `federation/${messageId}`];
      if (await tx.get(STORES.toDeviceTxns, txnKey)) return undefined;
      await tx.put(STORES.toDeviceTxns, txnKey, { ts: this.ctx.clock.now() });
      let pos: number | undefined;
      let count = 0;
      for (const [userId, byDevice] of Object.entries(messages)) {
        if (domainOf(userId) !== this.ctx.serverName || !isJsonObject(byDevice)) continue;
        for (const [deviceId, content] of Object.entries(byDevice)) {
          if (!isJsonObject(content)) continue;
          const devices =
            deviceId === '*'
              ? (await tx.range(STORES.devices, { prefix: [userId] })).map(([k]) => String(k[1]))
              : (await tx.get(STORES.devices, [userId, deviceId])) !== undefined
                ? [deviceId]
                : [];
          for (const d of devices) {
            if (++count > MAX_TO_DEVICE_MESSAGES) break;
            pos = await allocatePosition(tx);
            await tx.put(STORES.toDevice, [userId, d, pos], { sender, type, content } satisfies ToDeviceRecord);
            await tx.put(STORES.stream, [pos], { kind: 'to_device', userId, deviceId: d } satisfies StreamEntry);
          }
        }
      }
      return pos;
    });
    if (last !== undefined) this.ctx.notifier.notify(last, ['to_device']);
  }
}

/** The identity keys as other servers see them: without the owner-only `unsigned` part. */
function publicKeys(json: JsonObject): JsonObject {
  const { unsigned: _u, ...rest } = json;
  return rest;
}

/**
 * The m.device_list_update for device `deviceId` of local user `userId` changed at stream position `pos`, and the
 * user's prev_id chain moved on to it (in the caller's write transaction). A device gone since is sent as deleted.
 * Spec: data/api/server-server/definitions/event-schemas/m.device_list_update.yaml.
 */
async function deviceListUpdate(tx: WriteTx, userId: string, deviceId: string, deleted: boolean, pos: number): Promise<JsonObject> {
  const prevKey = ['deviceListPrev', userId];
  const prev = await tx.get<number>(STORES.server, prevKey);
  await tx.put(STORES.server, prevKey, pos);
  const gone = deleted || (await tx.get(STORES.devices, [userId, deviceId])) === undefined;
  const keys = gone ? undefined : await tx.get<DeviceKeysRecord>(STORES.e2eDeviceKeys, [userId, deviceId]);
  const content: JsonObject = { user_id: userId, device_id: deviceId, stream_id: pos, prev_id: prev !== undefined ? [prev] : [] };
  if (gone) content.deleted = true;
  if (keys) content.keys = publicKeys(keys.json);
  return { edu_type: 'm.device_list_update', content };
}

/**
 * The m.signing_key_update of local user `userId`: their public cross-signing keys (the user-signing key is private
 * to them). Spec: data/api/server-server/definitions/event-schemas/m.signing_key_update.yaml.
 */
async function signingKeyUpdate(tx: WriteTx, userId: string): Promise<JsonObject | undefined> {
  const [master, selfSigning] = await tx.getMany<CrossSigningKeyRecord>(STORES.e2eCrossSigningKeys, [
    [userId, 'master'],
    [userId, 'self_signing'],
  ]);
  if (!master && !selfSigning) return undefined;
  const content: JsonObject = { user_id: userId };
  if (master) content.master_key = master.json;
  if (selfSigning) content.self_signing_key = selfSigning.json;
  return { edu_type: 'm.signing_key_update', content };
}
