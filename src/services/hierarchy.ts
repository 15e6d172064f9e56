/**
 * The space hierarchy: GET /_matrix/client/v1/rooms/{roomId}/hierarchy walks a space's `m.space.child` links and
 * returns a summary of each room the user may see. Rooms this server is not in are asked of the servers in the
 * child's `via` list through the federation layer's `remoteHierarchy` hook (src/federation/hierarchy.ts), which
 * also serves our own rooms to other servers with the read helpers below.
 *
 * Spec: shared/matrix-spec/content/client-server-api/modules/spaces.md (ordering of children, server behaviour),
 * data/api/client-server/space_hierarchy.yaml (which rooms are returned), definitions/room_summary.yaml.
 *
 * Where the spec is silent this follows Synapse (synapse/handlers/room_summary.py): the walk is depth-first in the
 * spec's child order, each room appears once (loops end there), only `m.space` rooms have their children walked,
 * the root must be a room this server is in and the user may see (403 otherwise), `limit` defaults to and is
 * capped at 50.
 *
 * Pagination: `next_batch` says all a page needs — the root, `suggested_only`, `max_depth`, the user and how many
 * rooms were already returned — so a page can always be served by walking again from the root and skipping those
 * (remote answers are cached by the federation layer for a few minutes): it survives the service worker being
 * restarted between pages. As a shortcut, the walk's stack is kept in memory for five minutes under its token and
 * the next page continues from it. A tree changed between pages may shift by the rooms added or removed.
 */
import type { Principal } from '../api/endpoint.js';
import { forbidden, invalidParam } from '../api/errors.js';
import { decodeBase64, encodeBase64Url } from '../core/base64.js';
import { isValidRoomId } from '../core/identifiers.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import { roomVersion } from '../core/room-versions.js';
import type { RoomVersion } from '../core/room-versions.js';
import type { ReadTx } from '../storage/kv.js';
import type { MemberRecord } from '../storage/records.js';
import type { ServiceContext } from './context.js';
import { currentStateContents, currentStateEvents, getRoom, membershipOf, roomMembers } from './event-store.js';
import type { PublicRoomsChunk } from './directory.js';
import { plainTopic } from './directory.js';
import { domainOf } from './rooms.js';

/** Largest page, also the page size when the client gives none (Synapse's MAX_ROOMS). */
export const MAX_HIERARCHY_LIMIT = 50;
/** Deepest walk, also the depth when the client gives none. */
export const MAX_HIERARCHY_DEPTH = 50;
/** Most rooms one request walks through (pages already returned included): the bound on a request's work. */
export const MAX_HIERARCHY_WALK = 1000;
/** Walks kept to continue from, and for how long (Synapse keeps its pagination sessions five minutes). */
const MAX_SAVED_WALKS = 100;
const SAVED_WALK_MS = 5 * 60 * 1000;
/** Most servers of a child's `via` list asked about it (Synapse's MAX_SERVERS_PER_SPACE). */
export const MAX_VIA_SERVERS = 3;

const SPACE = 'm.space';

/** A room's summary (definitions/room_summary.yaml), without `children_state`. */
export interface RoomSummary extends PublicRoomsChunk {
  allowed_room_ids?: string[];
  encryption?: string;
  room_version?: string;
}

/** An `m.space.child` event as a stripped state event with its `origin_server_ts` (StrippedChildStateEvent). */
export interface StrippedChild {
  type: 'm.space.child';
  state_key: string;
  content: JsonObject;
  sender: string;
  origin_server_ts: number;
}

/** One valid child link: the child's room ID and the servers to ask about it. */
export interface ChildLink {
  roomId: string;
  via: string[];
  suggested: boolean;
  event: StrippedChild;
}

/** What this server knows of a room it is in. */
export interface LocalRoom {
  summary: RoomSummary;
  version: RoomVersion | undefined;
  /** The join rule in force ('invite' when there is no join rules event, as the auth rules read it). */
  joinRule: string;
  /** Rooms whose members may join (restricted / knock_restricted rules), in the join rule's order. */
  allowedRoomIds: string[];
  /** The room's valid children in the spec's order; empty for rooms that are not spaces. */
  children: ChildLink[];
  members: Array<[userId: string, record: MemberRecord]>;
  /** One of this server's users is joined: our copy of the room is current. */
  hostJoined: boolean;
}

