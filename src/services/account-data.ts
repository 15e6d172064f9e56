/**
 * Client config (account data), global and per room, and room tags (the `m.tag` room account data).
 * Spec: shared/matrix-spec/content/client-server-api/modules/account_data.md, modules/tags.md;
 * data/api/client-server/account-data.yaml, tags.yaml.
 *
 * Every write takes a stream position and appends a `StreamEntry { kind: 'account_data' }` in the same
 * transaction, so /sync delivers it; waiters are notified after the commit.
 */
import type { Principal } from '../api/endpoint.js';
import { MatrixError, forbidden, guestAccessForbidden, invalidParam, notFound } from '../api/errors.js';
import { isValidRoomId, isValidUserId } from '../core/identifiers.js';
import type { JsonObject } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type { ReadTx, WriteTx } from '../storage/kv.js';
import type { StreamEntry } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import type { ServiceContext } from './context.js';
import { allocatePosition } from './notifier.js';
import { PUSH_RULES_TYPE, pushRulesContentIn } from './push-rules.js';

/** account_data: [userId, roomId or '', type] → AccountDataRecord */
export interface AccountDataRecord {
  content: JsonObject;
  pos: number;
}

/** Types the server manages: clients may not set them through these endpoints (account_data.md). */
const SERVER_MANAGED = new Set(['m.fully_read', 'm.push_rules']);
export const TAG_TYPE = 'm.tag';
/** Tag names longer than this are refused (Synapse's limit is the same 255 bytes). */
const MAX_TAG_LENGTH = 255;

/**
 * Stores account data inside the caller's write transaction (for /read_markers' m.fully_read and the push rules
 * service): writes the record and its stream entry, and returns the position to notify after the commit.
 */
export async function putAccountDataInTx(
  tx: WriteTx,
  userId: string,
  roomId: string | undefined,
  type: string,
  content: JsonObject,
): Promise<number> {
  const pos = await allocatePosition(tx);
  const rec: AccountDataRecord = { content, pos };
  await tx.put(STORES.accountData, [userId, roomId ?? '', type], rec);
  const entry: StreamEntry =
    roomId === undefined ? { kind: 'account_data', userId, dataType: type } : { kind: 'account_data', userId, roomId, dataType: type };
  await tx.put(STORES.stream, [pos], entry);
  return pos;
}

/** One account data item inside a read transaction. */
export async function readAccountData(
  tx: ReadTx,
  userId: string,
  roomId: string | undefined,
  type: string,
): Promise<JsonObject | undefined> {
  return (await tx.get<AccountDataRecord>(STORES.accountData, [userId, roomId ?? '', type]))?.content;
}

/** All global account data of a user, as /sync's `account_data.events`. */
export async function readGlobalAccountData(tx: ReadTx, userId: string): Promise<Array<{ type: string; content: JsonObject }>> {
  const rows = await tx.range<AccountDataRecord>(STORES.accountData, { prefix: [userId, ''] });
  return rows.map(([key, rec]) => ({ type: String(key[2]), content: rec.content }));
}

/** All account data of a user for one room. */
export async function readRoomAccountData(
  tx: ReadTx,
  userId: string,
  roomId: string,
): Promise<Array<{ type: string; content: JsonObject }>> {
  const rows = await tx.range<AccountDataRecord>(STORES.accountData, { prefix: [userId, roomId] });
  return rows.map(([key, rec]) => ({ type: String(key[2]), content: rec.content }));
}

export class AccountDataService {
  constructor(private readonly ctx: ServiceContext) {}

  /** GET /user/{userId}/account_data/{type} and …/rooms/{roomId}/account_data/{type} */
  async get(principal: Principal, userId: string, roomId: string | undefined, type: string): Promise<JsonObject> {
    checkOwner(principal, userId, 'read');
    if (roomId !== undefined) checkRoomId(roomId);
    const content = await this.ctx.kv.read((tx) =>
      // The push rules live with the push rules service; Synapse answers this type with them too.
      roomId === undefined && type === PUSH_RULES_TYPE ? pushRulesContentIn(tx, userId) : readAccountData(tx, userId, roomId, type),
    );
    if (!content) throw notFound('Account data not found');
    return content;
  }

