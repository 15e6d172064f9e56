/** Event builders for the client's pure-logic tests. */
import type { ClientEvent, JoinedRoomSync, JsonObject } from '../../../src/client/api/types.js';
import { applyJoinedRoom } from '../../../src/client/store/room-state.js';
import type { RoomState } from '../../../src/client/store/room-state.js';

let n = 0;
export const T0 = new Date(2025, 5, 15, 10, 0).getTime();

export function ev(partial: Partial<ClientEvent> & { type?: string }): ClientEvent {
  n++;
  return {
    event_id: `$e${n}`,
    type: 'm.room.message',
    sender: '@alice:hs',
    origin_server_ts: T0 + n * 1000,
    content: {},
    ...partial,
  };
}

export function msg(sender: string, body: string, extra: Partial<ClientEvent> = {}): ClientEvent {
  return ev({ sender, content: { msgtype: 'm.text', body }, ...extra });
}

export function member(userId: string, membership: string, extra: JsonObject = {}, sender = userId): ClientEvent {
  return ev({ type: 'm.room.member', state_key: userId, sender, content: { membership, ...extra } });
}

export function state(type: string, content: JsonObject, sender = '@alice:hs', stateKey = ''): ClientEvent {
  return ev({ type, state_key: stateKey, sender, content });
}

/** A joined room built from one initial sync of these state and timeline events. */
export function joinedRoom(stateEvents: ClientEvent[], timeline: ClientEvent[] = [], extra: JoinedRoomSync = {}): RoomState {
  return applyJoinedRoom(undefined, '!r:hs', {
    state: { events: stateEvents },
    timeline: { events: timeline, limited: false, prev_batch: 't1' },
    ...extra,
  });
}

/** The state a room v12 creator's room starts with. */
export function v12Room(creator = '@alice:hs', others: Record<string, string> = {}): ClientEvent[] {
  return [
    state('m.room.create', { room_version: '12' }, creator),
    member(creator, 'join', { displayname: 'Alice' }),
    state('m.room.power_levels', { users: { '@mod:hs': 50 }, users_default: 0, kick: 50, ban: 50, invite: 0, state_default: 50 }, creator),
    ...Object.entries(others).map(([u, m]) => member(u, m)),
  ];
}
