/**
 * Push rules of each user, the `m.push_rules` account data event, notification counts for /sync and the list of
 * notifications (GET /notifications).
 *
 * Spec: shared/matrix-spec/content/client-server-api/modules/push.md ("Push Rules: API", "Push Rules: Events",
 * "Receiving notifications", "Marking notifications as read", "Listing Notifications"), modules/threading.md;
 * data/api/client-server/pushrules.yaml, notifications.yaml. The rule logic itself is src/core/push-rules.ts.
 *
 * ## Storage
 * Only what the user changed is stored (`push_rules`: [userId] → PushRulesRecord): their own rules and the
 * `enabled`/`actions` of server-default rules. The rule set served is built from the current defaults and those
 * changes, so a newer server's defaults reach every user. A change takes a stream position and writes an
 * `account_data` stream entry of type `m.push_rules`, so the next /sync carries the new `m.push_rules` event.
 * Each change is also kept as a version ([userId, pos] → PushRuleChanges, the last MAX_RULE_VERSIONS of them):
 * an event is judged by the rules in force when it arrived, as Synapse does, so messages received while a room
 * was muted stay silent after it is unmuted.
 *
 * ## Notification counts
 * Computed when /sync asks rather than stored per event: the events after the user's read position are read newest
 * first (at most UNREAD_SCAN_LIMIT) and evaluated against the user's rules of the time, with the room's current
 * joined member count, the user's current display name and the current power levels (cached per room state). The
 * read position of an event's thread (main timeline or a thread root, threading.md: up to 3 relation hops) is the
 * latest of: the unthreaded m.read / m.read.private receipt, the receipt for that thread, the user's own latest
 * event there (sending an event counts as reading up to it, push.md), and the user's current membership event
 * (nothing from before they joined notifies). Rejected, soft-failed and redacted events never count. Counts are
 * memoised per user and room and extended incrementally by the next sync.
 *
 * ## GET /notifications
 * Walks the stream backwards over the user's joined rooms (after their current membership event) and returns the
 * events the rules say notify, newest first; `next_token` is the stream position to continue below. At most
 * NOTIFICATIONS_SCAN_LIMIT stream entries are read per request.
 */
import type { Principal } from '../api/endpoint.js';
import { guestAccessForbidden, invalidParam, missingParam, notFound } from '../api/errors.js';
import type { PowerLevels } from '../core/auth/power-levels.js';
import { notificationLevel, powerLevelOf, powerLevelsFrom, roomCreators } from '../core/auth/power-levels.js';
import { isValidRoomId, isValidUserId } from '../core/identifiers.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type {
  CompiledRuleset,
  PushCondition,
  PushDecision,
  PushRoomContext,
  PushRuleChanges,
  PushRuleKind,
  UserPushRule,
} from '../core/push-rules.js';
import {
  actionsProblem,
  buildRuleset,
  compileRuleset,
  emptyChanges,
  evaluatePushRules,
  formatRule,
  formatRuleset,
  isPushRuleKind,
} from '../core/push-rules.js';
import type { RoomVersion } from '../core/room-versions.js';
import { roomVersion } from '../core/room-versions.js';
import type { ReadTx, WriteTx } from '../storage/kv.js';
import type { EventRecord, StreamEntry, UserRoomRecord } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import type { ServiceContext } from './context.js';
import type { ReceiptRecord } from './ephemeral.js';
import {
  clientEvents,
  currentStateEvent,
  getEvent,
  getEvents,
  getRoom,
  pduOf,
  roomMembers,
  timelineRange,
  userRooms,
} from './event-store.js';
import { allocatePosition, currentPosition } from './notifier.js';

export const PUSH_RULES_TYPE = 'm.push_rules';
/** Events read at most when counting a room's unread notifications. */
export const UNREAD_SCAN_LIMIT = 500;
/** Stream entries read at most by one GET /notifications. */
export const NOTIFICATIONS_SCAN_LIMIT = 5000;
/** Rule versions kept per user (older events are judged by the oldest kept). */
export const MAX_RULE_VERSIONS = 50;
/** Relation hops followed to find an event's thread (push.md recommends at most 3). */
const THREAD_HOPS = 3;
const MAX_CACHED = 10_000;

/** push_rules: [userId] → PushRulesRecord (and [userId, pos] → PushRuleChanges: the versions) */
export interface PushRulesRecord extends PushRuleChanges {
  /** Stream position of the last change. */
  pos: number;
  /** Versions older than the oldest kept were dropped (so events before it cannot be judged by the defaults). */
  pruned?: boolean;
}