/** What another server said about a room it is in (GET /_matrix/federation/v1/hierarchy/{roomId}), checked. */
export interface RemoteHierarchy {
  /** The room's summary and `children_state`. */
  room: RoomSummary & { children_state: StrippedChild[] };
  /** Summaries of the children it could tell about, by room ID. */
  children: Map<string, RoomSummary>;
  /** Children the responding server says we cannot see: not to be asked about again. */
  inaccessibleChildren: Set<string>;
}

/** Who is looking: one of our users (client API) or another server (federation). */
export type Viewer = { userId: string } | { server: string };

export interface HierarchyQuery {
  roomId: string;
  limit?: number;
  maxDepth?: number;
  suggestedOnly: boolean;
  from?: string;
}

/** A room of the client response. */
export type HierarchyRoom = RoomSummary & { children_state: StrippedChild[] };

export interface HierarchyResponse {
  rooms: HierarchyRoom[];
  next_batch?: string;
}

// ---- Reading our copy of a room

/** The summary state, by (type, state_key ''). */
const SUMMARY_TYPES = [
  'm.room.create',
  'm.room.name',
  'm.room.topic',
  'm.room.canonical_alias',
  'm.room.avatar',
  'm.room.join_rules',
  'm.room.history_visibility',
  'm.room.guest_access',
  'm.room.encryption',
] as const;

function str(v: JsonValue | undefined): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** A valid `order`: at most 50 characters, each between \x20 and \x7E (m.space.child). */
function validOrder(v: JsonValue | undefined): string | undefined {
  return typeof v === 'string' && v.length <= 50 && /^[\x20-\x7E]*$/.test(v) ? v : undefined;
}

/** A child event's links: `via` must be a non-empty list of strings, else the link is removed (spaces.md). */
export function childLink(ev: { type?: unknown; state_key?: unknown; content?: unknown; sender?: unknown; origin_server_ts?: unknown }): ChildLink | undefined {
  if (ev.type !== 'm.space.child' || typeof ev.state_key !== 'string' || !isValidRoomId(ev.state_key)) return undefined;
  if (!isJsonObject(ev.content) || typeof ev.sender !== 'string') return undefined;
  const ts = ev.origin_server_ts;
  if (typeof ts !== 'number' || !Number.isSafeInteger(ts)) return undefined;
  const via = ev.content.via;
  if (!Array.isArray(via) || via.length === 0 || !via.every((s) => typeof s === 'string')) return undefined;
  return {
    roomId: ev.state_key,
    via: [...new Set(via as string[])],
    suggested: ev.content.suggested === true,
    event: { type: 'm.space.child', state_key: ev.state_key, content: ev.content, sender: ev.sender, origin_server_ts: ts },
  };
}

/**
 * The spec's order of children: those with a valid `order` first, by code points; then by `origin_server_ts`;
 * then by room ID.
 */
export function compareChildren(a: ChildLink, b: ChildLink): number {
  const oa = validOrder(a.event.content.order);
  const ob = validOrder(b.event.content.order);
  if (oa !== undefined && ob === undefined) return -1;
  if (oa === undefined && ob !== undefined) return 1;
  // Strings of \x20–\x7E compare by code point with < (one UTF-16 unit each).
  if (oa !== undefined && ob !== undefined && oa !== ob) return oa < ob ? -1 : 1;
  if (a.event.origin_server_ts !== b.event.origin_server_ts) return a.event.origin_server_ts - b.event.origin_server_ts;
  return a.roomId < b.roomId ? -1 : a.roomId > b.roomId ? 1 : 0;
}

