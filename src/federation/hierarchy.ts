/**
 * The space hierarchy over federation: we answer GET /_matrix/federation/v1/hierarchy/{roomId} for rooms we are
 * in, judged by what the asking server may see (the origin of the authenticated connection), and ask other
 * servers about rooms we are not in for our clients' walks (HierarchyService.remoteHierarchy).
 *
 * Spec: shared/matrix-spec/content/server-server-api.md §Spaces, data/api/server-server/space_hierarchy.yaml.
 * As Synapse: a room the origin may not see, or that we are not in, is 404 M_NOT_FOUND; children we are in that
 * the origin may not see are listed in `inaccessible_children`, children we are not in are left out; at most 50
 * children are summarised; answers we get are kept for five minutes ("should be cached for a period of time"),
 * and that none of a room's via servers could tell, for one.
 */
import { notFound } from '../api/errors.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import { isValidRoomId, isValidServerName } from '../core/identifiers.js';
import type { ServiceContext } from '../services/context.js';
import type { RemoteHierarchy, RoomSummary, StrippedChild } from '../services/hierarchy.js';
import { mayViewLocalRoom, orderedChildren, readLocalRoom, summaryFromRemote } from '../services/hierarchy.js';
import type { AnyEndpoint } from '../api/endpoint.js';
import { defineEndpoint } from '../api/endpoint.js';
import { queryBool } from '../api/request.js';
import { enc } from './remote.js';
import type { RemoteClient } from './remote.js';

const F = '/_matrix/federation/v1';
/** Children summarised in one answer (Synapse's MAX_ROOMS_PER_SPACE). */
export const MAX_CHILDREN_PER_SPACE = 50;
/** Child events sent in an answer, and entries kept from another server's answer. */
const MAX_REMOTE_ENTRIES = 200;
/** How long another server's answer is used again. */
export const REMOTE_CACHE_MS = 5 * 60 * 1000;
/**
 * How long "none of the via servers could tell" is remembered: every page of a walk walks again from the root, and
 * must not wait on the same refusals or unreachable servers each time; short, since access may be granted.
 */
export const REMOTE_FAILURE_CACHE_MS = 60 * 1000;
/** A client waits on these requests. */
const REQUEST_TIMEOUT_MS = 5_000;
const MAX_CACHE_ENTRIES = 1000;

/** What the endpoint calls (FederationService implements it, adding the server ACL check). */
export interface HierarchyHandlers {
  hierarchy(origin: string, roomId: string, suggestedOnly: boolean): Promise<JsonObject>;
}

/** GET /_matrix/federation/v1/hierarchy/{roomId} */
export function hierarchyEndpoint(h: HierarchyHandlers): AnyEndpoint {
  return defineEndpoint({
    method: 'GET',
    path: `${F}/hierarchy/{roomId}`,
    auth: 'federation',
    operationId: 'getSpaceHierarchy',
    handler: ({ origin, params, query }) => h.hierarchy(origin, params.roomId, queryBool(query, 'suggested_only', false)),
  });
}

export class FederationHierarchy {
  private readonly cache = new Map<string, { expires: number; value: RemoteHierarchy | undefined }>();

  constructor(
    private readonly ctx: ServiceContext,
    private readonly remote: RemoteClient,
  ) {}