/** Which compiled rules judge an event at a stream position. */
type RulesAt = (pos: number) => CompiledRuleset;

export type NotificationCounts = {
  notification_count: number;
  highlight_count: number;
};

export interface UnreadCounts {
  /** All events, or only the main timeline's when threads are counted apart. */
  main: NotificationCounts;
  /** Per thread root, only threads with notifications; present when asked for and non-empty. */
  threads?: Record<string, NotificationCounts>;
}

/** What the conditions need of one room, as of one state of it. */
interface RoomFacts {
  stateGroup: number;
  memberCount: number;
  version: RoomVersion | undefined;
  powerLevels: PowerLevels | undefined;
  creators: string[];
  /** Display names of users, filled as asked. */
  displayNames: Map<string, string | undefined>;
}

/** A room's unread counts for a user as computed up to `pos`, per partition (MAIN or a thread root). */
interface UnreadMemo {
  pos: number;
  /** The read positions the counts assume (readSignature). */
  sig: string;
  counts: Map<string, NotificationCounts>;
  /** Partitions in which the scanned range holds an event of the user's own. */
  own: Set<string>;
  /** The counts cover events after this stream position only. */
  floor: number;
  /** The scan stopped at the user's own event: nothing older counts. */
  final: boolean;
  /** Events redacted by redactions in the scanned range. */
  redacts: string[];
  /** The user's receipt positions as of `pos` (receiptPositionsIn), and the thread IDs they were read for. */
  receipts?: Map<string, number>;
  receiptsRead?: Set<string>;
}

/**
 * A room's complete timeline in (from, to], newest first, with the records, that the caller has already read (the
 * woken /sync's timeline): the unread count then need not read it again.
 */
export interface TimelineRead {
  roomId: string;
  from: number;
  to: number;
  rows: ReadonlyArray<readonly [pos: number, eventId: string]>;
  records: ReadonlyArray<EventRecord | undefined>;
}

/** The main timeline's partition key (receipts use the thread ID 'main' for it). */
const MAIN = 'main';

function readSignature(lower: number, main: number, threads: readonly number[]): string {
  return `${lower}/${main}/${threads.join(',')}`;
}

const EMPTY_COUNTS = (): NotificationCounts => ({ notification_count: 0, highlight_count: 0 });

export class PushRulesService {
  /** Compiled rule sets by `userId@pos` of their version (0: the defaults). */
  private readonly compiled = new Map<string, CompiledRuleset>();
  /** Room facts by room, valid while the room's state group is unchanged. */
  private readonly rooms = new Map<string, RoomFacts>();
  /** Unread counts by user, room and thread mode, extended incrementally (unreadCountsIn). */
  private readonly unread = new Map<string, UnreadMemo>();

  constructor(private readonly ctx: ServiceContext) {}

  // ---- Reading, inside a caller's transaction

  /** The user's stored changes (none yet: undefined). */
  recordIn(tx: ReadTx, userId: string): Promise<PushRulesRecord | undefined> {
    return tx.get<PushRulesRecord>(STORES.pushRules, [userId]);
  }

  /** The `m.push_rules` account data event (push.md "Push Rules: Events"). */
  async pushRulesEventIn(tx: ReadTx, userId: string): Promise<JsonObject> {
    return { type: PUSH_RULES_TYPE, content: await pushRulesContentIn(tx, userId) };
  }

  /** The user's current rules, ready to evaluate. */
  async compiledRulesIn(tx: ReadTx, userId: string): Promise<CompiledRuleset> {
    const rec = await this.recordIn(tx, userId);
    return this.compiledVersion(userId, rec?.pos ?? 0, rec);
  }

  private compiledVersion(userId: string, pos: number, changes: PushRuleChanges | undefined): CompiledRuleset {
    const key = `${userId}@${pos}`;
    let rules = this.compiled.get(key);
    if (!rules) {
      rules = compileRuleset(buildRuleset(userId, changes));
      if (this.compiled.size >= MAX_CACHED) this.compiled.clear();
      this.compiled.set(key, rules);
    }
    return rules;
  }

