/**
 * Push rule evaluation (src/core/push-rules.ts): every condition kind with the spec's examples (push.md
 * "Conditions"), every server-default rule, rule order and kinds, merging a user's changes, and actions.
 */
import { describe, expect, test } from 'vitest';
import type { JsonObject } from '../../../src/core/json.js';
import type { PushCondition, PushRoomContext, PushRuleChanges } from '../../../src/core/push-rules.js';
import {
  actionsProblem,
  buildRuleset,
  compileCondition,
  compileRuleset,
  defaultPushRules,
  emptyChanges,
  evaluatePushRules,
  formatRuleset,
  globToRegExp,
  splitPropertyPath,
  stripHistoricalActions,
  summariseActions,
} from '../../../src/core/push-rules.js';

const ME = '@alice:example.org';
const OTHER = '@bob:example.org';
const ROOM = '!room:example.org';

function room(over: Partial<PushRoomContext> = {}): PushRoomContext {
  return {
    userId: ME,
    displayName: 'Alice Liddell',
    memberCount: 5,
    powerLevelOf: (u) => (u === '@admin:example.org' ? 100 : 0),
    notificationLevel: (key) => (key === 'room' ? 50 : 50),
    ...over,
  };
}

function ev(fields: JsonObject): JsonObject {
  return { room_id: ROOM, sender: OTHER, type: 'm.room.message', event_id: '$e', content: {}, ...fields };
}
const text = (body: string, extra: JsonObject = {}) => ev({ content: { msgtype: 'm.text', body, ...extra } });

const matches = (c: PushCondition, event: JsonObject, ctx = room()) => compileCondition(c)(event, ctx);

/** Which default rule decides an event, with the default rule set of ME. */
function decide(event: JsonObject, ctx = room(), changes?: PushRuleChanges) {
  return evaluatePushRules(compileRuleset(buildRuleset(ME, changes)), event, ctx);
}

describe('property paths and globs (appendices)', () => {
  test('dot-separated paths with escapes', () => {
    expect(splitPropertyPath('content.body')).toEqual(['content', 'body']);
    expect(splitPropertyPath('content.m\\.relates_to.rel_type')).toEqual(['content', 'm.relates_to', 'rel_type']);
    expect(splitPropertyPath('content.m\\\\foo')).toEqual(['content', 'm\\foo']);
    // Other escapes are kept as a literal backslash.
    expect(splitPropertyPath('content.a\\xb')).toEqual(['content', 'a\\xb']);
  });

  test('* matches any run, ? exactly one character, case-insensitively, whole value', () => {
    const re = globToRegExp('lunc?*');
    expect(re.test('Lunch plans')).toBe(true);
    expect(re.test('LUNCH')).toBe(true);
    expect(re.test(' lunch')).toBe(false);
    expect(re.test('lunc')).toBe(false);
    expect(globToRegExp('m.notice').test('mxnotice')).toBe(false);
    expect(globToRegExp('a+b(c)').test('A+B(C)')).toBe(true);
  });

  test('word mode matches a substring between word boundaries', () => {
    const re = globToRegExp('ex*ple', true);
    expect(re.test('An example event.')).toBe(true);
    expect(re.test('exple')).toBe(true);
    expect(re.test('An exciting triple-whammy')).toBe(true);
    expect(re.test('examples')).toBe(false);
    expect(re.test('reexample')).toBe(false);
  });
});

