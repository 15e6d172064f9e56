/**
 * Turns a room's loaded events and local echoes into what the timeline shows: messages with edits applied and
 * redactions marked, short notices for membership and room changes, day separators, sender grouping, and who has
 * read up to where.
 * https://spec.matrix.org/v1.19/client-server-api/#event-replacements
 * https://spec.matrix.org/v1.19/client-server-api/#redactions
 * https://spec.matrix.org/v1.19/client-server-api/#receipts
 */
import type { ClientEvent, JsonObject } from '../api/types.js';
import { dayKey, dayLabel } from '../lib/format.js';
import type { EchoStatus, PendingEcho, Receipt } from './room-state.js';
import { isEdit } from './room-summary.js';

export interface MessageItem {
  kind: 'message';
  key: string;
  eventId?: string;
  txnId?: string;
  sender: string;
  senderName: string;
  ts: number;
  body: string;
  msgtype: string;
  own: boolean;
  edited: boolean;
  deleted: boolean;
  status: EchoStatus;
  error?: string;
  /** Same sender as the message just above, within a few minutes: no repeated name and avatar. */
  continuation: boolean;
  readBy: string[];
}

export interface NoticeItem {
  kind: 'notice';
  key: string;
  eventId: string;
  text: string;
  ts: number;
  readBy: string[];
  /** Folded notices (the room's creation and set-up), shown on request. */
  details?: string[];
}

export interface DayItem {
  kind: 'day';
  key: string;
  label: string;
}

export type TimelineItem = MessageItem | NoticeItem | DayItem;

export interface TimelineInput {
  timeline: readonly ClientEvent[];
  pending: readonly PendingEcho[];
  me: string;
  nameOf: (userId: string) => string;
  receipts: ReadonlyMap<string, Receipt>;
  now: number;
}

const GROUP_MS = 5 * 60_000;
const MESSAGE_TYPES = new Set(['m.room.message', 'm.room.encrypted', 'm.sticker']);

function obj(v: unknown): JsonObject | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as JsonObject) : undefined;
}

function redactsOf(e: ClientEvent): string | undefined {
  const r = e.redacts ?? e.content.redacts; // room v11+ moved `redacts` into content
  return typeof r === 'string' ? r : undefined;
}

function isRedacted(e: ClientEvent, redacted: Set<string>): boolean {
  return redacted.has(e.event_id) || e.unsigned?.redacted_because !== undefined;
}

export function buildTimeline(input: TimelineInput): TimelineItem[] {
  const { timeline, me, nameOf } = input;
  // Pass 1: what is redacted, and the newest edit of each message (edits must come from the original sender).
  const redacted = new Set<string>();
  const edits = new Map<string, ClientEvent>();
  for (const e of timeline) {
    if (e.type === 'm.room.redaction') {
      const t = redactsOf(e);
      if (t) redacted.add(t);
    } else if (isEdit(e)) {
      const target = obj(e.content['m.relates_to'])?.event_id;
      if (typeof target === 'string') edits.set(target, e);
    }
  }

  const items: TimelineItem[] = [];
  const itemOfEvent = new Map<string, number>(); // event ID → index of the item at or before it
  let lastDay = 0;
  let prevMsg: MessageItem | undefined;
  const pushDay = (ts: number) => {
    const k = dayKey(ts);
    if (k !== lastDay) {
      items.push({ kind: 'day', key: `day-${k}`, label: dayLabel(ts, input.now) });
      lastDay = k;
    }
  };

  // The burst of state events that creates a room folds into one notice, until someone else or a message appears.
  let creation: NoticeItem | undefined;
  let creator = '';
  for (const e of timeline) {
    if (creation && (e.state_key === undefined || e.sender !== creator)) creation = undefined;
    if (creation) {
      const text = describeEvent(e, nameOf);
      if (text !== undefined) {
        creation.details!.push(text);
        creation.text = `${nameOf(e.sender)} created and configured the room`;
      }
      itemOfEvent.set(e.event_id, items.length - 1);
      continue;
    }
    let item: MessageItem | NoticeItem | undefined;
    if (MESSAGE_TYPES.has(e.type) && !isEdit(e)) {
      const deleted = isRedacted(e, redacted);
      let content = e.content;
      let edited = false;
      if (!deleted) {
        const edit = edits.get(e.event_id) ?? e.unsigned?.['m.relations']?.['m.replace'];
        const newContent = edit && edit.sender === e.sender && !isRedacted(edit, redacted) ? obj(edit.content['m.new_content']) : undefined;
        if (newContent) {
          content = newContent;
          edited = true;
        }
      }
      item = messageItem({
        key: e.event_id,
        eventId: e.event_id,
        sender: e.sender,
        ts: e.origin_server_ts,
        content: e.type === 'm.room.encrypted' ? { msgtype: 'm.text', body: 'Encrypted message' } : content,
        deleted,
        edited,
        status: 'sent',
      });
    } else {
      const text = describeEvent(e, nameOf);
      if (text !== undefined) item = { kind: 'notice', key: e.event_id, eventId: e.event_id, text, ts: e.origin_server_ts, readBy: [] };
      if (item?.kind === 'notice' && e.type === 'm.room.create') {
        creation = item = { ...item, details: [] };
        creator = e.sender;
      }
    }
    if (item) {
      pushDay(item.ts);
      items.push(item);
      if (item.kind === 'notice') prevMsg = undefined; // a notice in between starts a new group
    }
    if (items.length > 0) itemOfEvent.set(e.event_id, items.length - 1);
  }

  for (const p of input.pending) {
    pushDay(p.ts);
    items.push(
      messageItem({ key: `txn-${p.txnId}`, txnId: p.txnId, sender: me, ts: p.ts, content: p.content, deleted: false, edited: false, status: p.status, error: p.error }),
    );
  }

  for (const [userId, r] of input.receipts) {
    if (userId === me) continue;
    const i = itemOfEvent.get(r.eventId);
    if (i === undefined) continue;
    // Day separators carry no receipts: move to the item before.
    let j = i;
    while (j >= 0 && items[j].kind === 'day') j--;
    if (j >= 0) (items[j] as MessageItem | NoticeItem).readBy.push(userId);
  }
  return items;

  function messageItem(m: {
    key: string;
    eventId?: string;
    txnId?: string;
    sender: string;
    ts: number;
    content: JsonObject;
    deleted: boolean;
    edited: boolean;
    status: EchoStatus;
    error?: string;
  }): MessageItem {
    const continuation =
      prevMsg !== undefined &&
      prevMsg.sender === m.sender &&
      m.ts - prevMsg.ts < GROUP_MS &&
      m.ts >= prevMsg.ts &&
      dayKey(m.ts) === dayKey(prevMsg.ts);
    const item: MessageItem = {
      kind: 'message',
      key: m.key,
      eventId: m.eventId,
      txnId: m.txnId,
      sender: m.sender,
      senderName: nameOf(m.sender),
      ts: m.ts,
      body: m.deleted ? '' : typeof m.content.body === 'string' ? m.content.body : '',
      msgtype: typeof m.content.msgtype === 'string' ? m.content.msgtype : 'm.text',
      own: m.sender === me,
      edited: m.edited,
      deleted: m.deleted,
      status: m.status,
      error: m.error,
      continuation,
      readBy: [],
    };
    prevMsg = item;
    return item;
  }
}

