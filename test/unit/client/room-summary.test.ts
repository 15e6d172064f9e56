/** Room names, member lists, last messages, sorting, unread badges and power levels. */
import { describe, expect, it } from 'vitest';
import { can, canSendState, roleName, userPower } from '../../../src/client/store/power.js';
import { addPending, applyInvitedRoom, emptyRoom } from '../../../src/client/store/room-state.js';
import { isDirect, lastMessage, memberList, roomName, sortRooms, unreadBadge } from '../../../src/client/store/room-summary.js';
import { ev, joinedRoom, member, msg, state, v12Room } from './builders.js';

const ME = '@alice:hs';

describe('roomName', () => {
  it('uses m.room.name, then the canonical alias, then the other members', () => {
    expect(roomName(joinedRoom([state('m.room.name', { name: 'Garden' }), state('m.room.canonical_alias', { alias: '#g:hs' })]), ME)).toBe('Garden');
    expect(roomName(joinedRoom([state('m.room.canonical_alias', { alias: '#g:hs' })]), ME)).toBe('#g:hs');
    const people = [member(ME, 'join'), member('@bob:hs', 'join', { displayname: 'Bob' }), member('@carol:hs', 'invite')];
    expect(roomName(joinedRoom(people.slice(0, 2)), ME)).toBe('Bob');
    expect(roomName(joinedRoom(people), ME)).toBe('Bob and carol');
    expect(roomName(joinedRoom([member(ME, 'join'), member('@bob:hs', 'leave')]), ME)).toBe('Empty room');
  });

  it('names an invite from its stripped state or its inviter', () => {
    const inv = applyInvitedRoom('!i:hs', {
      invite_state: {
        events: [
          { type: 'm.room.member', state_key: ME, sender: '@bob:hs', content: { membership: 'invite', is_direct: true } },
          { type: 'm.room.member', state_key: '@bob:hs', sender: '@bob:hs', content: { membership: 'join', displayname: 'Bobby' } },
        ],
      },
    });
    expect(roomName(inv, ME)).toBe('Bobby');
    expect(isDirect(inv, ME, {})).toBe(true);
  });
});

describe('room list', () => {
  it('puts invites first, then the most recently active rooms', () => {
    const old = { ...joinedRoom([], [msg('@bob:hs', 'x', { origin_server_ts: 1000 })]), roomId: '!old:hs' };
    const fresh = { ...joinedRoom([], [msg('@bob:hs', 'y', { origin_server_ts: 5000 })]), roomId: '!new:hs' };
    const sending = addPending({ ...joinedRoom([], []), roomId: '!mine:hs' }, { txnId: 't', type: 'm.room.message', content: { body: 'z' }, ts: 9000, status: 'sending' });
    const inv = applyInvitedRoom('!inv:hs', {});
    expect(sortRooms([old, fresh, inv, sending]).map((r) => r.roomId)).toEqual(['!inv:hs', '!mine:hs', '!new:hs', '!old:hs']);
  });

  it('previews the last message (not edits, deleted ones marked) with who sent it', () => {
    const room = joinedRoom([member('@bob:hs', 'join', { displayname: 'Bob' })], [msg('@bob:hs', 'hello\nthere'), ev({ type: 'm.room.member', state_key: '@x:hs', content: { membership: 'join' } })]);
    expect(lastMessage(room, ME)?.text).toBe('Bob: hello there');
    const edited = joinedRoom([], [msg(ME, 'a'), ev({ sender: ME, content: { body: '* b', 'm.relates_to': { rel_type: 'm.replace', event_id: '$x' } } })]);
    expect(lastMessage(edited, ME)?.text).toBe('You: a');
    expect(lastMessage(joinedRoom([], [ev({ sender: ME, content: {}, unsigned: { redacted_because: ev({}) } })]), ME)?.text).toBe('You: Message deleted');
    expect(lastMessage(joinedRoom([], []), ME)).toBeUndefined();
  });

  it('shows the server unread count except for the open room and invites', () => {
    const room = joinedRoom([], [], { unread_notifications: { notification_count: 4, highlight_count: 1 } });
    expect(unreadBadge(room, false)).toEqual({ count: 4, highlight: true });
    expect(unreadBadge(room, true)).toEqual({ count: 0, highlight: false });
    expect(unreadBadge(emptyRoom('!i:hs', 'invite'), false).count).toBe(0);
  });

  it('finds direct chats in m.direct', () => {
    const room = joinedRoom([], []);
    expect(isDirect(room, ME, { '@bob:hs': [room.roomId] })).toBe(true);
    expect(isDirect(room, ME, { '@bob:hs': ['!other:hs'] })).toBe(false);
  });
});

describe('members and power', () => {
  const room = joinedRoom(v12Room(ME, { '@mod:hs': 'join', '@bob:hs': 'join', '@eve:hs': 'ban', '@carol:hs': 'invite', '@gone:hs': 'leave' }));

  it('lists members by membership, then power, then name, with role names', () => {
    expect(memberList(room).map((m) => [m.userId, m.membership, m.role])).toEqual([
      [ME, 'join', 'Owner'],
      ['@mod:hs', 'join', 'Moderator'],
      ['@bob:hs', 'join', undefined],
      ['@carol:hs', 'invite', undefined],
      ['@eve:hs', 'ban', undefined],
    ]);
  });

  it('gives room v12 creators infinite power and checks kick/ban against the target', () => {
    expect(userPower(room, ME)).toBe(Infinity);
    expect(can(room, ME, 'kick', '@mod:hs')).toBe(true);
    expect(can(room, '@mod:hs', 'kick', '@bob:hs')).toBe(true);
    expect(can(room, '@mod:hs', 'ban', ME)).toBe(false);
    expect(can(room, '@bob:hs', 'kick', '@mod:hs')).toBe(false);
    expect(can(room, '@bob:hs', 'invite')).toBe(true);
    expect(can(room, '@mod:hs', 'kick', '@mod:hs')).toBe(false);
    expect(canSendState(room, '@mod:hs', 'm.room.topic')).toBe(true);
    expect(canSendState(room, '@bob:hs', 'm.room.topic')).toBe(false);
  });

  it('uses the power_levels users map for older room versions, with spec defaults without the event', () => {
    const v10 = joinedRoom([state('m.room.create', { room_version: '10' }, ME), state('m.room.power_levels', { users: { [ME]: 100 } })]);
    expect(userPower(v10, ME)).toBe(100);
    const bare = joinedRoom([state('m.room.create', { room_version: '10' }, ME)]);
    expect(userPower(bare, ME)).toBe(100);
    expect(can(bare, '@bob:hs', 'kick', ME)).toBe(false);
    expect(roleName(100)).toBe('Admin');
    expect(roleName(0)).toBeUndefined();
  });
});

describe('activity order', () => {
  it('does not count profile changes (they reach every room at once) as activity', () => {
    const busy = { ...joinedRoom([], [msg('@bob:hs', 'x', { origin_server_ts: 5000 })]), roomId: '!busy:hs' };
    const quiet = {
      ...joinedRoom(
        [],
        [
          msg('@bob:hs', 'y', { origin_server_ts: 1000 }),
          { ...member(ME, 'join', { displayname: 'New' }), origin_server_ts: 9000, unsigned: { prev_content: { membership: 'join', displayname: 'Old' } } },
        ],
      ),
      roomId: '!quiet:hs',
    };
    expect(sortRooms([quiet, busy]).map((r) => r.roomId)).toEqual(['!busy:hs', '!quiet:hs']);
  });
});
