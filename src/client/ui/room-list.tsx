/** The sidebar: who I am, the actions to start something, and the room list (invites first, then by activity). */
import { useState } from 'preact/hooks';
import { dayKey, formatTime } from '../lib/format.js';
import { errorText } from '../store/client-store.js';
import type { RoomState } from '../store/room-state.js';
import { inviter, isDirect, lastMessage, memberName, roomName, sortRooms, unreadBadge } from '../store/room-summary.js';
import { Avatar, Icon } from './common.js';
import { useApp } from './context.js';
import { navigate, routeHref, useSnapshot } from './hooks.js';
import type { Route } from './hooks.js';
import { StatusBar } from './status.js';

export function Sidebar({ route }: { route: Route }) {
  const { store, session, displayName, openDialog } = useApp();
  const snap = useSnapshot(store);
  const rooms = sortRooms(snap.rooms.values());
  const openId = route.name === 'room' ? route.roomId : undefined;
  return (
    <aside class="sidebar" aria-label="Chats">
      <header class="sidebar-head">
        <a class="me" href={routeHref({ name: 'account' })} aria-current={route.name === 'account' ? 'page' : undefined} data-testid="account-link">
          <Avatar id={session.userId} name={displayName} />
          <span class="me-text">
            <span class="me-name">{displayName}</span>
            <span class="me-id" data-testid="sidebar-matrix-id">{session.userId}</span>
          </span>
          <Icon name="settings" />
          <span class="sr-only">Account and settings</span>
        </a>
      </header>
      <div class="sidebar-actions" role="group" aria-label="Start something">
        <button type="button" class="btn btn-soft" onClick={() => openDialog('create')} data-testid="new-room">
          <Icon name="plus" /> New room
        </button>
        <button type="button" class="btn btn-soft" onClick={() => openDialog('dm')} data-testid="new-dm">
          <Icon name="chat" /> Direct chat
        </button>
        <button type="button" class="btn btn-soft" onClick={() => openDialog('join')} data-testid="join-room">
          <Icon name="enter" /> Join
        </button>
      </div>
      <nav class="room-list-wrap" aria-label="Rooms">
        {!snap.initialSyncDone ? (
          <p class="muted pad">Loading your rooms…</p>
        ) : rooms.length === 0 ? (
          <div class="empty-list">
            <p>No rooms yet.</p>
            <p class="muted">Create a room, or start a direct chat with someone’s Matrix ID.</p>
          </div>
        ) : (
          <ul class="room-list" data-testid="room-list">
            {rooms.map((r) =>
              r.membership === 'invite' ? <InviteItem key={r.roomId} room={r} /> : <RoomItem key={r.roomId} room={r} open={r.roomId === openId} />,
            )}
          </ul>
        )}
      </nav>
      <StatusBar />
    </aside>
  );
}

function shortTime(ts: number): string {
  if (dayKey(ts) === dayKey(Date.now())) return formatTime(ts);
  return new Date(ts).toLocaleDateString(undefined, { day: 'numeric', month: 'short' });
}

function RoomItem({ room, open }: { room: RoomState; open: boolean }) {
  const { store } = useApp();
  const me = store.userId;
  const name = roomName(room, me);
  const last = lastMessage(room, me);
  const badge = unreadBadge(room, open);
  return (
    <li>
      <a
        class={`room-item${open ? ' active' : ''}${badge.count > 0 ? ' unread' : ''}`}
        href={routeHref({ name: 'room', roomId: room.roomId })}
        aria-current={open ? 'page' : undefined}
        data-testid="room-item"
        data-room-id={room.roomId}
      >
        <Avatar id={room.roomId} name={name} />
        <span class="room-item-text">
          <span class="room-item-top">
            <span class="room-item-name" data-testid="room-item-name">
              {name}
            </span>
            {last && <span class="room-item-time">{shortTime(last.ts)}</span>}
          </span>
          <span class="room-item-bottom">
            <span class="room-item-last">{last?.text ?? (isDirect(room, me, store.mDirect()) ? 'Direct chat' : 'No messages yet')}</span>
            {badge.count > 0 && (
              <span class={`badge${badge.highlight ? ' badge-hl' : ''}`} data-testid="unread-badge" aria-label={`${badge.count} unread`}>
                {badge.count > 99 ? '99+' : badge.count}
              </span>
            )}
          </span>
        </span>
      </a>
    </li>
  );
}

function InviteItem({ room }: { room: RoomState }) {
  const { store } = useApp();
  const me = store.userId;
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const name = roomName(room, me);
  const by = inviter(room, me);
  const act = async (accept: boolean) => {
    setBusy(true);
    setError(undefined);
    try {
      if (accept) {
        await store.acceptInvite(room.roomId);
        navigate({ name: 'room', roomId: room.roomId });
      } else {
        await store.leave(room.roomId);
      }
    } catch (e) {
      setError(errorText(e));
      setBusy(false);
    }
  };
  return (
    <li class="invite-item" data-testid="invite-item" data-room-id={room.roomId}>
      <div class="invite-top">
        <Avatar id={room.roomId} name={name} />
        <span class="room-item-text">
          <span class="room-item-name">{name}</span>
          <span class="room-item-last">
            {isDirect(room, me, {}) ? 'wants to chat with you' : by ? `Invited by ${memberName(room, by)}` : 'Invitation'}
          </span>
        </span>
      </div>
      <div class="invite-actions">
        <button type="button" class="btn btn-primary btn-sm" disabled={busy} onClick={() => act(true)} data-testid="accept-invite">
          Accept
        </button>
        <button type="button" class="btn btn-ghost btn-sm" disabled={busy} onClick={() => act(false)} data-testid="decline-invite">
          Decline
        </button>
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </li>
  );
}