  /**
   * The rules that judge events from stream position `oldest` on: the current ones, and the earlier versions when
   * some of those events came before the last change.
   */
  private async rulesAtIn(tx: ReadTx, userId: string, rec: PushRulesRecord | undefined, oldest: number): Promise<RulesAt> {
    const current = this.compiledVersion(userId, rec?.pos ?? 0, rec);
    if (!rec || oldest > rec.pos) return () => current;
    const rows = await tx.range<PushRuleChanges>(STORES.pushRules, { gte: [userId, 0], lte: [userId, Number.MAX_SAFE_INTEGER] });
    const versions = rows.map(([k, ch]) => ({ pos: Number(k[1]), ch }));
    return (pos) => {
      if (pos > rec.pos) return current;
      // The last change before the event; before the first kept one: the defaults, or the oldest kept if pruned.
      let v: { pos: number; ch: PushRuleChanges | undefined } | undefined;
      for (const x of versions) {
        if (x.pos < pos) v = x;
        else break;
      }
      v ??= rec.pruned && versions.length > 0 ? versions[0] : { pos: 0, ch: undefined };
      return this.compiledVersion(userId, v.pos, v.ch);
    };
  }

  /** What the conditions may ask about `roomId` for `userId`, as of the transaction's snapshot. */
  async roomContextIn(tx: ReadTx, roomId: string, userId: string): Promise<PushRoomContext> {
    const facts = await this.roomFactsIn(tx, roomId);
    if (!facts.displayNames.has(userId)) {
      const member = await currentStateEvent(tx, roomId, 'm.room.member', userId);
      const c = member && !member.redactedBy && isJsonObject(member.json.content) ? member.json.content : {};
      facts.displayNames.set(userId, typeof c.displayname === 'string' ? c.displayname : undefined);
    }
    const pl = facts.powerLevels ?? (facts.version ? powerLevelsFrom(undefined, facts.version) : undefined);
    return {
      userId,
      displayName: facts.displayNames.get(userId),
      memberCount: facts.memberCount,
      powerLevelOf: (u) => (facts.version ? powerLevelOf(u, facts.powerLevels, facts.creators, facts.version) : 0),
      notificationLevel: (key) => (pl ? notificationLevel(key, pl) : 50),
    };
  }

  private async roomFactsIn(tx: ReadTx, roomId: string): Promise<RoomFacts> {
    const room = await getRoom(tx, roomId);
    const stateGroup = room?.stateGroup ?? -1;
    const hit = this.rooms.get(roomId);
    if (hit && hit.stateGroup === stateGroup) return hit;
    const [members, plRec, createRec] = await Promise.all([
      roomMembers(tx, roomId),
      currentStateEvent(tx, roomId, 'm.room.power_levels', ''),
      currentStateEvent(tx, roomId, 'm.room.create', ''),
    ]);
    const version = room ? roomVersion(room.version) : undefined;
    const facts: RoomFacts = {
      stateGroup,
      memberCount: members.filter(([, m]) => m.membership === 'join').length,
      version,
      powerLevels: plRec && version ? powerLevelsFrom(pduOf(plRec, version), version) : undefined,
      creators: createRec && version ? roomCreators(pduOf(createRec, version), version) : [],
      displayNames: new Map(),
    };
    if (this.rooms.size >= MAX_CACHED) this.rooms.clear();
    this.rooms.set(roomId, facts);
    return facts;
  }