const HISTORY: Record<string, string> = {
  world_readable: 'anyone',
  shared: 'all members',
  invited: 'members, from when they were invited',
  joined: 'members, from when they joined',
};

/** A one-line description of a state event, or undefined for events the timeline does not show. */
export function describeEvent(e: ClientEvent, nameOf: (userId: string) => string): string | undefined {
  const who = nameOf(e.sender);
  const c = e.content;
  const prev = e.unsigned?.prev_content;
  switch (e.type) {
    case 'm.room.create':
      return `${who} created the room`;
    case 'm.room.member': {
      const target = e.state_key ?? '';
      const name = typeof c.displayname === 'string' && c.displayname ? c.displayname : nameOf(target);
      const before = prev?.membership;
      const reason = typeof c.reason === 'string' && c.reason ? `: ${c.reason}` : '';
      switch (c.membership) {
        case 'join':
          if (before === 'join') {
            if (prev?.displayname !== c.displayname) {
              return typeof c.displayname === 'string' && c.displayname
                ? `${typeof prev?.displayname === 'string' && prev.displayname ? prev.displayname : nameOf(target)} is now ${c.displayname}`
                : `${name} removed their display name`;
            }
            return undefined; // avatar change and the like
          }
          return `${name} joined`;
        case 'invite':
          return `${who} invited ${name}`;
        case 'leave':
          if (e.sender === target) return before === 'invite' ? `${name} declined the invitation` : `${name} left`;
          if (before === 'ban') return `${who} unbanned ${nameOf(target)}`;
          if (before === 'invite') return `${who} withdrew ${nameOf(target)}'s invitation`;
          return `${who} removed ${nameOf(target)}${reason}`;
        case 'ban':
          return `${who} banned ${nameOf(target)}${reason}`;
        case 'knock':
          return `${name} asked to join`;
        default:
          return undefined;
      }
    }
    case 'm.room.name':
      return typeof c.name === 'string' && c.name ? `${who} named the room “${c.name}”` : `${who} removed the room name`;
    case 'm.room.topic':
      return typeof c.topic === 'string' && c.topic ? `${who} set the topic: ${c.topic}` : `${who} removed the topic`;
    case 'm.room.join_rules':
      if (c.join_rule === 'public') return `${who} made the room public`;
      if (c.join_rule === 'invite') return `${who} made the room invite-only`;
      if (c.join_rule === 'knock') return `${who} let people ask to join`;
      return undefined;
    case 'm.room.history_visibility': {
      const h = HISTORY[String(c.history_visibility)];
      return h ? `${who} made future history visible to ${h}` : undefined;
    }
    case 'm.room.canonical_alias':
      return typeof c.alias === 'string' && c.alias ? `${who} set the room address to ${c.alias}` : undefined;
    case 'm.room.encryption':
      return `${who} turned on encryption`;
    case 'm.room.tombstone':
      return `${who} replaced this room`;
    default:
      return undefined;
  }
}
