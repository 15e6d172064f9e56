/**
 * What the room list and headers show: room names (the spec's calculation), member names, the member list, the
 * last message, the sort order.
 * https://spec.matrix.org/v1.19/client-server-api/#calculating-the-display-name-for-a-room
 * https://spec.matrix.org/v1.19/client-server-api/#calculating-the-display-name-for-a-user
 */
import type { ClientEvent, StrippedEvent } from '../api/types.js';
import { localpart } from '../lib/ids.js';
import { getState } from './room-state.js';
import type { RoomState } from './room-state.js';
import { roleName, userPower, powerLevels } from './power.js';

export type Membership = 'join' | 'invite' | 'leave' | 'ban' | 'knock';

export interface MemberInfo {
  userId: string;
  name: string;
  membership: Membership;
  power: number;
  role: string | undefined;
}

function memberEvents(room: RoomState): (ClientEvent | StrippedEvent)[] {
  if (room.membership === 'invite') return room.inviteState.filter((e) => e.type === 'm.room.member');
  const out: ClientEvent[] = [];
  for (const e of room.state.values()) if (e.type === 'm.room.member') out.push(e);
  return out;
}

function memberEvent(room: RoomState, userId: string): ClientEvent | StrippedEvent | undefined {
  if (room.membership === 'invite') return room.inviteState.find((e) => e.type === 'm.room.member' && e.state_key === userId);
  return getState(room, 'm.room.member', userId);
}

/** The user's display name in this room, or their localpart. */
export function memberName(room: RoomState, userId: string): string {
  const d = memberEvent(room, userId)?.content.displayname;
  return typeof d === 'string' && d.trim() !== '' ? d : localpart(userId);
}

export function membershipOf(room: RoomState, userId: string): Membership | undefined {
  const m = memberEvent(room, userId)?.content.membership;
  return typeof m === 'string' ? (m as Membership) : undefined;
}

function stateContent(room: RoomState, type: string) {
  if (room.membership === 'invite') return room.inviteState.find((e) => e.type === type && e.state_key === '')?.content;
  return getState(room, type)?.content;
}

export function roomTopic(room: RoomState): string {
  const t = stateContent(room, 'm.room.topic')?.topic;
  return typeof t === 'string' ? t : '';
}

/** The inviter of a pending invite. */
export function inviter(room: RoomState, me: string): string | undefined {
  return room.inviteState.find((e) => e.type === 'm.room.member' && e.state_key === me)?.sender;
}

export function roomName(room: RoomState, me: string): string {
  const c = stateContent(room, 'm.room.name');
  if (typeof c?.name === 'string' && c.name.trim() !== '') return c.name;
  const alias = stateContent(room, 'm.room.canonical_alias')?.alias;
  if (typeof alias === 'string' && alias !== '') return alias;
  // Heroes: other joined or invited members, by the server's summary when given, else from state.
  let heroes = room.heroes.filter((u) => u !== me);
  if (heroes.length === 0) {
    heroes = memberEvents(room)
      .filter((e) => e.state_key !== me && (e.content.membership === 'join' || e.content.membership === 'invite'))
      .map((e) => e.state_key as string)
      .sort();
  }
  if (heroes.length === 0 && room.membership === 'invite') {
    const by = inviter(room, me);
    if (by) heroes = [by];
  }
  const names = heroes.slice(0, 5).map((u) => memberName(room, u));
  if (names.length === 0) return 'Empty room';
  if (names.length === 1) return names[0];
  if (heroes.length === 2) return `${names[0]} and ${names[1]}`;
  if (heroes.length <= 3) return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
  return `${names.slice(0, 2).join(', ')} and ${heroes.length - 2} others`;
}