/** Valid child links of a list of (possibly remote) stripped events, in the spec's order. */
export function orderedChildren(events: readonly unknown[]): ChildLink[] {
  const byRoom = new Map<string, ChildLink>();
  for (const ev of events) {
    const link = isJsonObject(ev) ? childLink(ev) : undefined;
    if (link && !byRoom.has(link.roomId)) byRoom.set(link.roomId, link);
  }
  return [...byRoom.values()].sort(compareChildren);
}

/**
 * Our copy of a room: its summary, rules, members and (for spaces, unless `children: false`) its children.
 * Undefined when this server has never known the room. Reads in the caller's transaction only.
 */
export async function readLocalRoom(
  tx: ReadTx,
  roomId: string,
  serverName: string,
  opts: { children?: boolean } = {},
): Promise<LocalRoom | undefined> {
  const room = await getRoom(tx, roomId);
  if (!room) return undefined;
  const version = roomVersion(room.version);
  const [[create, name, topic, canonical, avatar, joinRules, hv, guest, encryption]] = await currentStateContents(tx, [roomId], SUMMARY_TYPES);
  const members = await roomMembers(tx, roomId);
  const summary: RoomSummary = {
    room_id: roomId,
    num_joined_members: members.filter(([, m]) => m.membership === 'join').length,
    world_readable: hv.history_visibility === 'world_readable',
    guest_can_join: guest.guest_access === 'can_join',
  };
  const set = <K extends keyof RoomSummary>(k: K, v: RoomSummary[K] | undefined) => {
    if (v !== undefined) summary[k] = v;
  };
  set('name', str(name.name));
  set('topic', plainTopic(topic) || undefined);
  set('canonical_alias', str(canonical.alias));
  set('avatar_url', str(avatar.url));
  const rule = str(joinRules.join_rule);
  set('join_rule', rule);
  set('room_type', str(create.type));
  const allowedRoomIds =
    (rule === 'restricted' || rule === 'knock_restricted') && Array.isArray(joinRules.allow)
      ? joinRules.allow.filter((a): a is JsonObject => isJsonObject(a) && a.type === 'm.room_membership' && typeof a.room_id === 'string').map((a) => a.room_id as string)
      : [];
  if (rule === 'restricted' || rule === 'knock_restricted') summary.allowed_room_ids = allowedRoomIds;
  if (encryption.algorithm === 'm.megolm.v1.aes-sha2') summary.encryption = encryption.algorithm;
  summary.room_version = room.version;

  let children: ChildLink[] = [];
  if (summary.room_type === SPACE && opts.children !== false) {
    const childEvents = await currentStateEvents(tx, roomId, 'm.space.child');
    children = orderedChildren(childEvents.filter((r) => !r.redactedBy && r.rejected === undefined).map((r) => r.json));
  }
  return {
    summary,
    version,
    joinRule: rule ?? 'invite',
    allowedRoomIds,
    children,
    members,
    hostJoined: members.some(([u, m]) => m.membership === 'join' && domainOf(u) === serverName),
  };
}

/** Whether the join rule lets anyone ask to join or join: public, and the knock rules of versions that have them. */
function openJoinRule(rule: string | undefined, version: RoomVersion | undefined): boolean {
  if (rule === 'public') return true;
  // A remote room's version may be unknown: its server already judged the rule valid for it.
  if (rule === 'knock') return version === undefined || version.knock;
  if (rule === 'knock_restricted') return version === undefined || version.knockRestrictedJoinRule;
  return false;
}

/** Whether the viewer is joined to one of `roomIds` (as far as this server knows). */
async function inAnyRoom(tx: ReadTx, roomIds: readonly string[], viewer: Viewer): Promise<boolean> {
  for (const r of roomIds.slice(0, 50)) {
    if ('userId' in viewer) {
      if ((await membershipOf(tx, r, viewer.userId))?.membership === 'join') return true;
    } else {
      const members = await roomMembers(tx, r);
      if (members.some(([u, m]) => m.membership === 'join' && domainOf(u) === viewer.server)) return true;
    }
  }
  return false;
}