  /** PUT /user/{userId}/account_data/{type} and …/rooms/{roomId}/account_data/{type} */
  async put(principal: Principal, userId: string, roomId: string | undefined, type: string, content: JsonObject): Promise<void> {
    checkOwner(principal, userId, 'write');
    if (roomId !== undefined) checkRoomId(roomId);
    // account-data.yaml: 405 with M_BAD_JSON for types the server controls.
    if (SERVER_MANAGED.has(type)) {
      throw new MatrixError(405, 'M_BAD_JSON', `Account data of type '${type}' is managed by the server`);
    }
    await this.write(userId, roomId, type, () => content);
  }

  /** GET /user/{userId}/rooms/{roomId}/tags */
  async getTags(principal: Principal, userId: string, roomId: string): Promise<JsonObject> {
    checkOwner(principal, userId, 'read');
    checkRoomId(roomId);
    const content = await this.ctx.kv.read((tx) => readAccountData(tx, userId, roomId, TAG_TYPE));
    return { tags: tagsOf(content) };
  }

  /** PUT /user/{userId}/rooms/{roomId}/tags/{tag} — `body` is the tag's data (`order`). */
  async setTag(principal: Principal, userId: string, roomId: string, tag: string, body: JsonObject): Promise<void> {
    checkOwner(principal, userId, 'write');
    checkRoomId(roomId);
    checkTag(tag);
    const order = body.order;
    // tags.yaml: order is a number between 0 and 1 (the schema checks the type).
    if (typeof order === 'number' && (order < 0 || order > 1)) throw invalidParam('order', 'must be between 0 and 1');
    await this.write(userId, roomId, TAG_TYPE, (old) => ({ tags: { ...tagsOf(old), [tag]: body } }));
  }

  /** DELETE /user/{userId}/rooms/{roomId}/tags/{tag} — deleting an absent tag succeeds. */
  async deleteTag(principal: Principal, userId: string, roomId: string, tag: string): Promise<void> {
    checkOwner(principal, userId, 'write');
    checkRoomId(roomId);
    await this.write(userId, roomId, TAG_TYPE, (old) => {
      const tags = tagsOf(old);
      if (!Object.hasOwn(tags, tag)) return undefined;
      delete tags[tag];
      return { tags };
    });
  }

  /** Read-modify-write in one transaction; `update` returning undefined means "nothing to change". */
  private async write(
    userId: string,
    roomId: string | undefined,
    type: string,
    update: (old: JsonObject | undefined) => JsonObject | undefined,
  ): Promise<void> {
    const pos = await this.ctx.kv.write(async (tx) => {
      const old = await readAccountData(tx, userId, roomId, type);
      const content = update(old);
      if (content === undefined) return undefined;
      return putAccountDataInTx(tx, userId, roomId, type, content);
    });
    if (pos !== undefined) this.ctx.notifier.notify(pos);
  }
}

function checkOwner(principal: Principal, userId: string, what: 'read' | 'write'): void {
  if (!isValidUserId(userId)) throw invalidParam('userId', 'is not a valid user ID');
  if (principal.userId !== userId) {
    throw forbidden(what === 'read' ? 'Cannot get account data for other users' : 'Cannot add account data for other users');
  }
  // Account data is not among the endpoints guests may use (guest_access.md), as in Synapse.
  if (principal.isGuest) throw guestAccessForbidden();
}

function checkRoomId(roomId: string): void {
  if (!isValidRoomId(roomId)) throw invalidParam('roomId', 'is not a valid room ID');
}

function checkTag(tag: string): void {
  if (tag.length > MAX_TAG_LENGTH) throw invalidParam('tag', `must be at most ${MAX_TAG_LENGTH} characters`);
}

/** The `tags` object of m.tag content (a fresh copy); anything malformed counts as no tags. */
function tagsOf(content: JsonObject | undefined): JsonObject {
  const tags = content?.tags;
  return isJsonObject(tags) ? { ...tags } : {};
}
