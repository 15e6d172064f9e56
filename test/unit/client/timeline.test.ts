/** The timeline view model: edits, redactions, notices, day separators, grouping, echoes, read receipts. */
import { describe, expect, it } from 'vitest';
import type { ClientEvent } from '../../../src/client/api/types.js';
import type { PendingEcho, Receipt } from '../../../src/client/store/room-state.js';
import { buildTimeline, describeEvent } from '../../../src/client/store/timeline.js';
import type { MessageItem, TimelineItem } from '../../../src/client/store/timeline.js';
import { T0, ev, member, msg, state } from './builders.js';

const ME = '@alice:hs';
const nameOf = (u: string) => ({ '@alice:hs': 'Alice', '@bob:hs': 'Bob', '@carol:hs': 'Carol' })[u] ?? u;

function build(timeline: ClientEvent[], opts: { pending?: PendingEcho[]; receipts?: [string, Receipt][]; now?: number } = {}): TimelineItem[] {
  return buildTimeline({
    timeline,
    pending: opts.pending ?? [],
    me: ME,
    nameOf,
    receipts: new Map(opts.receipts ?? []),
    now: opts.now ?? T0 + 3_600_000,
  });
}

const messages = (items: TimelineItem[]) => items.filter((i): i is MessageItem => i.kind === 'message');

describe('buildTimeline', () => {
  it('shows messages with sender names, marks my own, and starts with a day separator', () => {
    const items = build([msg('@bob:hs', 'hi'), msg(ME, 'hello')]);
    expect(items[0]).toMatchObject({ kind: 'day', label: 'Today' });
    expect(messages(items).map((m) => [m.senderName, m.body, m.own])).toEqual([
      ['Bob', 'hi', false],
      ['Alice', 'hello', true],
    ]);
  });

  it('puts a separator between days and groups consecutive messages of one sender within 5 minutes', () => {
    const day1 = new Date(2025, 5, 14, 22, 0).getTime();
    const day2 = new Date(2025, 5, 15, 8, 0).getTime();
    const items = build(
      [
        msg('@bob:hs', 'a', { origin_server_ts: day1 }),
        msg('@bob:hs', 'b', { origin_server_ts: day1 + 60_000 }),
        msg('@bob:hs', 'c', { origin_server_ts: day1 + 10 * 60_000 }),
        msg('@bob:hs', 'd', { origin_server_ts: day2 }),
      ],
      { now: day2 + 1000 },
    );
    expect(items.map((i) => (i.kind === 'day' ? i.label : i.kind === 'message' ? `${i.body}${i.continuation ? '+' : ''}` : '?'))).toEqual([
      'Yesterday',
      'a',
      'b+',
      'c',
      'Today',
      'd',
    ]);
  });

  it('shows the newest edit by the original sender, marked edited, and hides the edit events', () => {
    const orig = msg('@bob:hs', 'helo');
    const edit = (by: string, body: string) =>
      ev({ sender: by, content: { msgtype: 'm.text', body: `* ${body}`, 'm.new_content': { msgtype: 'm.text', body }, 'm.relates_to': { rel_type: 'm.replace', event_id: orig.event_id } } });
    const items = messages(build([orig, edit('@bob:hs', 'hello'), edit('@bob:hs', 'hello!'), edit('@carol:hs', 'hijacked')]));
    // Carol's edit is the newest but not from the sender: ignored, as the spec requires.
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ body: 'helo', edited: false });
    const items2 = messages(build([orig, edit('@bob:hs', 'hello'), edit('@bob:hs', 'hello!')]));
    expect(items2).toMatchObject([{ body: 'hello!', edited: true }]);
  });

  it('uses an edit bundled by the server when the edit event itself is not loaded', () => {
    const orig = msg('@bob:hs', 'old', {
      unsigned: { 'm.relations': { 'm.replace': ev({ sender: '@bob:hs', content: { 'm.new_content': { msgtype: 'm.text', body: 'new' } } }) } },
    });
    expect(messages(build([orig]))[0]).toMatchObject({ body: 'new', edited: true });
  });

  it('shows redacted messages as deleted, by redaction event (both redacts placements) or redacted_because', () => {
    const a = msg('@bob:hs', 'secret a');
    const b = msg('@bob:hs', 'secret b');
    const c = ev({ sender: '@bob:hs', content: {}, unsigned: { redacted_because: ev({ type: 'm.room.redaction' }) } });
    const items = messages(
      build([a, b, c, ev({ type: 'm.room.redaction', redacts: a.event_id }), ev({ type: 'm.room.redaction', content: { redacts: b.event_id } })]),
    );
    expect(items.map((m) => [m.deleted, m.body])).toEqual([
      [true, ''],
      [true, ''],
      [true, ''],
    ]);
  });

  it('appends local echoes after the timeline with their sending state', () => {
    const items = messages(
      build([msg('@bob:hs', 'hi')], {
        pending: [
          { txnId: 't1', type: 'm.room.message', content: { msgtype: 'm.text', body: 'one' }, ts: T0 + 999_000, status: 'sending' },
          { txnId: 't2', type: 'm.room.message', content: { msgtype: 'm.text', body: 'two' }, ts: T0 + 999_500, status: 'failed', error: 'offline' },
        ],
      }),
    );
    expect(items.slice(1).map((m) => [m.key, m.body, m.own, m.status, m.error])).toEqual([
      ['txn-t1', 'one', true, 'sending', undefined],
      ['txn-t2', 'two', true, 'failed', 'offline'],
    ]);
  });

  it('shows who has read up to each message, skipping me and moving receipts off hidden events', () => {
    const a = msg('@bob:hs', 'a');
    const b = msg(ME, 'b');
    const hidden = state('m.room.power_levels', {});
    const items = messages(
      build([a, b, hidden], {
        receipts: [
          ['@bob:hs', { eventId: hidden.event_id, ts: 1 }],
          ['@carol:hs', { eventId: a.event_id, ts: 1 }],
          [ME, { eventId: b.event_id, ts: 1 }],
          ['@dave:hs', { eventId: '$not-loaded', ts: 1 }],
        ],
      }),
    );
    expect(items.map((m) => m.readBy)).toEqual([['@carol:hs'], ['@bob:hs']]);
  });

  it('folds the creation burst into one notice, and shows later changes as notices of their own', () => {
    const items = build([
      state('m.room.create', { room_version: '12' }),
      member(ME, 'join', { displayname: 'Alice' }),
      member('@bob:hs', 'invite', {}, ME),
      state('m.room.power_levels', { users: {} }),
      msg(ME, 'hi'),
      state('m.room.name', { name: 'Garden' }),
      member('@bob:hs', 'join'),
      ev({ type: 'com.example.unknown', content: {} }),
    ]);
    const notices = items.filter((i) => i.kind === 'notice');
    expect(notices.map((i) => [i.text, i.details])).toEqual([
      ['Alice created and configured the room', ['Alice joined', 'Alice invited Bob']],
      ['Alice named the room “Garden”', undefined],
      ['Bob joined', undefined],
    ]);
  });

  it('ends the creation fold at the first event from someone else', () => {
    const items = build([state('m.room.create', { room_version: '12' }), member('@bob:hs', 'join'), state('m.room.topic', { topic: 't' })]);
    expect(items.filter((i) => i.kind === 'notice').map((i) => i.text)).toEqual(['Alice created the room', 'Bob joined', 'Alice set the topic: t']);
  });
});