describe('conditions', () => {
  test('event_match: glob over the whole value; absent or non-string never matches', () => {
    const c: PushCondition = { kind: 'event_match', key: 'content.topic', pattern: 'lunc?*' };
    const topic = (t: unknown) => ev({ type: 'm.room.topic', state_key: '', content: { topic: t } as JsonObject });
    expect(matches(c, topic('Lunch plans'))).toBe(true);
    expect(matches(c, topic('LUNCH'))).toBe(true);
    expect(matches(c, topic(' lunch'))).toBe(false);
    expect(matches(c, topic('lunc'))).toBe(false);
    expect(matches(c, topic(null))).toBe(false);
    expect(matches({ kind: 'event_match', key: 'content.nothing', pattern: '*' }, topic('x'))).toBe(false);
  });

  test('event_match on content.body matches words, not the whole body', () => {
    const c: PushCondition = { kind: 'event_match', key: 'content.body', pattern: 'ex*ple' };
    expect(matches(c, text('An example event.'))).toBe(true);
    expect(matches(c, text('An exciting triple-whammy'))).toBe(true);
    expect(matches(c, text('counterexamples'))).toBe(false);
  });

  test('event_match without key or pattern never matches', () => {
    expect(matches({ kind: 'event_match', key: 'type' }, text('x'))).toBe(false);
    expect(matches({ kind: 'event_match', pattern: '*' }, text('x'))).toBe(false);
  });

  test('event_property_is: exact, typed, scalar only', () => {
    const c: PushCondition = { kind: 'event_property_is', key: 'content.m\\.federate', value: true };
    const create = (v: unknown) => ev({ type: 'm.room.create', state_key: '', content: { 'm.federate': v } as JsonObject });
    expect(matches(c, create(true))).toBe(true);
    expect(matches(c, create('true'))).toBe(false);
    expect(matches(c, create(1))).toBe(false);
    expect(matches({ kind: 'event_property_is', key: 'content.n', value: null }, ev({ content: { n: null } }))).toBe(true);
    expect(matches({ kind: 'event_property_is', key: 'content.n', value: 3 }, ev({ content: { n: 3 } }))).toBe(true);
    expect(matches({ kind: 'event_property_is', key: 'content.n', value: null }, ev({ content: {} }))).toBe(false);
    // Compound values never match.
    expect(matches({ kind: 'event_property_is', key: 'content.n', value: [1] as never }, ev({ content: { n: [1] } }))).toBe(false);
  });

  test('event_property_contains: an array holding the exact value', () => {
    const c: PushCondition = { kind: 'event_property_contains', key: 'content.alt_aliases', value: '#myroom:example.com' };
    const alias = (v: unknown) => ev({ type: 'm.room.canonical_alias', state_key: '', content: { alt_aliases: v } as JsonObject });
    expect(matches(c, alias(['#somewhere:example.org', '#myroom:example.com']))).toBe(true);
    expect(matches(c, alias([':example.com']))).toBe(false);
    expect(matches(c, alias('#myroom:example.com'))).toBe(false);
    expect(matches(c, ev({ content: {} }))).toBe(false);
  });

  test('contains_display_name: the user\'s display name as words of the body', () => {
    const c: PushCondition = { kind: 'contains_display_name' };
    expect(matches(c, text('is alice liddell here?'))).toBe(true);
    expect(matches(c, text('Alice Liddellish'))).toBe(false);
    expect(matches(c, text('alice'))).toBe(false);
    expect(matches(c, text('Alice Liddell'), room({ displayName: undefined }))).toBe(false);
    // Glob characters in a display name are plain text.
    expect(matches(c, text('hello a*b'), room({ displayName: 'a*b' }))).toBe(true);
    expect(matches(c, text('hello axxb'), room({ displayName: 'a*b' }))).toBe(false);
  });

  test('room_member_count: ==, <, >, <=, >= and the bare number', () => {
    const at = (is: string, n: number) => matches({ kind: 'room_member_count', is }, text('x'), room({ memberCount: n }));
    expect(at('2', 2)).toBe(true);
    expect(at('2', 3)).toBe(false);
    expect(at('==2', 2)).toBe(true);
    expect(at('<10', 9)).toBe(true);
    expect(at('<10', 10)).toBe(false);
    expect(at('>10', 11)).toBe(true);
    expect(at('>10', 10)).toBe(false);
    expect(at('<=10', 10)).toBe(true);
    expect(at('<=10', 11)).toBe(false);
    expect(at('>=3', 3)).toBe(true);
    expect(at('>=3', 2)).toBe(false);
    expect(at('about 3', 3)).toBe(false);
  });

  test('sender_notification_permission: the sender needs notifications[key]', () => {
    const c: PushCondition = { kind: 'sender_notification_permission', key: 'room' };
    expect(matches(c, ev({ sender: '@admin:example.org' }))).toBe(true);
    expect(matches(c, ev({ sender: OTHER }))).toBe(false);
    expect(matches(c, ev({ sender: OTHER }), room({ notificationLevel: () => 0 }))).toBe(true);
    expect(matches({ kind: 'sender_notification_permission' }, ev({ sender: '@admin:example.org' }))).toBe(false);
  });

  test('an unknown condition never matches, so its rule never does', () => {
    expect(matches({ kind: 'org.example.unknown' }, text('x'))).toBe(false);
    const changes = emptyChanges();
    changes.rules.override.push({ rule_id: 'odd', enabled: true, actions: ['notify', { set_tweak: 'highlight' }], conditions: [{ kind: 'nope' }] });
    expect(decide(ev({ type: 'm.room.topic', state_key: '', content: { topic: 'x' } }), room(), changes)).toBeUndefined();
  });
});