/**
 * Whether the viewer may see our room in a hierarchy (space_hierarchy.yaml's list; Synapse's
 * `_is_local_room_accessible` for servers): a public or knockable room, a world-readable one, one the user (a
 * server: any of its users) is joined or invited to, or a restricted one whose allowed rooms the viewer is in.
 */
export async function mayViewLocalRoom(tx: ReadTx, room: LocalRoom, viewer: Viewer): Promise<boolean> {
  if (openJoinRule(room.joinRule, room.version)) return true;
  if (room.summary.world_readable) return true;
  const own = 'userId' in viewer ? (u: string) => u === viewer.userId : (u: string) => domainOf(u) === viewer.server;
  if (room.members.some(([u, m]) => own(u) && (m.membership === 'join' || m.membership === 'invite'))) return true;
  const restricted =
    (room.joinRule === 'restricted' && room.version?.restrictedJoinRule === true) ||
    (room.joinRule === 'knock_restricted' && room.version?.knockRestrictedJoinRule === true);
  return restricted && (await inAnyRoom(tx, room.allowedRoomIds, viewer));
}

/**
 * Whether our user may see a room another server told us about (Synapse's `_is_remote_room_accessible`): its
 * summary says it is open or world-readable, the user is in one of its allowed rooms, or our copy of the user's
 * membership says joined or invited.
 */
async function mayViewRemoteRoom(tx: ReadTx, summary: RoomSummary, userId: string): Promise<boolean> {
  if (openJoinRule(summary.join_rule, undefined) || summary.world_readable) return true;
  if ((summary.join_rule === 'restricted' || summary.join_rule === 'knock_restricted') && (await inAnyRoom(tx, summary.allowed_room_ids ?? [], { userId }))) {
    return true;
  }
  const m = (await membershipOf(tx, summary.room_id, userId))?.membership;
  return m === 'join' || m === 'invite';
}

// ---- Summaries from other servers

/** A summary from another server, keeping only the spec's fields with the spec's types. */
export function summaryFromRemote(v: JsonValue | undefined): RoomSummary | undefined {
  if (!isJsonObject(v) || typeof v.room_id !== 'string' || !isValidRoomId(v.room_id)) return undefined;
  const n = v.num_joined_members;
  const out: RoomSummary = {
    room_id: v.room_id,
    num_joined_members: typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : 0,
    world_readable: v.world_readable === true,
    guest_can_join: v.guest_can_join === true,
  };
  for (const k of ['name', 'topic', 'canonical_alias', 'avatar_url', 'join_rule', 'room_type', 'encryption', 'room_version'] as const) {
    const s = v[k];
    if (typeof s === 'string' && s.length <= 4096) out[k] = s;
  }
  if (Array.isArray(v.allowed_room_ids)) {
    out.allowed_room_ids = v.allowed_room_ids.filter((r): r is string => typeof r === 'string' && isValidRoomId(r)).slice(0, 50);
  }
  return out;
}

// ---- Pagination tokens

const utf8 = new TextEncoder();
const utf8Decode = new TextDecoder();

interface PageToken {
  root: string;
  suggestedOnly: boolean;
  maxDepth: number;
  userId: string;
  skip: number;
}

function encodeToken(t: PageToken): string {
  return encodeBase64Url(utf8.encode(JSON.stringify([1, t.root, t.suggestedOnly ? 1 : 0, t.maxDepth, t.userId, t.skip])));
}

function decodeToken(token: string): PageToken {
  const bad = () => invalidParam('from', 'is not a valid pagination token');
  if (token.length > 2048) throw bad();
  const bytes = decodeBase64(token);
  if (!bytes) throw bad();
  let v: unknown;
  try {
    v = JSON.parse(utf8Decode.decode(bytes));
  } catch {
    throw bad();
  }
  if (!Array.isArray(v) || v.length !== 6 || v[0] !== 1) throw bad();
  const [, root, so, depth, userId, skip] = v as unknown[];
  if (typeof root !== 'string' || (so !== 0 && so !== 1) || typeof userId !== 'string') throw bad();
  if (!Number.isSafeInteger(depth) || (depth as number) < 0 || !Number.isSafeInteger(skip) || (skip as number) < 1) throw bad();
  return { root, suggestedOnly: so === 1, maxDepth: depth as number, userId, skip: skip as number };
}

