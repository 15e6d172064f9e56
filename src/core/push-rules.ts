/**
 * Push rules: the server-default rule set of a user, merging the user's own changes into it, and evaluating a rule
 * set against an event (conditions, glob matching, actions). Pure: the caller supplies the room facts a condition
 * needs (member count, the user's display name, power levels).
 *
 * Spec: shared/matrix-spec/content/client-server-api/modules/push.md ("Push Rules", "Conditions", "Actions",
 * "Predefined Rules"); content/appendices.md ("Glob-style matching", "Dot-separated property paths");
 * data/api/client-server/definitions/push_rule.yaml, push_condition.yaml, push_ruleset.yaml.
 *
 * ## Choices
 * - The legacy body-based mention rules (`.m.rule.contains_display_name`, `.m.rule.roomnotif` and the content rule
 *   `.m.rule.contains_user_name`) left the spec's default set in v1.17; Synapse still ships them and clients still
 *   show them, so they are in the default set, and — as the spec (MSC3952) and Synapse do — they are skipped for
 *   events whose content has `m.mentions`, so intentional mentions are the only mentions for clients that send them.
 * - Historical actions (`dont_notify`, `coalesce`) are ignored on evaluation but kept in stored rules: clients
 *   still recognise rules by them (matrix-js-sdk finds a muted room by its `dont_notify` rule).
 * - Within one rule, conditions are all checked (their order does not matter for the result).
 */
import type { JsonObject, JsonValue } from './json.js';
import { isJsonObject } from './json.js';

export const PUSH_RULE_KINDS = ['override', 'content', 'room', 'sender', 'underride'] as const;
export type PushRuleKind = (typeof PUSH_RULE_KINDS)[number];

export function isPushRuleKind(s: string): s is PushRuleKind {
  return (PUSH_RULE_KINDS as readonly string[]).includes(s);
}

/** push_condition.yaml. Unknown kinds are kept (and never match). */
export interface PushCondition {
  kind: string;
  key?: string;
  pattern?: string;
  is?: string;
  value?: JsonValue;
  [extra: string]: JsonValue | undefined;
}

/** push_rule.yaml, as served. */
export interface PushRule {
  rule_id: string;
  default: boolean;
  enabled: boolean;
  actions: JsonValue[];
  conditions?: PushCondition[];
  pattern?: string;
}

/** push_ruleset.yaml: rules of each kind, most important first. */
export type PushRuleset = Record<PushRuleKind, PushRule[]>;

/** A rule the user defined (stored without `default`). */
export interface UserPushRule {
  rule_id: string;
  enabled: boolean;
  actions: JsonValue[];
  conditions?: PushCondition[];
  pattern?: string;
}

/** What a user changed: their own rules, and `enabled`/`actions` of server-default rules. */
export interface PushRuleChanges {
  rules: Record<PushRuleKind, UserPushRule[]>;
  /** By `${kind}/${ruleId}`. */
  defaults: Record<string, { enabled?: boolean; actions?: JsonValue[] }>;
}

export function emptyChanges(): PushRuleChanges {
  return { rules: { override: [], content: [], room: [], sender: [], underride: [] }, defaults: {} };
}

// ---------------------------------------------------------------------------------------------------------------
// Default rules (push.md "Predefined Rules")

const SOUND_DEFAULT = { set_tweak: 'sound', value: 'default' };
const HIGHLIGHT = { set_tweak: 'highlight' };

function rule(rule_id: string, conditions: PushCondition[], actions: JsonValue[], enabled = true): PushRule {
  return { rule_id, default: true, enabled, conditions, actions };
}
const match = (key: string, pattern: string): PushCondition => ({ kind: 'event_match', key, pattern });

/** Rule IDs of the legacy body-based mention rules, skipped when the event has `m.mentions` (MSC3952). */
export const LEGACY_MENTION_RULES: ReadonlySet<string> = new Set([
  '.m.rule.contains_display_name',
  '.m.rule.roomnotif',
  '.m.rule.contains_user_name',
]);