describe('server-default rules', () => {
  test('the default set has the spec\'s rules in order, with the user filled in', () => {
    const rs = defaultPushRules(ME);
    expect(rs.override.map((r) => r.rule_id)).toEqual([
      '.m.rule.master',
      '.m.rule.suppress_notices',
      '.m.rule.invite_for_me',
      '.m.rule.member_event',
      '.m.rule.is_user_mention',
      '.m.rule.contains_display_name',
      '.m.rule.is_room_mention',
      '.m.rule.roomnotif',
      '.m.rule.tombstone',
      '.m.rule.reaction',
      '.m.rule.room.server_acl',
      '.m.rule.suppress_edits',
    ]);
    expect(rs.content.map((r) => [r.rule_id, r.pattern])).toEqual([['.m.rule.contains_user_name', 'alice']]);
    expect(rs.underride.map((r) => r.rule_id)).toEqual([
      '.m.rule.call',
      '.m.rule.encrypted_room_one_to_one',
      '.m.rule.room_one_to_one',
      '.m.rule.message',
      '.m.rule.encrypted',
    ]);
    expect(rs.room).toEqual([]);
    expect(rs.sender).toEqual([]);
    for (const kind of ['override', 'content', 'underride'] as const) {
      for (const r of rs[kind]) {
        expect(r.default).toBe(true);
        expect(r.enabled).toBe(r.rule_id !== '.m.rule.master');
      }
    }
    expect(rs.override[2].conditions).toContainEqual({ kind: 'event_match', key: 'state_key', pattern: ME });
    expect(rs.override[4].conditions).toEqual([{ kind: 'event_property_contains', key: 'content.m\\.mentions.user_ids', value: ME }]);
  });

  test('.m.rule.master (disabled by default) silences everything when enabled', () => {
    const changes = emptyChanges();
    changes.defaults['override/.m.rule.master'] = { enabled: true };
    const d = decide(text('hi', { 'm.mentions': { user_ids: [ME] } }), room(), changes);
    expect(d?.ruleId).toBe('.m.rule.master');
    expect(d?.notify).toBe(false);
  });

  test('.m.rule.suppress_notices', () => {
    const d = decide(ev({ content: { msgtype: 'm.notice', body: 'alice: bot says hi' } }));
    expect(d).toMatchObject({ ruleId: '.m.rule.suppress_notices', notify: false });
  });

  test('.m.rule.invite_for_me notifies with sound; others\' invites do not', () => {
    const invite = (target: string) =>
      ev({ type: 'm.room.member', state_key: target, content: { membership: 'invite' } });
    expect(decide(invite(ME))).toMatchObject({ ruleId: '.m.rule.invite_for_me', notify: true, highlight: false, sound: 'default' });
    expect(decide(invite('@carol:example.org'))).toMatchObject({ ruleId: '.m.rule.member_event', notify: false });
  });

  test('.m.rule.member_event silences joins and leaves', () => {
    const d = decide(ev({ type: 'm.room.member', state_key: OTHER, content: { membership: 'join' } }), room({ memberCount: 2 }));
    expect(d).toMatchObject({ ruleId: '.m.rule.member_event', notify: false });
  });

  test('.m.rule.is_user_mention highlights an intentional mention', () => {
    const d = decide(text('hey', { 'm.mentions': { user_ids: [ME] } }));
    expect(d).toMatchObject({ ruleId: '.m.rule.is_user_mention', notify: true, highlight: true, sound: 'default' });
  });

  test('.m.rule.contains_display_name (legacy) highlights the display name, unless m.mentions is present', () => {
    expect(decide(text('Alice Liddell, lunch?'))).toMatchObject({ ruleId: '.m.rule.contains_display_name', highlight: true });
    // With m.mentions the legacy rules step aside: an ordinary message.
    expect(decide(text('Alice Liddell, lunch?', { 'm.mentions': {} }))).toMatchObject({ ruleId: '.m.rule.message', highlight: false });
  });

  test('.m.rule.is_room_mention needs the sender\'s power for @room', () => {
    const atRoom = (sender: string) => ev({ sender, content: { msgtype: 'm.text', body: 'all', 'm.mentions': { room: true } } });
    expect(decide(atRoom('@admin:example.org'))).toMatchObject({ ruleId: '.m.rule.is_room_mention', notify: true, highlight: true });
    expect(decide(atRoom(OTHER))).toMatchObject({ ruleId: '.m.rule.message', highlight: false });
  });

  test('.m.rule.roomnotif (legacy): @room in the body from a powerful sender', () => {
    const body = (sender: string, extra: JsonObject = {}) => ev({ sender, content: { msgtype: 'm.text', body: 'hey @room!', ...extra } });
    expect(decide(body('@admin:example.org'))).toMatchObject({ ruleId: '.m.rule.roomnotif', notify: true, highlight: true });
    expect(decide(body(OTHER))).toMatchObject({ ruleId: '.m.rule.message', highlight: false });
    expect(decide(body('@admin:example.org', { 'm.mentions': {} }))).toMatchObject({ ruleId: '.m.rule.message' });
  });

  test('.m.rule.tombstone highlights the room upgrade; a tombstone with a state key does not', () => {
    const tomb = (sk: string) => ev({ type: 'm.room.tombstone', state_key: sk, content: { body: 'moved', replacement_room: '!new:x' } });
    expect(decide(tomb(''))).toMatchObject({ ruleId: '.m.rule.tombstone', notify: true, highlight: true });
    expect(decide(tomb('x'))).toBeUndefined();
  });

  test('.m.rule.reaction', () => {
    const d = decide(ev({ type: 'm.reaction', content: { 'm.relates_to': { rel_type: 'm.annotation', event_id: '$x', key: '👍' } } }));
    expect(d).toMatchObject({ ruleId: '.m.rule.reaction', notify: false });
  });

  test('.m.rule.room.server_acl', () => {
    const d = decide(ev({ type: 'm.room.server_acl', state_key: '', content: { allow: ['*'] } }));
    expect(d).toMatchObject({ ruleId: '.m.rule.room.server_acl', notify: false });
  });

  test('.m.rule.suppress_edits', () => {
    const edit = text('* fixed', { 'm.new_content': { msgtype: 'm.text', body: 'fixed' }, 'm.relates_to': { rel_type: 'm.replace', event_id: '$x' } });
    expect(decide(edit)).toMatchObject({ ruleId: '.m.rule.suppress_edits', notify: false });
  });

  test('.m.rule.contains_user_name (legacy content rule): the localpart as a word', () => {
    expect(decide(text('ping alice please'), room({ displayName: undefined }))).toMatchObject({
      ruleId: '.m.rule.contains_user_name',
      kind: 'content',
      highlight: true,
    });
    expect(decide(text('ping alicemania'), room({ displayName: undefined }))).toMatchObject({ ruleId: '.m.rule.message' });
  });

  test('.m.rule.call rings', () => {
    expect(decide(ev({ type: 'm.call.invite', content: { call_id: '1' } }))).toMatchObject({ ruleId: '.m.rule.call', notify: true, sound: 'ring' });
  });

  test('one-to-one rooms: .m.rule.encrypted_room_one_to_one and .m.rule.room_one_to_one', () => {
    const two = room({ memberCount: 2 });
    expect(decide(ev({ type: 'm.room.encrypted', content: { algorithm: 'x' } }), two)).toMatchObject({
      ruleId: '.m.rule.encrypted_room_one_to_one',
      notify: true,
      sound: 'default',
    });
    expect(decide(text('hi'), two)).toMatchObject({ ruleId: '.m.rule.room_one_to_one', notify: true, sound: 'default', highlight: false });
  });

  test('group rooms: .m.rule.message and .m.rule.encrypted notify without sound', () => {
    const d = decide(text('hi'));
    expect(d).toMatchObject({ ruleId: '.m.rule.message', notify: true, highlight: false });
    expect(d?.sound).toBeUndefined();
    expect(decide(ev({ type: 'm.room.encrypted', content: {} }))).toMatchObject({ ruleId: '.m.rule.encrypted', notify: true });
  });

  test('other events match no rule', () => {
    expect(decide(ev({ type: 'm.room.name', state_key: '', content: { name: 'x' } }))).toBeUndefined();
  });
});