  /**
   * Unread notification counts of `userId` in a joined room as of stream position `pos` (see the module comment).
   * `threads`: count threads apart (RoomEventFilter `unread_thread_notifications`).
   *
   * A long-polling client asks again after every change, so the counts are memoised per user and room and the next
   * call reads only the events after the memo's position; a change of a read position, or a redaction of an event
   * the memo may have counted, means counting afresh. A count reads at most UNREAD_SCAN_LIMIT events back from the
   * newest when it starts afresh, and reports at most UNREAD_SCAN_LIMIT ("at least this many").
   */
  async unreadCountsIn(
    tx: ReadTx,
    userId: string,
    roomId: string,
    membership: UserRoomRecord,
    pos: number,
    threads: boolean,
    known?: TimelineRead,
    receiptsSince?: number,
  ): Promise<UnreadCounts> {
    const key = `${userId}\u0000${roomId}\u0000${threads ? 't' : ''}`;
    const rec = await this.recordIn(tx, userId);
    const memo = this.unread.get(key);
    const memoThreads = memo ? [...memo.counts.keys()].filter((t) => t !== MAIN) : [];
    const wanted = ['', MAIN, ...memoThreads];
    // No receipt of the room changed in (receiptsSince, pos] (the caller saw the stream): the memo's are current.
    const reuse =
      memo?.receipts !== undefined &&
      receiptsSince !== undefined &&
      memo.pos >= receiptsSince &&
      memo.pos <= pos &&
      wanted.every((t) => memo.receiptsRead?.has(t));
    const receipts = reuse ? new Map(memo.receipts) : await receiptPositionsIn(tx, roomId, userId, wanted);
    const receiptsRead = new Set(reuse ? memo.receiptsRead : wanted);
    const lower = Math.max(receipts.get('') ?? 0, membership.pos);
    const readPos = (part: string) => Math.max(lower, receipts.get(part) ?? 0);
    const sig = readSignature(lower, readPos(MAIN), memoThreads.map((t) => readPos(t)));
    const base = memo && memo.sig === sig && memo.pos <= pos ? memo : undefined;

    let next: UnreadMemo | undefined;
    if (base && base.pos === pos) next = base;
    else if (base) {
      const fresh = await this.scanUnread(tx, userId, roomId, rec, base.pos, pos, threads, receipts, readPos, known);
      // Stopped at the user's own event, or more new events than one count reads: the fresh count is the count.
      if (fresh.final || fresh.floor > base.pos) next = fresh;
      else if (!(await redactsCounted(tx, fresh.redacts, base))) {
        const counts = new Map(fresh.counts);
        for (const [part, c] of base.counts) {
          // The user's own event in a thread reads everything before it there.
          if (fresh.own.has(part)) continue;
          const sum = counts.get(part) ?? EMPTY_COUNTS();
          counts.set(part, {
            notification_count: sum.notification_count + c.notification_count,
            highlight_count: sum.highlight_count + c.highlight_count,
          });
        }
        next = { ...fresh, counts, floor: base.floor };
      }
    }
    next ??= await this.scanUnread(tx, userId, roomId, rec, lower, pos, threads, receipts, readPos, known);
    // The signature covers the read positions of the threads the memo now counts.
    const threadIds = [...next.counts.keys()].filter((t) => t !== MAIN);
    next.sig = readSignature(lower, readPos(MAIN), threadIds.map((t) => readPos(t)));
    next.redacts = [];
    for (const t of receipts.keys()) receiptsRead.add(t);
    next.receipts = receipts;
    next.receiptsRead = receiptsRead;
    this.unread.delete(key);
    if (this.unread.size >= MAX_CACHED) this.unread.delete(this.unread.keys().next().value!);
    this.unread.set(key, next);

    const capped = (c: NotificationCounts): NotificationCounts => ({
      notification_count: Math.min(c.notification_count, UNREAD_SCAN_LIMIT),
      highlight_count: Math.min(c.highlight_count, UNREAD_SCAN_LIMIT),
    });
    if (!threads) {
      const main = EMPTY_COUNTS();
      for (const c of next.counts.values()) {
        main.notification_count += c.notification_count;
        main.highlight_count += c.highlight_count;
      }
      return { main: capped(main) };
    }
    const out: UnreadCounts = { main: capped(next.counts.get(MAIN) ?? EMPTY_COUNTS()) };
    for (const [part, c] of next.counts) {
      if (part === MAIN || c.notification_count === 0) continue;
      (out.threads ??= {})[part] = capped(c);
    }
    return out;
  }