/** The server-default rule set for `userId`, in the spec's order. */
export function defaultPushRules(userId: string): PushRuleset {
  const localpart = userId.startsWith('@') && userId.includes(':') ? userId.slice(1, userId.indexOf(':')) : userId;
  return {
    override: [
      rule('.m.rule.master', [], [], false),
      rule('.m.rule.suppress_notices', [match('content.msgtype', 'm.notice')], []),
      rule(
        '.m.rule.invite_for_me',
        [match('type', 'm.room.member'), match('content.membership', 'invite'), match('state_key', userId)],
        ['notify', SOUND_DEFAULT],
      ),
      rule('.m.rule.member_event', [match('type', 'm.room.member')], []),
      rule(
        '.m.rule.is_user_mention',
        [{ kind: 'event_property_contains', key: 'content.m\\.mentions.user_ids', value: userId }],
        ['notify', SOUND_DEFAULT, HIGHLIGHT],
      ),
      rule('.m.rule.contains_display_name', [{ kind: 'contains_display_name' }], ['notify', SOUND_DEFAULT, HIGHLIGHT]),
      rule(
        '.m.rule.is_room_mention',
        [
          { kind: 'event_property_is', key: 'content.m\\.mentions.room', value: true },
          { kind: 'sender_notification_permission', key: 'room' },
        ],
        ['notify', HIGHLIGHT],
      ),
      rule(
        '.m.rule.roomnotif',
        [match('content.body', '@room'), { kind: 'sender_notification_permission', key: 'room' }],
        ['notify', HIGHLIGHT],
      ),
      rule('.m.rule.tombstone', [match('type', 'm.room.tombstone'), match('state_key', '')], ['notify', HIGHLIGHT]),
      rule('.m.rule.reaction', [match('type', 'm.reaction')], []),
      rule('.m.rule.room.server_acl', [match('type', 'm.room.server_acl'), match('state_key', '')], []),
      rule(
        '.m.rule.suppress_edits',
        [{ kind: 'event_property_is', key: 'content.m\\.relates_to.rel_type', value: 'm.replace' }],
        [],
      ),
    ],
    content: [
      {
        rule_id: '.m.rule.contains_user_name',
        default: true,
        enabled: true,
        pattern: localpart,
        actions: ['notify', SOUND_DEFAULT, HIGHLIGHT],
      },
    ],
    room: [],
    sender: [],
    underride: [
      rule('.m.rule.call', [match('type', 'm.call.invite')], ['notify', { set_tweak: 'sound', value: 'ring' }]),
      rule(
        '.m.rule.encrypted_room_one_to_one',
        [{ kind: 'room_member_count', is: '2' }, match('type', 'm.room.encrypted')],
        ['notify', SOUND_DEFAULT],
      ),
      rule(
        '.m.rule.room_one_to_one',
        [{ kind: 'room_member_count', is: '2' }, match('type', 'm.room.message')],
        ['notify', SOUND_DEFAULT],
      ),
      rule('.m.rule.message', [match('type', 'm.room.message')], ['notify']),
      rule('.m.rule.encrypted', [match('type', 'm.room.encrypted')], ['notify']),
    ],
  };
}

/**
 * The user's rule set: server-default rules with the user's `enabled`/`actions` changes applied, and the user's
 * own rules before the server-default ones of their kind — except `.m.rule.master`, which stays above everything
 * (push.md "Predefined Rules").
 */
export function buildRuleset(userId: string, changes: PushRuleChanges | undefined): PushRuleset {
  const defaults = defaultPushRules(userId);
  const out = {} as PushRuleset;
  for (const kind of PUSH_RULE_KINDS) {
    const own: PushRule[] = (changes?.rules[kind] ?? []).map((r) => ({ ...r, default: false }));
    const base = defaults[kind].map((r) => {
      const ch = changes?.defaults[`${kind}/${r.rule_id}`];
      if (!ch) return r;
      return { ...r, enabled: ch.enabled ?? r.enabled, actions: ch.actions ?? r.actions };
    });
    if (kind === 'override') {
      const [master, ...rest] = base;
      out[kind] = [master, ...own, ...rest];
    } else {
      out[kind] = [...own, ...base];
    }
  }
  return out;
}

/** A rule as the API shows it: room, sender and content rules have no `conditions`; only content rules a `pattern`. */
export function formatRule(kind: PushRuleKind, r: PushRule): JsonObject {
  const out: JsonObject = { rule_id: r.rule_id, default: r.default, enabled: r.enabled, actions: r.actions };
  if (kind === 'override' || kind === 'underride') out.conditions = (r.conditions ?? []) as JsonValue[];
  if (kind === 'content' && r.pattern !== undefined) out.pattern = r.pattern;
  return out;
}