describe('rule order, kinds and user changes', () => {
  test('user rules come before server-default rules of their kind; master stays first', () => {
    const changes = emptyChanges();
    changes.rules.override.push({ rule_id: 'mine', enabled: true, actions: [], conditions: [] });
    changes.rules.underride.push({ rule_id: 'late', enabled: true, actions: ['notify'], conditions: [] });
    const rs = buildRuleset(ME, changes);
    expect(rs.override.slice(0, 3).map((r) => [r.rule_id, r.default])).toEqual([
      ['.m.rule.master', true],
      ['mine', false],
      ['.m.rule.suppress_notices', true],
    ]);
    expect(rs.underride[0]).toMatchObject({ rule_id: 'late', default: false });
    // The empty override catches everything below master.
    expect(decide(text('hi', { 'm.mentions': { user_ids: [ME] } }), room(), changes)?.ruleId).toBe('mine');
  });

  test('override → content → room → sender → underride', () => {
    const changes = emptyChanges();
    changes.rules.sender.push({ rule_id: OTHER, enabled: true, actions: [] });
    changes.rules.room.push({ rule_id: ROOM, enabled: true, actions: ['notify', { set_tweak: 'sound', value: 'room' }] });
    changes.rules.content.push({ rule_id: 'cake', enabled: true, pattern: 'cake', actions: ['notify', { set_tweak: 'highlight' }] });
    expect(decide(text('time for cake'), room(), changes)).toMatchObject({ kind: 'content', ruleId: 'cake', highlight: true });
    expect(decide(text('time for tea'), room(), changes)).toMatchObject({ kind: 'room', sound: 'room' });
    changes.rules.room = [];
    expect(decide(text('time for tea'), room(), changes)).toMatchObject({ kind: 'sender', notify: false });
    expect(decide(text('time for tea', {}), room(), emptyChanges())).toMatchObject({ kind: 'underride' });
    // An override beats the content rule.
    expect(decide(ev({ content: { msgtype: 'm.notice', body: 'cake' } }), room(), changes)?.ruleId).toBe('.m.rule.suppress_notices');
  });

  test('disabled rules never match; changed actions of a default rule apply', () => {
    const changes = emptyChanges();
    changes.defaults['underride/.m.rule.message'] = { enabled: false };
    expect(decide(text('hi'), room(), changes)).toBeUndefined();
    changes.defaults['underride/.m.rule.message'] = { actions: ['notify', { set_tweak: 'highlight', value: true }] };
    expect(decide(text('hi'), room(), changes)).toMatchObject({ ruleId: '.m.rule.message', highlight: true });
    const shown = buildRuleset(ME, changes).underride.find((r) => r.rule_id === '.m.rule.message');
    expect(shown).toMatchObject({ default: true, enabled: true, actions: ['notify', { set_tweak: 'highlight', value: true }] });
  });

  test('the served form: conditions only on override/underride, pattern only on content', () => {
    const changes = emptyChanges();
    changes.rules.room.push({ rule_id: ROOM, enabled: true, actions: [] });
    const f = formatRuleset(buildRuleset(ME, changes)) as Record<string, JsonObject[]>;
    expect(f.room[0]).toEqual({ rule_id: ROOM, default: false, enabled: true, actions: [] });
    expect(f.content[0]).toMatchObject({ rule_id: '.m.rule.contains_user_name', pattern: 'alice' });
    expect(f.content[0].conditions).toBeUndefined();
    expect(f.override[0]).toEqual({ rule_id: '.m.rule.master', default: true, enabled: false, actions: [], conditions: [] });
  });
});