  /**
   * Counts the events in (from, to], newest first: at most UNREAD_SCAN_LIMIT timeline rows, stopping early at the
   * user's own main-timeline event when threads are not counted apart. Fetches the read positions of threads it
   * meets into `receipts`.
   */
  private async scanUnread(
    tx: ReadTx,
    userId: string,
    roomId: string,
    rulesRec: PushRulesRecord | undefined,
    from: number,
    to: number,
    threads: boolean,
    receipts: Map<string, number>,
    readPos: (part: string) => number,
    known?: TimelineRead,
  ): Promise<UnreadMemo> {
    const threadOf = threadFinder(tx);
    // Every field present from the start: unreadCountsIn fills in the receipts, and one object shape stays fast.
    const out: UnreadMemo = {
      pos: to,
      sig: '',
      counts: new Map(),
      own: new Set(),
      floor: from,
      final: false,
      redacts: [],
      receipts: undefined,
      receiptsRead: undefined,
    };
    const candidates: Array<{ rec: EventRecord; part: string; pos: number }> = [];
    let cursor = to;
    let scanned = 0;
    const batch = 50;
    // The caller's read of exactly this range, when short enough to be the first (and last) batch.
    let pre = known && known.roomId === roomId && known.from === from && known.to === to && known.rows.length < batch ? known : undefined;
    scan: while (cursor > from) {
      const rows = pre ? pre.rows : await timelineRange(tx, roomId, { from, to: cursor, reverse: true, limit: batch });
      if (rows.length === 0) break;
      const recs = pre ? pre.records : await getEvents(tx, rows.map(([, id]) => id));
      pre = undefined;
      for (let i = 0; i < rows.length; i++) {
        if (scanned === UNREAD_SCAN_LIMIT) {
          // Older events are not looked at: the count starts after the last one read.
          out.floor = i > 0 ? rows[i - 1][0] - 1 : cursor;
          break scan;
        }
        scanned++;
        const rec = recs[i];
        if (!rec || rec.rejected !== undefined || rec.softFailed) continue;
        const target = redactionTarget(rec.json);
        if (target !== undefined) out.redacts.push(target);
        if (rec.redactedBy !== undefined) continue;
        const part = (await threadOf(rec)) ?? MAIN;
        if (rec.json.sender === userId) {
          // Sending in the main timeline reads everything before it for a client that does not count threads.
          if (part === MAIN && !threads) {
            out.final = true;
            out.floor = rows[i][0];
            break scan;
          }
          out.own.add(part);
          continue;
        }
        if (!out.own.has(part)) candidates.push({ rec, part, pos: rows[i][0] });
      }
      if (rows.length < batch) break;
      cursor = rows[rows.length - 1][0] - 1;
    }
    const unknown = [...new Set(candidates.map((c) => c.part))].filter((p) => p !== MAIN && !receipts.has(p));
    if (unknown.length > 0) for (const [t, p] of await receiptPositionsIn(tx, roomId, userId, unknown)) receipts.set(t, p);
    const unread = candidates.filter((c) => c.pos > readPos(c.part));
    if (unread.length === 0) return out;

    const rulesAt = await this.rulesAtIn(tx, userId, rulesRec, Math.min(...unread.map((c) => c.pos)));
    const room = await this.roomContextIn(tx, roomId, userId);
    for (const c of unread) {
      const d = evaluatePushRules(rulesAt(c.pos), c.rec.json, room);
      if (!d?.notify) continue;
      let counts = out.counts.get(c.part);
      if (!counts) out.counts.set(c.part, (counts = EMPTY_COUNTS()));
      counts.notification_count++;
      if (d.highlight) counts.highlight_count++;
    }
    return out;
  }

  // ---- The API (pushrules.yaml)

  /** GET /pushrules/global/ — the user's rule set. */
  async getRuleset(principal: Principal): Promise<JsonObject> {
    checkUser(principal);
    const rec = await this.ctx.kv.read((tx) => this.recordIn(tx, principal.userId));
    return formatRuleset(buildRuleset(principal.userId, rec));
  }

  /** GET /pushrules/global/{kind}/{ruleId} */
  async getRule(principal: Principal, kind: string, ruleId: string): Promise<JsonObject> {
    const k = checkKind(kind);
    checkUser(principal);
    const rec = await this.ctx.kv.read((tx) => this.recordIn(tx, principal.userId));
    const found = buildRuleset(principal.userId, rec)[k].find((r) => r.rule_id === ruleId);
    if (!found) throw ruleNotFound();
    return formatRule(k, found);
  }

  /** GET /pushrules/global/{kind}/{ruleId}/enabled */
  async getEnabled(principal: Principal, kind: string, ruleId: string): Promise<JsonObject> {
    const r = await this.getRule(principal, kind, ruleId);
    return { enabled: r.enabled ?? false };
  }

  /** GET /pushrules/global/{kind}/{ruleId}/actions */
  async getActions(principal: Principal, kind: string, ruleId: string): Promise<JsonObject> {
    const r = await this.getRule(principal, kind, ruleId);
    return { actions: r.actions ?? [] };
  }

