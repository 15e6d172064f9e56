/** Folding /sync and /messages into a room: appends, gaps, local echoes, receipts, typing, unread counts. */
import { describe, expect, it } from 'vitest';
import {
  addPending,
  applyInvitedRoom,
  applyJoinedRoom,
  getState,
  prependHistory,
  updatePending,
} from '../../../src/client/store/room-state.js';
import { ev, joinedRoom, member, msg, state } from './builders.js';

describe('applyJoinedRoom', () => {
  it('starts from the first sync: state, timeline, prev_batch, unread counts', () => {
    const m1 = msg('@bob:hs', 'hi');
    const room = joinedRoom([member('@alice:hs', 'join')], [m1], { unread_notifications: { notification_count: 3, highlight_count: 1 } });
    expect(room.membership).toBe('join');
    expect(room.timeline).toEqual([m1]);
    expect(room.prevBatch).toBe('t1');
    expect(room.notificationCount).toBe(3);
    expect(room.highlightCount).toBe(1);
    expect(getState(room, 'm.room.member', '@alice:hs')?.content.membership).toBe('join');
  });

  it('appends new events once, even when a sync repeats one, and applies state from the timeline', () => {
    const a = msg('@bob:hs', 'one');
    let room = joinedRoom([], [a]);
    const name = state('m.room.name', { name: 'Garden' });
    const b = msg('@bob:hs', 'two');
    room = applyJoinedRoom(room, room.roomId, { timeline: { events: [a, name, b] } });
    room = applyJoinedRoom(room, room.roomId, { timeline: { events: [b] } });
    expect(room.timeline.map((e) => e.event_id)).toEqual([a.event_id, name.event_id, b.event_id]);
    expect(getState(room, 'm.room.name')?.content.name).toBe('Garden');
    expect(room.prevBatch).toBe('t1');
  });

  it('starts again after a gap (limited timeline) with the new prev_batch', () => {
    let room = joinedRoom([], [msg('@bob:hs', 'old')]);
    const fresh = msg('@bob:hs', 'new');
    room = applyJoinedRoom(room, room.roomId, { timeline: { events: [fresh], limited: true, prev_batch: 't9' } });
    expect(room.timeline).toEqual([fresh]);
    expect(room.prevBatch).toBe('t9');
  });

  it('replaces a local echo by its remote echo, matched by transaction ID', () => {
    let room = joinedRoom([], []);
    room = addPending(room, { txnId: 'tx1', type: 'm.room.message', content: { msgtype: 'm.text', body: 'hi' }, ts: 1, status: 'sending' });
    room = addPending(room, { txnId: 'tx2', type: 'm.room.message', content: { msgtype: 'm.text', body: 'yo' }, ts: 2, status: 'sending' });
    const remote = msg('@alice:hs', 'hi', { unsigned: { transaction_id: 'tx1' } });
    room = applyJoinedRoom(room, room.roomId, { timeline: { events: [remote] } });
    expect(room.pending.map((p) => p.txnId)).toEqual(['tx2']);
    expect(room.timeline).toEqual([remote]);
  });

  it('also drops an echo whose event ID the send returned before sync (another tab has no transaction ID)', () => {
    let room = joinedRoom([], []);
    room = addPending(room, { txnId: 'tx1', type: 'm.room.message', content: { body: 'hi' }, ts: 1, status: 'sending' });
    room = updatePending(room, 'tx1', { status: 'sent', eventId: '$sent' });
    expect(room.pending[0].status).toBe('sent');
    room = applyJoinedRoom(room, room.roomId, { timeline: { events: [ev({ event_id: '$sent', content: { body: 'hi' } })] } });
    expect(room.pending).toEqual([]);
  });

  it('removes the echo at once when sync already delivered the event the send returns', () => {
    let room = joinedRoom([], [ev({ event_id: '$sent' })]);
    room = addPending(room, { txnId: 'tx1', type: 'm.room.message', content: { body: 'hi' }, ts: 1, status: 'sending' });
    room = updatePending(room, 'tx1', { status: 'sent', eventId: '$sent' });
    expect(room.pending).toEqual([]);
  });

  it('keeps the latest m.read receipt per user (ignoring threaded ones) and the typing list', () => {
    let room = joinedRoom([], []);
    room = applyJoinedRoom(room, room.roomId, {
      ephemeral: {
        events: [
          { type: 'm.receipt', content: { $a: { 'm.read': { '@bob:hs': { ts: 5 } } }, $t: { 'm.read': { '@carol:hs': { ts: 6, thread_id: '$root' } } } } },
          { type: 'm.typing', content: { user_ids: ['@bob:hs'] } },
        ],
      },
    });
    room = applyJoinedRoom(room, room.roomId, { ephemeral: { events: [{ type: 'm.receipt', content: { $b: { 'm.read': { '@bob:hs': { ts: 9 } } } } }] } });
    expect([...room.receipts]).toEqual([['@bob:hs', { eventId: '$b', ts: 9 }]]);
    expect(room.typing).toEqual(['@bob:hs']);
    room = applyJoinedRoom(room, room.roomId, { ephemeral: { events: [{ type: 'm.typing', content: { user_ids: [] } }] } });
    expect(room.typing).toEqual([]);
  });

  it('keeps the room object when nothing changed for it', () => {
    const room = joinedRoom([], [msg('@bob:hs', 'x')]);
    const next = applyJoinedRoom(room, room.roomId, {});
    expect(next.timeline).toBe(room.timeline);
    expect(next.state).toBe(room.state);
  });

  it('turns an invite into a joined room when the join arrives', () => {
    const invite = applyInvitedRoom('!r:hs', { invite_state: { events: [{ type: 'm.room.name', state_key: '', sender: '@bob:hs', content: { name: 'Hi' } }] } });
    expect(invite.membership).toBe('invite');
    expect(invite.inviteState).toHaveLength(1);
    const joined = applyJoinedRoom(invite, '!r:hs', { timeline: { events: [member('@alice:hs', 'join')], prev_batch: 't3' } });
    expect(joined.membership).toBe('join');
    expect(joined.inviteState).toEqual([]);
    expect(joined.prevBatch).toBe('t3');
  });
});