describe('actions', () => {
  test('notify, highlight (default true when no value) and sound', () => {
    expect(summariseActions(['notify', { set_tweak: 'highlight' }, { set_tweak: 'sound', value: 'bing' }])).toEqual({
      notify: true,
      highlight: true,
      sound: 'bing',
    });
    expect(summariseActions(['notify', { set_tweak: 'highlight', value: false }])).toEqual({ notify: true, highlight: false });
    expect(summariseActions([])).toEqual({ notify: false, highlight: false });
  });

  test('historical actions are ignored: ["dont_notify"] is the same as []', () => {
    expect(stripHistoricalActions(['dont_notify', 'coalesce', 'notify'])).toEqual(['notify']);
    const changes = emptyChanges();
    changes.rules.override.push({ rule_id: 'old', enabled: true, actions: ['dont_notify'], conditions: [] });
    expect(decide(text('hi'), room(), changes)).toMatchObject({ ruleId: 'old', actions: [], notify: false });
  });

  test('validation', () => {
    expect(actionsProblem(['notify', 'dont_notify', { set_tweak: 'sound', value: 'x' }, { set_tweak: 'custom', value: 3 }])).toBeUndefined();
    expect(actionsProblem(['shout'])).toMatch(/unknown action/);
    expect(actionsProblem([{ value: 'x' }])).toMatch(/set_tweak/);
    expect(actionsProblem([{ set_tweak: 'highlight', value: 'yes' }])).toMatch(/boolean/);
    expect(actionsProblem([{ set_tweak: 'sound' }])).toMatch(/string/);
    expect(actionsProblem([3])).toMatch(/string or an object/);
  });
});