  /**
   * PUT /pushrules/global/{kind}/{ruleId} — creates or replaces a user rule. A new rule is enabled; a replaced one
   * keeps its `enabled`. Without before/after the rule becomes the most important of its kind (for a replaced
   * rule too, as Synapse does); `before` wins over `after`.
   */
  async putRule(
    principal: Principal,
    kind: string,
    ruleId: string,
    body: JsonObject,
    position: { before?: string; after?: string },
  ): Promise<void> {
    const k = checkKind(kind);
    checkUser(principal);
    if (ruleId.startsWith('.')) throw invalidParam('ruleId', "rule IDs starting with '.' are reserved for server-default rules");
    if (ruleId.includes('/') || ruleId.includes('\\')) throw invalidParam('ruleId', 'must not contain slashes or backslashes');
    if (k === 'room' && !isValidRoomId(ruleId)) throw invalidParam('ruleId', 'a room rule ID must be a room ID');
    if (k === 'sender' && !isValidUserId(ruleId)) throw invalidParam('ruleId', 'a sender rule ID must be a user ID');
    const actions = checkActions(body.actions);
    const rule: UserPushRule = { rule_id: ruleId, enabled: true, actions };
    if (k === 'content') {
      if (body.pattern === undefined) throw missingParam('pattern', 'A content rule needs a pattern');
      rule.pattern = body.pattern as string; // the schema checked the type
    }
    if (k === 'override' || k === 'underride') {
      rule.conditions = (Array.isArray(body.conditions) ? body.conditions : []) as PushCondition[];
    }
    for (const [name, anchor] of Object.entries(position)) {
      if (anchor !== undefined && anchor.startsWith('.')) {
        throw invalidParam(name, 'rules cannot be placed relative to a server-default rule');
      }
    }

    await this.update(principal.userId, (ch) => {
      const list = ch.rules[k];
      const at = list.findIndex((r) => r.rule_id === ruleId);
      if (at >= 0) {
        rule.enabled = list[at].enabled;
        list.splice(at, 1);
      }
      let index = 0;
      const anchorId = position.before ?? position.after;
      if (anchorId !== undefined) {
        const i = list.findIndex((r) => r.rule_id === anchorId);
        if (i < 0) throw notFound(`before/after rule not found: ${anchorId}`);
        index = position.before !== undefined ? i : i + 1;
      }
      list.splice(index, 0, rule);
    });
  }

  /** DELETE /pushrules/global/{kind}/{ruleId} — only user rules can be deleted. */
  async deleteRule(principal: Principal, kind: string, ruleId: string): Promise<void> {
    const k = checkKind(kind);
    checkUser(principal);
    await this.update(principal.userId, (ch) => {
      const list = ch.rules[k];
      const at = list.findIndex((r) => r.rule_id === ruleId);
      if (at < 0) throw ruleNotFound();
      list.splice(at, 1);
    });
  }

  /** PUT /pushrules/global/{kind}/{ruleId}/enabled */
  setEnabled(principal: Principal, kind: string, ruleId: string, enabled: boolean): Promise<void> {
    return this.changeRule(principal, kind, ruleId, { enabled });
  }

  /** PUT /pushrules/global/{kind}/{ruleId}/actions — server-default rules' actions can be changed too. */
  setActions(principal: Principal, kind: string, ruleId: string, actions: JsonValue | undefined): Promise<void> {
    return this.changeRule(principal, kind, ruleId, { actions: checkActions(actions) });
  }

  private async changeRule(
    principal: Principal,
    kind: string,
    ruleId: string,
    change: { enabled?: boolean; actions?: JsonValue[] },
  ): Promise<void> {
    const k = checkKind(kind);
    checkUser(principal);
    const userId = principal.userId;
    await this.update(userId, (ch) => {
      const own = ch.rules[k].find((r) => r.rule_id === ruleId);
      if (own) {
        Object.assign(own, change);
        return;
      }
      // A server-default rule: remember only what changed.
      const isDefault = buildRuleset(userId, undefined)[k].some((r) => r.rule_id === ruleId);
      if (!isDefault) throw ruleNotFound();
      const key = `${k}/${ruleId}`;
      ch.defaults[key] = { ...ch.defaults[key], ...change };
    });
  }

  /** Read-modify-write of the user's record in one transaction, with its stream entry; notifies after the commit. */
  private async update(userId: string, change: (ch: PushRuleChanges) => void): Promise<void> {
    const pos = await this.ctx.kv.write(async (tx) => {
      const old = await this.recordIn(tx, userId);
      const ch: PushRuleChanges = old ? { rules: old.rules, defaults: old.defaults } : emptyChanges();
      change(ch);
      return writeRecord(tx, userId, ch, old?.pruned === true);
    });
    this.ctx.notifier.notify(pos);
  }

  // ---- GET /notifications (notifications.yaml)