describe('prependHistory', () => {
  it('puts an older page (newest first from /messages) before the timeline without duplicates', () => {
    const [a, b, c] = [msg('@bob:hs', 'a'), msg('@bob:hs', 'b'), msg('@bob:hs', 'c')];
    let room = joinedRoom([], [c]);
    room = prependHistory(room, { start: 't1', end: 't0', chunk: [c, b, a] });
    expect(room.timeline.map((e) => e.content.body)).toEqual(['a', 'b', 'c']);
    expect(room.prevBatch).toBe('t0');
  });

  it('marks the start of the room when a page is empty or has no end token', () => {
    const room = joinedRoom([], [msg('@bob:hs', 'a')]);
    expect(prependHistory(room, { start: 't1', chunk: [] }).prevBatch).toBeNull();
    expect(prependHistory(room, { start: 't1', chunk: [msg('@bob:hs', 'z')] }).prevBatch).toBeNull();
  });
});

describe('redactions', () => {
  it('empties a loaded message when its redaction arrives (both redacts placements), not state events', () => {
    const a = msg('@bob:hs', 'secret');
    const b = msg('@bob:hs', 'also secret');
    const topic = state('m.room.topic', { topic: 'kept' });
    let room = joinedRoom([], [a, b, topic]);
    room = applyJoinedRoom(room, room.roomId, {
      timeline: {
        events: [ev({ type: 'm.room.redaction', redacts: a.event_id }), ev({ type: 'm.room.redaction', content: { redacts: b.event_id } }), ev({ type: 'm.room.redaction', redacts: topic.event_id })],
      },
    });
    const [ra, rb, rt] = room.timeline;
    expect(ra.content).toEqual({});
    expect(ra.unsigned?.redacted_because?.type).toBe('m.room.redaction');
    expect(rb.content).toEqual({});
    expect(rt.content).toEqual({ topic: 'kept' });
  });
});