  /** Our answer to `origin` about one of our rooms and its children. */
  async serve(origin: string, roomId: string, suggestedOnly: boolean): Promise<JsonObject> {
    // A room ID that cannot exist is a room we do not know (the spec's only error here is 404).
    if (!isValidRoomId(roomId)) throw notFound('Unknown room');
    const viewer = { server: origin };
    const { serverName } = this.ctx;
    const out = await this.ctx.kv.read(async (tx) => {
      const room = await readLocalRoom(tx, roomId, serverName);
      if (!room || !room.hostJoined || !(await mayViewLocalRoom(tx, room, viewer))) return undefined;
      const links = (suggestedOnly ? room.children.filter((c) => c.suggested) : room.children).slice(0, MAX_REMOTE_ENTRIES);
      const children: RoomSummary[] = [];
      const inaccessible: string[] = [];
      // The first children are summarised; the asking server asks the others' via servers itself.
      for (const link of links.slice(0, MAX_CHILDREN_PER_SPACE)) {
        const child = await readLocalRoom(tx, link.roomId, serverName, { children: false });
        // A room we are not in: the asking server has its own way to ask the child's via servers.
        if (!child?.hostJoined) continue;
        if (await mayViewLocalRoom(tx, child, viewer)) children.push(child.summary);
        else inaccessible.push(link.roomId);
      }
      return { room: { ...room.summary, children_state: links.map((l) => l.event) }, children, inaccessible };
    });
    if (!out) throw notFound('Unknown room, or not one the requesting server may see');
    return {
      room: out.room as unknown as JsonObject,
      children: out.children as unknown as JsonValue[],
      inaccessible_children: out.inaccessible,
    };
  }

  /**
   * What the first of `via` that can tell says about a room we are not in (for HierarchyService.remoteHierarchy);
   * undefined when none can.
   */
  async fetch(roomId: string, via: readonly string[], suggestedOnly: boolean): Promise<RemoteHierarchy | undefined> {
    const key = `${roomId}\u0000${suggestedOnly}`;
    const now = this.ctx.clock.now();
    // A failure is remembered with the servers asked: another parent may name other servers.
    const failedKey = `${key}\u0000${via.join(',')}`;
    const hit = this.cache.get(key) ?? this.cache.get(failedKey);
    if (hit && hit.expires > now) return hit.value;
    for (const server of via) {
      if (server === this.ctx.serverName || !isValidServerName(server)) continue;
      try {
        const path = `${F}/hierarchy/${enc(roomId)}?suggested_only=${suggestedOnly}`;
        const body = await this.remote.get(server, path, { timeoutMs: REQUEST_TIMEOUT_MS });
        const value = checkAnswer(roomId, body);
        if (!value) {
          this.ctx.logger.debug('federation: hierarchy answer is malformed', { server, roomId });
          continue;
        }
        this.remember(key, now + REMOTE_CACHE_MS, value);
        return value;
      } catch (e) {
        this.ctx.logger.debug('federation: hierarchy request failed', { server, roomId, error: e });
      }
    }
    this.remember(failedKey, now + REMOTE_FAILURE_CACHE_MS, undefined);
    return undefined;
  }

  private remember(key: string, expires: number, value: RemoteHierarchy | undefined): void {
    if (this.cache.size >= MAX_CACHE_ENTRIES) this.cache.clear();
    this.cache.set(key, { expires, value });
  }
}

/** Another server's answer, checked: the room asked about, its child events and the children's summaries. */
function checkAnswer(roomId: string, body: JsonObject): RemoteHierarchy | undefined {
  const room = summaryFromRemote(body.room);
  if (!room || room.room_id !== roomId || !isJsonObject(body.room)) return undefined;
  const rawChildren = body.room.children_state;
  if (rawChildren !== undefined && !Array.isArray(rawChildren)) return undefined;
  // Only well-formed child events are kept (orderedChildren drops the rest).
  const childrenState: StrippedChild[] = orderedChildren((rawChildren ?? []).slice(0, MAX_REMOTE_ENTRIES)).map((c) => c.event);
  const children = new Map<string, RoomSummary>();
  if (Array.isArray(body.children)) {
    for (const c of body.children.slice(0, MAX_REMOTE_ENTRIES)) {
      const s = summaryFromRemote(c);
      if (s && s.room_id !== roomId && !children.has(s.room_id)) children.set(s.room_id, s);
    }
  }
  const inaccessible = new Set<string>();
  if (Array.isArray(body.inaccessible_children)) {
    for (const r of body.inaccessible_children.slice(0, MAX_REMOTE_ENTRIES)) if (typeof r === 'string') inaccessible.add(r);
  }
  return { room: { ...room, children_state: childrenState }, children, inaccessibleChildren: inaccessible };
}