  async notifications(
    principal: Principal,
    opts: { from?: string; limit: number; onlyHighlight: boolean },
  ): Promise<JsonObject> {
    checkUser(principal);
    const userId = principal.userId;
    let start: number | undefined;
    if (opts.from !== undefined) {
      if (!/^\d{1,15}$/.test(opts.from)) throw invalidParam('from', 'is not a token this server issued');
      start = Number(opts.from);
    }
    const now = this.ctx.clock.now();
    return this.ctx.kv.read(async (tx) => {
      const top = start ?? (await currentPosition(tx));
      const joined = new Map((await userRooms(tx, userId, 'join')).map(([roomId, ur]) => [roomId, ur]));
      const found: Array<{ rec: EventRecord; decision: PushDecision }> = [];
      // Each event is judged by the rules of its time.
      const rulesAt = await this.rulesAtIn(tx, userId, await this.recordIn(tx, userId), 0);
      const contexts = new Map<string, PushRoomContext>();
      const batch = 200;
      let cursor = top;
      let scanned = 0;
      while (found.length < opts.limit && cursor > 0 && scanned < NOTIFICATIONS_SCAN_LIMIT) {
        const rows = await tx.range<StreamEntry>(STORES.stream, { lte: [cursor], reverse: true, limit: batch });
        const picked = rows.filter(([key, e]) => e.kind === 'event' && (joined.get(e.roomId)?.pos ?? Infinity) < Number(key[0]));
        const recs = await getEvents(tx, picked.map(([, e]) => (e as { eventId: string }).eventId));
        let stoppedAt: number | undefined;
        for (let i = 0; i < picked.length; i++) {
          const rec = recs[i];
          if (!rec || rec.rejected !== undefined || rec.softFailed || rec.redactedBy !== undefined) continue;
          if (rec.json.sender === userId) continue;
          let room = contexts.get(rec.roomId);
          if (!room) contexts.set(rec.roomId, (room = await this.roomContextIn(tx, rec.roomId, userId)));
          const decision = evaluatePushRules(rulesAt(rec.pos ?? 0), rec.json, room);
          if (!decision?.notify || (opts.onlyHighlight && !decision.highlight)) continue;
          found.push({ rec, decision });
          if (found.length === opts.limit) {
            stoppedAt = Number(picked[i][0][0]);
            break;
          }
        }
        scanned += rows.length;
        if (stoppedAt !== undefined) cursor = stoppedAt - 1;
        else if (rows.length < batch) cursor = 0;
        else cursor = Number(rows[rows.length - 1][0][0]) - 1;
      }
      const readUpTo = new Map<string, number>();
      for (const roomId of new Set(found.map((f) => f.rec.roomId))) {
        const r = await receiptPositionsIn(tx, roomId, userId, ['', 'main']);
        readUpTo.set(roomId, Math.max(r.get('') ?? 0, r.get('main') ?? 0));
      }
      const events = await clientEvents(tx, found.map((f) => f.rec), { forUserId: userId, now });
      const notifications = found.map((f, i) => {
        const event = events[i] as unknown as JsonObject;
        delete event.room_id;
        return {
          actions: f.decision.actions,
          event,
          read: (f.rec.pos ?? 0) <= (readUpTo.get(f.rec.roomId) ?? 0),
          room_id: f.rec.roomId,
          ts: typeof f.rec.json.origin_server_ts === 'number' ? f.rec.json.origin_server_ts : 0,
        };
      });
      const body: JsonObject = { notifications };
      if (cursor > 0) body.next_token = String(cursor);
      return body;
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

/** The content of the user's `m.push_rules` account data: `{ global: ruleset }`. */
export async function pushRulesContentIn(tx: ReadTx, userId: string): Promise<JsonObject> {
  const rec = await tx.get<PushRulesRecord>(STORES.pushRules, [userId]);
  return { global: formatRuleset(buildRuleset(userId, rec)) };
}

async function writeRecord(tx: WriteTx, userId: string, ch: PushRuleChanges, pruned: boolean): Promise<number> {
  const pos = await allocatePosition(tx);
  const version: PushRuleChanges = { rules: ch.rules, defaults: ch.defaults };
  await tx.put(STORES.pushRules, [userId, pos], version);
  const versions = { gte: [userId, 0], lte: [userId, Number.MAX_SAFE_INTEGER] };
  const extra = (await tx.count(STORES.pushRules, versions)) - MAX_RULE_VERSIONS;
  if (extra > 0) {
    for (const [key] of await tx.range(STORES.pushRules, { ...versions, limit: extra })) await tx.delete(STORES.pushRules, key);
    pruned = true;
  }
  const rec: PushRulesRecord = { ...version, pos };
  if (pruned) rec.pruned = true;
  await tx.put(STORES.pushRules, [userId], rec);
  const entry: StreamEntry = { kind: 'account_data', userId, dataType: PUSH_RULES_TYPE };
  await tx.put(STORES.stream, [pos], entry);
  return pos;
}

/**
 * The user's read-receipt positions in a room per thread ID ('' unthreaded, 'main', or a thread root): the later
 * of m.read and m.read.private (push.md "Marking notifications as read").
 */
async function receiptPositionsIn(
  tx: ReadTx,
  roomId: string,
  userId: string,
  threadIds: readonly string[],
): Promise<Map<string, number>> {
  const keys = threadIds.flatMap((t) => [
    [roomId, 'm.read', t, userId],
    [roomId, 'm.read.private', t, userId],
  ]);
  const recs = await tx.getMany<ReceiptRecord>(STORES.receipts, keys);
  const out = new Map<string, number>();
  threadIds.forEach((t, i) => {
    const best = Math.max(recs[2 * i]?.eventPos ?? 0, recs[2 * i + 1]?.eventPos ?? 0);
    if (best > 0) out.set(t, best);
  });
  return out;
}

/** The event a redaction redacts (top level before room version 11, in content from 11). */
function redactionTarget(json: JsonObject): string | undefined {
  if (json.type !== 'm.room.redaction') return undefined;
  if (typeof json.redacts === 'string') return json.redacts;
  const content = isJsonObject(json.content) ? json.content : {};
  return typeof content.redacts === 'string' ? content.redacts : undefined;
}

/** Whether one of `eventIds` lies in the range a memo counted (so it may be in its counts). */
async function redactsCounted(tx: ReadTx, eventIds: readonly string[], memo: UnreadMemo): Promise<boolean> {
  if (eventIds.length === 0) return false;
  const recs = await getEvents(tx, eventIds);
  return recs.some((r) => r?.pos !== undefined && r.pos > memo.floor && r.pos <= memo.pos);
}

function relationOf(json: JsonObject): { relType?: string; eventId: string } | undefined {
  const content = isJsonObject(json.content) ? json.content : undefined;
  const rel = content && isJsonObject(content['m.relates_to']) ? content['m.relates_to'] : undefined;
  if (!rel || typeof rel.event_id !== 'string') return undefined;
  return { relType: typeof rel.rel_type === 'string' ? rel.rel_type : undefined, eventId: rel.event_id };
}

/**
 * The thread root an event belongs to, or undefined for the main timeline: an m.thread relation names it; another
 * relation (a reaction, an edit) belongs to the thread of what it relates to, up to THREAD_HOPS hops.
 */
function threadFinder(tx: ReadTx): (rec: EventRecord) => Promise<string | undefined> {
  const seen = new Map<string, EventRecord | null>();
  return async (rec) => {
    let json = rec.json;
    for (let hop = 0; hop < THREAD_HOPS; hop++) {
      const rel = relationOf(json);
      if (!rel) return undefined;
      if (rel.relType === 'm.thread') return rel.eventId;
      let target = seen.get(rel.eventId);
      if (target === undefined) {
        target = (await getEvent(tx, rel.eventId)) ?? null;
        seen.set(rel.eventId, target);
      }
      if (!target || target.roomId !== rec.roomId) return undefined;
      json = target.json;
    }
    return undefined;
  };
}

function checkKind(kind: string): PushRuleKind {
  if (!isPushRuleKind(kind)) throw invalidParam('kind', 'must be one of override, content, room, sender, underride');
  return kind;
}

/** Push rules are not among the endpoints guests may use (guest_access.md), as in Synapse. */
function checkUser(principal: Principal): void {
  if (principal.isGuest) throw guestAccessForbidden();
}

function checkActions(v: JsonValue | undefined): JsonValue[] {
  if (!Array.isArray(v)) throw missingParam('actions', "Missing required field 'actions'");
  const problem = actionsProblem(v);
  if (problem) throw invalidParam('actions', problem);
  // Kept as given: evaluation ignores historical actions, and clients look for them (matrix-js-sdk finds a muted
  // room by its rule's `dont_notify`).
  return v;
}

function ruleNotFound() {
  return notFound('The push rule was not found.');
}