// ---- The walk

interface QueueEntry {
  roomId: string;
  via: readonly string[];
  depth: number;
  /** The summary a parent's server gave of this room, if any. */
  remote?: RoomSummary;
}

interface WalkEntry {
  room: HierarchyRoom;
  children: ChildLink[];
  /** Summaries of the children from the same remote answer. */
  remoteChildren?: Map<string, RoomSummary>;
  inaccessible?: Set<string>;
}

export class HierarchyService {
  /**
   * Set by the federation layer: what the servers in `via` say about a room we are not in (undefined when none
   * of them could tell).
   */
  remoteHierarchy?: (roomId: string, via: readonly string[], suggestedOnly: boolean) => Promise<RemoteHierarchy | undefined>;

  /**
   * Where recent walks stopped, by their `next_batch`: the next page continues from there instead of walking
   * again from the root. Only a shortcut — the token alone is enough (see the module comment).
   */
  private readonly walks = new Map<string, { stack: QueueEntry[]; processed: Set<string>; expires: number }>();

  constructor(private readonly ctx: ServiceContext) {}

  /** GET /_matrix/client/v1/rooms/{roomId}/hierarchy */
  async hierarchy(principal: Principal, q: HierarchyQuery): Promise<HierarchyResponse> {
    if (!isValidRoomId(q.roomId)) throw invalidParam('roomId', 'is not a valid room ID');
    if (q.limit !== undefined && q.limit < 1) throw invalidParam('limit', 'must be a positive integer');
    if (q.maxDepth !== undefined && q.maxDepth < 0) throw invalidParam('max_depth', 'must be a non-negative integer');
    const limit = Math.min(q.limit ?? MAX_HIERARCHY_LIMIT, MAX_HIERARCHY_LIMIT);
    const maxDepth = Math.min(q.maxDepth ?? MAX_HIERARCHY_DEPTH, MAX_HIERARCHY_DEPTH);
    let skip = 0;
    if (q.from !== undefined) {
      const t = decodeToken(q.from);
      if (t.root !== q.roomId || t.userId !== principal.userId) throw invalidParam('from', 'belongs to another request');
      if (t.suggestedOnly !== q.suggestedOnly || t.maxDepth !== maxDepth) {
        throw invalidParam('from', 'suggested_only and max_depth cannot change on paginated requests');
      }
      skip = t.skip;
    }
    const viewer = { userId: principal.userId };

    // The root: a room we are in that the user may see (space_hierarchy.yaml 403).
    const root = await this.ctx.kv.read(async (tx) => {
      const room = await readLocalRoom(tx, q.roomId, this.ctx.serverName, { children: false });
      return room && room.hostJoined && (await mayViewLocalRoom(tx, room, viewer)) ? room : undefined;
    });
    if (!root) throw forbidden('You may not view this room, or it is not known to this server');

    // Where the previous page stopped, if this process still has it; else walk again and skip what was returned.
    const saved = q.from === undefined ? undefined : this.walks.get(q.from);
    const resume = saved !== undefined && saved.expires > this.ctx.clock.now();
    const stack: QueueEntry[] = resume ? [...saved.stack] : [{ roomId: q.roomId, via: [], depth: 0 }];
    const processed = resume ? new Set(saved.processed) : new Set<string>();
    let toSkip = resume ? 0 : skip;
    const fetched = new Map<string, Promise<RemoteHierarchy | undefined>>();
    const page: HierarchyRoom[] = [];
    while (stack.length > 0 && page.length < limit && processed.size < MAX_HIERARCHY_WALK) {
      const e = stack.pop()!;
      if (processed.has(e.roomId)) continue;
      processed.add(e.roomId);
      const entry = await this.entryFor(e, viewer, q.suggestedOnly, fetched);
      if (!entry) continue;
      if (toSkip > 0) toSkip--;
      else page.push(entry.room);
      if (e.depth >= maxDepth) continue;
      // Pushed in reverse so that the next room popped is the first child in the spec's order.
      for (let i = entry.children.length - 1; i >= 0; i--) {
        const c = entry.children[i];
        if (processed.has(c.roomId) || entry.inaccessible?.has(c.roomId)) continue;
        stack.push({ roomId: c.roomId, via: c.via, depth: e.depth + 1, remote: entry.remoteChildren?.get(c.roomId) });
      }
    }
    const res: HierarchyResponse = { rooms: page };
    // More to come while rooms are left to walk, within the bound on one walk's work.
    const more = stack.some((e) => !processed.has(e.roomId)) && processed.size < MAX_HIERARCHY_WALK;
    if (more && page.length > 0) {
      const token = encodeToken({ root: q.roomId, suggestedOnly: q.suggestedOnly, maxDepth, userId: principal.userId, skip: skip + page.length });
      res.next_batch = token;
      if (this.walks.size >= MAX_SAVED_WALKS) this.walks.delete(this.walks.keys().next().value!);
      this.walks.set(token, { stack, processed, expires: this.ctx.clock.now() + SAVED_WALK_MS });
    }
    return res;
  }