export function formatRuleset(rs: PushRuleset): JsonObject {
  const out: JsonObject = {};
  for (const kind of PUSH_RULE_KINDS) out[kind] = rs[kind].map((r) => formatRule(kind, r));
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Actions

/** The historical actions, ignored everywhere (push.md "Historical Actions"). */
const HISTORICAL_ACTIONS = new Set(['dont_notify', 'coalesce']);

/** Why an actions array is not acceptable, or undefined. */
export function actionsProblem(actions: readonly JsonValue[]): string | undefined {
  for (const a of actions) {
    if (typeof a === 'string') {
      if (a !== 'notify' && !HISTORICAL_ACTIONS.has(a)) return `unknown action '${a}'`;
      continue;
    }
    if (!isJsonObject(a)) return 'an action must be a string or an object';
    const tweak = a.set_tweak;
    if (typeof tweak !== 'string' || tweak === '') return "an object action needs a 'set_tweak' name";
    if (tweak === 'highlight' && a.value !== undefined && typeof a.value !== 'boolean') {
      return 'the highlight tweak takes a boolean';
    }
    if (tweak === 'sound' && typeof a.value !== 'string') return 'the sound tweak takes a string value';
  }
  return undefined;
}

/** Actions with the historical ones removed. */
export function stripHistoricalActions(actions: readonly JsonValue[]): JsonValue[] {
  return actions.filter((a) => !(typeof a === 'string' && HISTORICAL_ACTIONS.has(a)));
}

export interface ActionSummary {
  notify: boolean;
  /** The highlight tweak: true when given without a value; false when absent. */
  highlight: boolean;
  sound?: string;
}

export function summariseActions(actions: readonly JsonValue[]): ActionSummary {
  const out: ActionSummary = { notify: false, highlight: false };
  for (const a of actions) {
    if (a === 'notify') out.notify = true;
    else if (isJsonObject(a)) {
      if (a.set_tweak === 'highlight') out.highlight = a.value === undefined ? true : a.value === true;
      else if (a.set_tweak === 'sound' && typeof a.value === 'string') out.sound = a.value;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Property paths and globs (appendices.md)

/** `content.m\.relates_to.rel_type` → ['content', 'm.relates_to', 'rel_type']; `\\` is a backslash, other escapes stay. */
export function splitPropertyPath(path: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < path.length; i++) {
    const c = path[i];
    if (c === '\\' && (path[i + 1] === '.' || path[i + 1] === '\\')) cur += path[++i];
    else if (c === '.') {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** The value at a property path, or undefined when any step is missing. */
export function propertyAt(event: JsonObject, path: readonly string[]): JsonValue | undefined {
  let v: JsonValue | undefined = event;
  for (const k of path) {
    if (!isJsonObject(v) || !Object.hasOwn(v, k)) return undefined;
    v = v[k];
  }
  return v;
}

const REGEX_SYNTAX = /[\\^$.*+?()[\]{}|/]/g;
const WORD_CHAR = 'A-Za-z0-9_';

/**
 * A glob (`*` any run of characters, `?` exactly one) as a case-insensitive RegExp. `word`: the match may be any
 * substring that starts and ends at a word boundary (start/end of the value, or a character outside
 * [A-Za-z0-9_]); otherwise it must match the whole value.
 */
export function globToRegExp(glob: string, word = false): RegExp {
  let src = '';
  for (const ch of glob) {
    if (ch === '*') src += '.*';
    else if (ch === '?') src += '.';
    else src += ch.replace(REGEX_SYNTAX, '\\$&');
  }
  const body = word ? `(?<![${WORD_CHAR}])${src}(?![${WORD_CHAR}])` : `^${src}$`;
  return new RegExp(body, 'isu');
}

// ---------------------------------------------------------------------------------------------------------------
// Evaluation

/** What the conditions may ask about the room, as of evaluation. */
export interface PushRoomContext {
  /** The user the rules belong to. */
  readonly userId: string;
  /** The user's display name in the room (contains_display_name). */
  readonly displayName?: string;
  /** Joined members of the room (room_member_count). */
  readonly memberCount: number;
  /** A user's power level in the room (sender_notification_permission). */
  powerLevelOf(userId: string): number;
  /** The level `notifications[key]` requires (50 unless set). */
  notificationLevel(key: string): number;
}

type Check = (event: JsonObject, ctx: PushRoomContext) => boolean;

interface CompiledRule {
  kind: PushRuleKind;
  ruleId: string;
  actions: JsonValue[];
  legacyMention: boolean;
  checks: Check[];
}

/** A rule set prepared for evaluating many events (regular expressions built once). */
export interface CompiledRuleset {
  readonly rules: readonly CompiledRule[];
}

const NEVER: Check = () => false;

function isScalar(v: JsonValue | undefined): v is string | number | boolean | null {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  return typeof v === 'number' && Number.isSafeInteger(v);
}

const MEMBER_COUNT = /^(==|<=|>=|<|>)?([0-9]+)$/;
const displayNameRegExps = new Map<string, RegExp>();

function displayNameRegExp(name: string): RegExp {
  let re = displayNameRegExps.get(name);
  if (!re) {
    // The display name is matched as text, not as a glob.
    re = new RegExp(`(?<![${WORD_CHAR}])${name.replace(REGEX_SYNTAX, '\\$&')}(?![${WORD_CHAR}])`, 'iu');
    if (displayNameRegExps.size > 1000) displayNameRegExps.clear();
    displayNameRegExps.set(name, re);
  }
  return re;
}

/** One condition as a check; a malformed or unknown condition never matches (push.md "Conditions"). */
export function compileCondition(c: PushCondition): Check {
  switch (c.kind) {
    case 'event_match': {
      if (typeof c.key !== 'string' || typeof c.pattern !== 'string') return NEVER;
      const path = splitPropertyPath(c.key);
      const re = globToRegExp(c.pattern, c.key === 'content.body');
      return (event) => {
        const v = propertyAt(event, path);
        return typeof v === 'string' && re.test(v);
      };
    }
    case 'event_property_is': {
      if (typeof c.key !== 'string' || !isScalar(c.value)) return NEVER;
      const path = splitPropertyPath(c.key);
      const want = c.value;
      return (event) => {
        const v = propertyAt(event, path);
        return isScalar(v) && v === want;
      };
    }
    case 'event_property_contains': {
      if (typeof c.key !== 'string' || !isScalar(c.value)) return NEVER;
      const path = splitPropertyPath(c.key);
      const want = c.value;
      return (event) => {
        const v = propertyAt(event, path);
        return Array.isArray(v) && v.some((x) => isScalar(x) && x === want);
      };
    }
    case 'contains_display_name':
      return (event, ctx) => {
        const body = propertyAt(event, ['content', 'body']);
        const name = ctx.displayName;
        if (typeof body !== 'string' || !name) return false;
        return displayNameRegExp(name).test(body);
      };
    case 'room_member_count': {
      const m = typeof c.is === 'string' ? MEMBER_COUNT.exec(c.is) : null;
      if (!m) return NEVER;
      const n = Number(m[2]);
      switch (m[1] ?? '==') {
        case '==':
          return (_e, ctx) => ctx.memberCount === n;
        case '<':
          return (_e, ctx) => ctx.memberCount < n;
        case '>':
          return (_e, ctx) => ctx.memberCount > n;
        case '<=':
          return (_e, ctx) => ctx.memberCount <= n;
        default:
          return (_e, ctx) => ctx.memberCount >= n;
      }
    }
    case 'sender_notification_permission': {
      if (typeof c.key !== 'string' || c.key === '') return NEVER;
      const key = c.key;
      return (event, ctx) => {
        const sender = event.sender;
        return typeof sender === 'string' && ctx.powerLevelOf(sender) >= ctx.notificationLevel(key);
      };
    }
    default:
      return NEVER;
  }
}

/** Prepares the enabled rules of a rule set, in evaluation order: override → content → room → sender → underride. */
export function compileRuleset(rs: PushRuleset): CompiledRuleset {
  const rules: CompiledRule[] = [];
  for (const kind of PUSH_RULE_KINDS) {
    for (const r of rs[kind]) {
      if (!r.enabled) continue;
      let checks: Check[];
      switch (kind) {
        case 'override':
        case 'underride':
          checks = (r.conditions ?? []).map(compileCondition);
          break;
        case 'content':
          checks = [typeof r.pattern === 'string' ? compileCondition(match('content.body', r.pattern)) : NEVER];
          break;
        case 'room':
          checks = [compileCondition({ kind: 'event_property_is', key: 'room_id', value: r.rule_id })];
          break;
        case 'sender':
          checks = [compileCondition({ kind: 'event_property_is', key: 'sender', value: r.rule_id })];
          break;
      }
      rules.push({
        kind,
        ruleId: r.rule_id,
        actions: stripHistoricalActions(r.actions),
        legacyMention: r.default && LEGACY_MENTION_RULES.has(r.rule_id),
        checks,
      });
    }
  }
  return { rules };
}

export interface PushDecision extends ActionSummary {
  kind: PushRuleKind;
  ruleId: string;
  actions: JsonValue[];
}

/**
 * The first enabled rule that matches `event` (wire JSON, with `room_id`), and what its actions mean; undefined when
 * none matches. The caller leaves out the user's own events (push.md: never notify for them).
 */
export function evaluatePushRules(rs: CompiledRuleset, event: JsonObject, ctx: PushRoomContext): PushDecision | undefined {
  const content = event.content;
  const hasMentions = isJsonObject(content) && Object.hasOwn(content, 'm.mentions');
  for (const r of rs.rules) {
    if (r.legacyMention && hasMentions) continue;
    if (r.checks.every((check) => check(event, ctx))) {
      return { kind: r.kind, ruleId: r.ruleId, actions: r.actions, ...summariseActions(r.actions) };
    }
  }
  return undefined;
}
