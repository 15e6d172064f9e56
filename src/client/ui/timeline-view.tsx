/**
 * The scrolling timeline: pages back through /messages when scrolled near the top, stays at the bottom while new
 * messages arrive (unless the reader scrolled up), and keeps its place when older messages are prepended.
 */
import { useLayoutEffect, useMemo, useRef } from 'preact/hooks';
import { formatTime } from '../lib/format.js';
import type { RoomState } from '../store/room-state.js';
import { memberName } from '../store/room-summary.js';
import { buildTimeline } from '../store/timeline.js';
import type { MessageItem, TimelineItem } from '../store/timeline.js';
import { Avatar, ConfirmButton, Linkified } from './common.js';
import { useApp } from './context.js';
import { useNow, useSnapshot } from './hooks.js';

const NEAR_TOP_PX = 300;
const AT_BOTTOM_PX = 48;

export function TimelineView({ room, onEdit }: { room: RoomState; onEdit: (item: MessageItem) => void }) {
  const { store } = useApp();
  const snap = useSnapshot(store);
  const now = useNow();
  const me = store.userId;
  const items = useMemo(
    () => buildTimeline({ timeline: room.timeline, pending: room.pending, me, receipts: room.receipts, nameOf: (u) => memberName(room, u), now }),
    [room.timeline, room.pending, room.receipts, room.state, me, now],
  );
  const paginating = snap.paginating.has(room.roomId);
  const atStart = room.prevBatch === null;

  const ref = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const fromBottom = useRef(0);
  const lastKey = useRef<string | undefined>(undefined);

  const paginate = () => {
    store.paginate(room.roomId).catch(() => undefined);
  };
  const onScroll = () => {
    const el = ref.current;
    if (!el) return;
    fromBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight;
    atBottom.current = fromBottom.current < AT_BOTTOM_PX;
    if (el.scrollTop < NEAR_TOP_PX && !atStart) paginate();
  };

  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    const last = items[items.length - 1];
    const appended = last?.key !== lastKey.current;
    const mineNew = appended && last?.kind === 'message' && last.own && last.status === 'sending';
    if (atBottom.current || mineNew) {
      el.scrollTop = el.scrollHeight;
      atBottom.current = true;
    } else if (!appended) {
      // Older messages were added above: keep what the reader is looking at in place.
      el.scrollTop = el.scrollHeight - el.clientHeight - fromBottom.current;
    }
    fromBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight;
    lastKey.current = last?.key;
    // Not enough history to scroll yet: fetch more so the reader can.
    if (el.scrollHeight <= el.clientHeight + NEAR_TOP_PX && !atStart && !paginating) paginate();
  }, [items, atStart]);

  return (
    <div class="timeline" ref={ref} onScroll={onScroll} data-testid="timeline" tabIndex={0} aria-label="Messages">
      <div class="timeline-start" aria-live="polite">
        {atStart ? (
          <p class="muted">This is the beginning of the room.</p>
        ) : paginating ? (
          <p class="muted">Loading older messages…</p>
        ) : (
          <button type="button" class="btn btn-ghost btn-sm" onClick={paginate}>
            Load older messages
          </button>
        )}
      </div>
      <ol class="items" role="list">
        {items.map((it) => (
          <Item key={it.key} item={it} room={room} onEdit={onEdit} />
        ))}
      </ol>
    </div>
  );
}

function Item({ item, room, onEdit }: { item: TimelineItem; room: RoomState; onEdit: (m: MessageItem) => void }) {
  if (item.kind === 'day') {
    return (
      <li class="day" role="separator" aria-label={item.label}>
        <span>{item.label}</span>
      </li>
    );
  }
  if (item.kind === 'notice') {
    return (
      <li class="notice" data-testid="notice">
        {item.details && item.details.length > 0 ? (
          <details>
            <summary>{item.text}</summary>
            <ul class="notice-details">
              {item.details.map((d, i) => (
                <li key={i}>{d}</li>
              ))}
            </ul>
          </details>
        ) : (
          <span>{item.text}</span>
        )}
        {item.readBy.length > 0 && <ReadBy users={item.readBy} room={room} />}
      </li>
    );
  }
  return <Message item={item} room={room} onEdit={onEdit} />;
}

function Message({ item, room, onEdit }: { item: MessageItem; room: RoomState; onEdit: (m: MessageItem) => void }) {
  const { store } = useApp();
  const cls = ['msg', item.own ? 'own' : 'other', item.continuation ? 'cont' : 'first', item.status !== 'sent' ? item.status : '', item.msgtype === 'm.emote' ? 'emote' : '']
    .filter(Boolean)
    .join(' ');
  const canAct = item.own && item.status === 'sent' && !item.deleted && item.eventId;
  return (
    <li class={cls} data-testid="message" data-event-id={item.eventId} data-status={item.status} tabIndex={-1}>
      {!item.own && (item.continuation ? <span class="avatar-gap" /> : <Avatar id={item.sender} name={item.senderName} />)}
      <div class="msg-main">
        {!item.continuation && !item.own && (
          <div class="msg-head">
            <span class="sender" data-testid="sender">
              {item.senderName}
            </span>
          </div>
        )}
        <div class="bubble">
          {item.deleted ? (
            <span class="deleted" data-testid="message-deleted">
              Message deleted
            </span>
          ) : (
            <span class="body" data-testid="message-body">
              {item.msgtype === 'm.emote' ? `* ${item.senderName} ` : ''}
              <Linkified text={item.body} />
            </span>
          )}
          <span class="meta">
            {item.edited && !item.deleted && (
              <span class="edited" data-testid="edited">
                (edited)
              </span>
            )}
            <time dateTime={new Date(item.ts).toISOString()}>{formatTime(item.ts)}</time>
            {item.status === 'sending' && (
              <span class="sending" data-testid="sending">
                Sending…
              </span>
            )}
          </span>
        </div>
        {item.status === 'failed' && item.txnId && (
          <div class="failed" role="alert">
            <span>Not sent{item.error ? `: ${item.error}` : ''}.</span>
            <button type="button" class="btn btn-sm btn-soft" onClick={() => store.retry(room.roomId, item.txnId!)} data-testid="retry">
              Retry
            </button>
            <button type="button" class="btn btn-sm btn-ghost" onClick={() => store.discard(room.roomId, item.txnId!)}>
              Discard
            </button>
          </div>
        )}
        {canAct && (
          <div class="msg-actions">
            <button type="button" class="btn btn-sm btn-ghost" onClick={() => onEdit(item)} aria-label="Edit message">
              Edit
            </button>
            <ConfirmButton label="Delete" confirmLabel="Delete this message?" onConfirm={() => store.redact(room.roomId, item.eventId!).catch(() => undefined)} />
          </div>
        )}
        {item.readBy.length > 0 && <ReadBy users={item.readBy} room={room} />}
      </div>
    </li>
  );
}

function ReadBy({ users, room }: { users: string[]; room: RoomState }) {
  const names = users.map((u) => memberName(room, u));
  const label = `Read by ${names.join(', ')}`;
  return (
    <div class="read-by" data-testid="read-by" title={label} aria-label={label} role="img">
      {users.slice(0, 4).map((u, i) => (
        <Avatar key={u} id={u} name={names[i]} size="xs" />
      ))}
      {users.length > 4 && <span class="more">+{users.length - 4}</span>}
    </div>
  );
}