  /** One room of the walk as the user may see it, with the children to walk next; undefined: left out. */
  private async entryFor(
    e: QueueEntry,
    viewer: { userId: string },
    suggestedOnly: boolean,
    fetched: Map<string, Promise<RemoteHierarchy | undefined>>,
  ): Promise<WalkEntry | undefined> {
    const local = await this.ctx.kv.read(async (tx) => {
      const room = await readLocalRoom(tx, e.roomId, this.ctx.serverName);
      if (!room?.hostJoined) return { known: false as const };
      return { known: true as const, room: (await mayViewLocalRoom(tx, room, viewer)) ? room : undefined };
    });
    if (local.known) {
      if (!local.room) return undefined;
      const children = suggestedOnly ? local.room.children.filter((c) => c.suggested) : local.room.children;
      return { room: { ...local.room.summary, children_state: children.map((c) => c.event) }, children };
    }

    // A room we are not in: what a parent's server said, or (for spaces, whose children we need) the via servers.
    let remote: RemoteHierarchy | undefined;
    if (!e.remote || e.remote.room_type === SPACE) {
      const key = `${e.roomId}\u0000${suggestedOnly}`;
      let p = fetched.get(key);
      if (!p) {
        p = this.fetchRemote(e.roomId, e.via, suggestedOnly);
        fetched.set(key, p);
      }
      remote = await p;
    }
    const summary = remote?.room ?? e.remote;
    if (!summary) return undefined;
    if (!(await this.ctx.kv.read((tx) => mayViewRemoteRoom(tx, summary, viewer.userId)))) return undefined;
    if (!remote || summary.room_type !== SPACE) return { room: { ...strip(summary), children_state: [] }, children: [] };
    const children = orderedChildren(remote.room.children_state).filter((c) => !suggestedOnly || c.suggested);
    return {
      room: { ...strip(summary), children_state: children.map((c) => c.event) },
      children,
      remoteChildren: remote.children,
      inaccessible: remote.inaccessibleChildren,
    };
  }

  private async fetchRemote(roomId: string, via: readonly string[], suggestedOnly: boolean): Promise<RemoteHierarchy | undefined> {
    if (!this.remoteHierarchy) return undefined;
    const servers = via.filter((s) => s !== this.ctx.serverName).slice(0, MAX_VIA_SERVERS);
    if (servers.length === 0) return undefined;
    try {
      return await this.remoteHierarchy(roomId, servers, suggestedOnly);
    } catch (err) {
      this.ctx.logger.debug('hierarchy: remote room could not be fetched', { roomId, error: err });
      return undefined;
    }
  }
}

/** The summary fields of a remote room (its `children_state` is rebuilt from the checked links). */
function strip(summary: RoomSummary & { children_state?: unknown }): RoomSummary {
  const { children_state: _ignored, ...rest } = summary;
  return rest;
}
