/** One room: header, timeline, typing line, composer, and the members / settings side panel. */
import { useEffect, useState } from 'preact/hooks';
import { errorText } from '../store/client-store.js';
import type { RoomState } from '../store/room-state.js';
import { joinedCount, memberName, roomName, roomTopic } from '../store/room-summary.js';
import type { MessageItem } from '../store/timeline.js';
import { typingText } from '../lib/format.js';
import { Avatar, ErrorText, Icon } from './common.js';
import { Composer } from './composer.js';
import { useApp } from './context.js';
import { navigate, routeHref, useSnapshot } from './hooks.js';
import { MemberPanel } from './member-panel.js';
import { RoomSettings } from './room-settings.js';
import { TimelineView } from './timeline-view.js';

type Panel = 'members' | 'settings' | undefined;

export function RoomView({ roomId }: { roomId: string }) {
  const { store } = useApp();
  const snap = useSnapshot(store);
  const room = snap.rooms.get(roomId);
  const [gone, setGone] = useState(false);
  useEffect(() => {
    setGone(false);
    if (room) return;
    // Just created or joined: sync brings it in a moment.
    let live = true;
    store.waitForRoom(roomId, 8_000).then((ok) => live && !ok && setGone(true));
    return () => {
      live = false;
    };
  }, [roomId, !!room]);

  if (!room) {
    return (
      <section class="room room-missing">
        <BackLink />
        <p class="muted center pad">{gone && snap.initialSyncDone ? 'You are not in this room.' : 'Opening the room…'}</p>
      </section>
    );
  }
  if (room.membership === 'invite') return <InviteView room={room} />;
  return <JoinedRoom key={roomId} room={room} />;
}

function BackLink() {
  return (
    <a class="btn btn-icon back" href={routeHref({ name: 'home' })} aria-label="Back to chats" data-testid="back">
      <Icon name="back" />
    </a>
  );
}

function JoinedRoom({ room }: { room: RoomState }) {
  const { store } = useApp();
  const me = store.userId;
  const [panel, setPanel] = useState<Panel>(undefined);
  const [editing, setEditing] = useState<MessageItem>();
  const [error, setError] = useState<string>();
  const name = roomName(room, me);
  const topic = roomTopic(room);

  // Read receipts: whenever new events arrive while the room is on screen and the page is visible.
  const last = room.timeline[room.timeline.length - 1]?.event_id;
  useEffect(() => {
    const mark = () => document.visibilityState === 'visible' && store.markRead(room.roomId);
    mark();
    document.addEventListener('visibilitychange', mark);
    return () => document.removeEventListener('visibilitychange', mark);
  }, [room.roomId, last]);

  const leave = async () => {
    try {
      await store.leave(room.roomId);
      navigate({ name: 'home' });
    } catch (e) {
      setError(errorText(e));
    }
  };
  const toggle = (p: Panel) => setPanel(panel === p ? undefined : p);
  const count = joinedCount(room);

  return (
    <section class={`room${panel ? ' with-panel' : ''}`} aria-label={name} data-testid="room-view">
      <div class="room-main">
        <header class="room-head">
          <BackLink />
          <Avatar id={room.roomId} name={name} />
          <div class="room-head-text">
            <h2 class="room-title" data-testid="room-name">
              {name}
            </h2>
            <p class="room-topic" title={topic}>
              {topic || `${count} ${count === 1 ? 'member' : 'members'}`}
            </p>
          </div>
          <button type="button" class={`btn btn-icon${panel === 'members' ? ' on' : ''}`} aria-pressed={panel === 'members'} aria-label="Members" onClick={() => toggle('members')} data-testid="open-members">
            <Icon name="users" />
          </button>
          <button type="button" class={`btn btn-icon${panel === 'settings' ? ' on' : ''}`} aria-pressed={panel === 'settings'} aria-label="Room settings" onClick={() => toggle('settings')} data-testid="open-settings">
            <Icon name="settings" />
          </button>
        </header>
        <ErrorText error={error} />
        <TimelineView room={room} onEdit={setEditing} />
        <Typing room={room} me={me} />
        <Composer roomId={room.roomId} editing={editing} onDoneEditing={() => setEditing(undefined)} />
      </div>
      {panel && (
        <aside
          class="panel"
          aria-label={panel === 'members' ? 'Members' : 'Room settings'}
          onKeyDown={(e) => e.key === 'Escape' && !(e.target instanceof HTMLSelectElement) && setPanel(undefined)}
        >
          <header class="panel-head">
            <h2>{panel === 'members' ? 'Members' : 'Room settings'}</h2>
            <button type="button" class="btn btn-icon" aria-label="Close panel" onClick={() => setPanel(undefined)} data-testid="close-panel">
              <Icon name="close" />
            </button>
          </header>
          {panel === 'members' ? <MemberPanel room={room} /> : <RoomSettings room={room} onLeave={leave} />}
        </aside>
      )}
    </section>
  );
}

function Typing({ room, me }: { room: RoomState; me: string }) {
  const text = typingText(room.typing.filter((u) => u !== me).map((u) => memberName(room, u)));
  return (
    <div class="typing" aria-live="polite" data-testid="typing">
      {text}
    </div>
  );
}

function InviteView({ room }: { room: RoomState }) {
  const { store } = useApp();
  const me = store.userId;
  const name = roomName(room, me);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const act = async (accept: boolean) => {
    setBusy(true);
    try {
      if (accept) await store.acceptInvite(room.roomId);
      else {
        await store.leave(room.roomId);
        navigate({ name: 'home' });
      }
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="room room-invite">
      <BackLink />
      <div class="card center-card">
        <Avatar id={room.roomId} name={name} size="lg" />
        <h2>{name}</h2>
        <p class="muted">You are invited to join.</p>
        <div class="row center">
          <button type="button" class="btn btn-primary" disabled={busy} onClick={() => act(true)}>
            Accept
          </button>
          <button type="button" class="btn btn-ghost" disabled={busy} onClick={() => act(false)}>
            Decline
          </button>
        </div>
        <ErrorText error={error} />
      </div>
    </section>
  );
}