describe('describeEvent', () => {
  const d = (e: ClientEvent) => describeEvent(e, nameOf);
  it('tells leaving, kicks, bans, declines, unbans and name changes apart', () => {
    expect(d(member('@bob:hs', 'leave'))).toBe('Bob left');
    expect(d(member('@bob:hs', 'leave', {}, ME))).toBe('Alice removed Bob');
    expect(d(member('@bob:hs', 'leave', { reason: 'spam' }, ME))).toBe('Alice removed Bob: spam');
    expect(d(member('@bob:hs', 'ban', {}, ME))).toBe('Alice banned Bob');
    expect(d({ ...member('@bob:hs', 'leave'), unsigned: { prev_content: { membership: 'invite' } } })).toBe('Bob declined the invitation');
    expect(d({ ...member('@bob:hs', 'leave', {}, ME), unsigned: { prev_content: { membership: 'ban' } } })).toBe('Alice unbanned Bob');
    expect(d({ ...member('@bob:hs', 'join', { displayname: 'Robert' }), unsigned: { prev_content: { membership: 'join', displayname: 'Bob' } } })).toBe(
      'Bob is now Robert',
    );
    expect(d(state('m.room.join_rules', { join_rule: 'public' }))).toBe('Alice made the room public');
    expect(d(state('m.room.topic', { topic: 'Tomatoes' }))).toBe('Alice set the topic: Tomatoes');
  });
});