/** Members sorted by power (highest first), then name; joined before invited before banned. */
export function memberList(room: RoomState): MemberInfo[] {
  const pl = powerLevels(room);
  const order: Record<string, number> = { join: 0, invite: 1, knock: 2, ban: 3, leave: 4 };
  return memberEvents(room)
    .map((e) => {
      const userId = e.state_key as string;
      const power = userPower(room, userId, pl);
      return { userId, name: memberName(room, userId), membership: e.content.membership as Membership, power, role: roleName(power) };
    })
    .filter((m) => m.membership !== 'leave')
    .sort((a, b) => order[a.membership] - order[b.membership] || b.power - a.power || a.name.localeCompare(b.name));
}

export function joinedCount(room: RoomState): number {
  let n = 0;
  for (const e of memberEvents(room)) if (e.content.membership === 'join') n++;
  return n;
}

const MESSAGE_TYPES = new Set(['m.room.message', 'm.room.encrypted', 'm.sticker']);

export function isEdit(e: ClientEvent): boolean {
  const rel = e.content['m.relates_to'];
  return !!rel && typeof rel === 'object' && !Array.isArray(rel) && rel.rel_type === 'm.replace';
}

/** One line for the room list: "Alice: hello". */
export function lastMessage(room: RoomState, me: string): { text: string; ts: number } | undefined {
  const p = room.pending[room.pending.length - 1];
  if (p) return { text: `You: ${bodyOf(p.content)}`, ts: p.ts };
  for (let i = room.timeline.length - 1; i >= 0; i--) {
    const e = room.timeline[i];
    if (!MESSAGE_TYPES.has(e.type) || isEdit(e)) continue;
    const who = e.sender === me ? 'You' : memberName(room, e.sender);
    const deleted = e.unsigned?.redacted_because !== undefined || Object.keys(e.content).length === 0;
    const text = deleted ? 'Message deleted' : e.type === 'm.room.encrypted' ? 'Encrypted message' : bodyOf(e.content);
    return { text: `${who}: ${text}`, ts: e.origin_server_ts };
  }
  return undefined;
}

function bodyOf(content: Record<string, unknown>): string {
  return typeof content.body === 'string' ? content.body.replace(/\s+/g, ' ').slice(0, 200) : '';
}

/** A profile change (same membership, new name or avatar) is not activity: it lands in every room at once. */
function isProfileChange(e: ClientEvent): boolean {
  return e.type === 'm.room.member' && e.unsigned?.prev_content?.membership === e.content.membership;
}

/** Timestamp of the newest thing that happened in the room, for sorting. */
export function lastActivity(room: RoomState): number {
  const p = room.pending[room.pending.length - 1];
  if (p) return p.ts;
  for (let i = room.timeline.length - 1; i >= 0; i--) {
    const e = room.timeline[i];
    if (!isProfileChange(e)) return e.origin_server_ts;
  }
  return room.timeline[0]?.origin_server_ts ?? 0;
}

/** Invites first, then the most recently active room. */
export function sortRooms(rooms: Iterable<RoomState>): RoomState[] {
  return [...rooms].sort((a, b) => {
    if (a.membership !== b.membership) return a.membership === 'invite' ? -1 : 1;
    return lastActivity(b) - lastActivity(a) || a.roomId.localeCompare(b.roomId);
  });
}

/** The unread badge: the server's count, except for the room being read right now. */
export function unreadBadge(room: RoomState, open: boolean): { count: number; highlight: boolean } {
  if (open || room.membership !== 'join') return { count: 0, highlight: false };
  return { count: room.notificationCount, highlight: room.highlightCount > 0 };
}

/** A direct chat: listed in m.direct account data, or an invite flagged is_direct. */
export function isDirect(room: RoomState, me: string, mDirect: Record<string, unknown>): boolean {
  for (const ids of Object.values(mDirect)) if (Array.isArray(ids) && ids.includes(room.roomId)) return true;
  if (room.membership === 'invite') return room.inviteState.some((e) => e.type === 'm.room.member' && e.state_key === me && e.content.is_direct === true);
  return false;
}
