/**
 * Server ACLs at the federation layer: requests about a room, its PDUs and its room-scoped EDUs (typing, receipts)
 * from a server the room's m.room.server_acl denies are refused.
 * Spec: shared/matrix-spec/content/server-server-api.md §"Server Access Control Lists (ACLs)" (403 M_FORBIDDEN on
 * the protected endpoints; per-PDU errors in /send; denied typing and receipt EDUs ignored). The matching itself
 * is core/server-acl.ts.
 */
import { forbidden } from '../api/errors.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type { RoomVersion } from '../core/room-versions.js';
import { serverAclAllows } from '../core/server-acl.js';
import type { Kv } from '../storage/kv.js';
import { currentStateEvent } from '../services/event-store.js';

/** Each room's current ACL content (null: none), cached; dropped whenever the room's state may have changed. */
export class ServerAcls {
  private readonly cache = new Map<string, JsonObject | null>();
  /** Bumped on invalidation, so a read that raced a change does not cache the old ACL. */
  private readonly generation = new Map<string, number>();

  constructor(
    private readonly kv: Kv,
    /** The version of a room held here (undefined: not held, so there is no ACL we could know). */
    private readonly versionOf: (roomId: string) => Promise<RoomVersion | undefined>,
  ) {}

  private async aclOf(roomId: string): Promise<JsonObject | null> {
    const hit = this.cache.get(roomId);
    if (hit !== undefined) return hit;
    if (!(await this.versionOf(roomId))) return null;
    const gen = this.generation.get(roomId) ?? 0;
    const rec = await this.kv.read((tx) => currentStateEvent(tx, roomId, 'm.room.server_acl', ''));
    // A redacted ACL keeps no keys: an ACL with no `allow` denies every server, as the spec says.
    const acl = rec === undefined ? null : rec.redactedBy !== undefined || !isJsonObject(rec.json.content) ? {} : rec.json.content;
    if ((this.generation.get(roomId) ?? 0) === gen) {
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(roomId, acl);
    }
    return acl;
  }

  /** Whether `server` may take part in `roomId` (rooms not held here: yes). */
  async allows(roomId: string, server: string): Promise<boolean> {
    const acl = await this.aclOf(roomId);
    return serverAclAllows(acl ?? undefined, server);
  }

  /** 403 M_FORBIDDEN when the room's ACL denies `server`. */
  async require(roomId: string, server: string): Promise<void> {
    if (!(await this.allows(roomId, server))) throw forbidden(`Server ${server} is denied by the room's server ACL`);
  }

  invalidate(roomId: string): void {
    this.cache.delete(roomId);
    this.generation.set(roomId, (this.generation.get(roomId) ?? 0) + 1);
    if (this.generation.size > 10_000) this.generation.clear();
  }

  /**
   * The EDUs of a transaction from `origin` without those for rooms that deny it: typing notifications for such a
   * room are dropped, and receipts keep only the rooms that allow it.
   */
  async filterEdus(origin: string, edus: readonly JsonValue[]): Promise<JsonValue[]> {
    const out: JsonValue[] = [];
    for (const edu of edus) {
      if (!isJsonObject(edu) || !isJsonObject(edu.content)) {
        out.push(edu);
        continue;
      }
      if (edu.edu_type === 'm.typing') {
        const roomId = edu.content.room_id;
        if (typeof roomId === 'string' && !(await this.allows(roomId, origin))) continue;
        out.push(edu);
      } else if (edu.edu_type === 'm.receipt') {
        const kept: JsonObject = {};
        for (const [roomId, r] of Object.entries(edu.content)) if (await this.allows(roomId, origin)) kept[roomId] = r;
        if (Object.keys(kept).length > 0) out.push({ ...edu, content: kept });
      } else {
        out.push(edu);
      }
    }
    return out;
  }
}
