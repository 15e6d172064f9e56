/** The three ways to start something: create a room, start a direct chat, join a room by ID or address. */
import { useState } from 'preact/hooks';
import { MatrixApiError } from '../api/http.js';
import { isRoomAlias, isRoomId, isUserId } from '../lib/ids.js';
import { errorText } from '../store/client-store.js';
import { ErrorText, Modal, valueOf } from './common.js';
import { useApp } from './context.js';
import type { DialogKind } from './context.js';
import { navigate } from './hooks.js';

export function Dialog({ kind, onClose }: { kind: DialogKind; onClose: () => void }) {
  if (kind === 'create') return <CreateRoomDialog onClose={onClose} />;
  if (kind === 'dm') return <DirectChatDialog onClose={onClose} />;
  return <JoinDialog onClose={onClose} />;
}

function useSubmit(onClose: () => void) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const run = async (f: () => Promise<string>) => {
    setBusy(true);
    setError(undefined);
    try {
      const roomId = await f();
      onClose();
      navigate({ name: 'room', roomId });
    } catch (e) {
      setError(e instanceof MatrixApiError && e.errcode === 'M_NOT_FOUND' ? 'No such room (or it cannot be reached from here).' : errorText(e));
      setBusy(false);
    }
  };
  return { busy, error, setError, run };
}

function CreateRoomDialog({ onClose }: { onClose: () => void }) {
  const { store } = useApp();
  const [name, setName] = useState('');
  const [topic, setTopic] = useState('');
  const [isPublic, setPublic] = useState(false);
  const { busy, error, run } = useSubmit(onClose);
  return (
    <Modal title="New room" onClose={onClose} testid="create-room-dialog">
      <form class="stack" onSubmit={(e) => (e.preventDefault(), run(() => store.createRoom({ name: name.trim(), topic: topic.trim(), isPublic })))}>
        <label class="field">
          <span>Name</span>
          <input value={name} onInput={(e) => setName(valueOf(e))} required maxLength={255} autoFocus data-testid="create-room-name" />
        </label>
        <label class="field">
          <span>
            Topic <span class="muted">(optional)</span>
          </span>
          <input value={topic} onInput={(e) => setTopic(valueOf(e))} data-testid="create-room-topic" />
        </label>
        <fieldset class="choice">
          <legend>Who can join</legend>
          <label class="radio">
            <input type="radio" name="vis" checked={!isPublic} onChange={() => setPublic(false)} />
            <span>
              <strong>Private</strong>
              <small class="muted">Only people you invite</small>
            </span>
          </label>
          <label class="radio">
            <input type="radio" name="vis" checked={isPublic} onChange={() => setPublic(true)} data-testid="create-room-public" />
            <span>
              <strong>Public</strong>
              <small class="muted">Anyone can find and join it</small>
            </span>
          </label>
        </fieldset>
        <ErrorText error={error} />
        <div class="modal-actions">
          <button type="button" class="btn btn-ghost" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class="btn btn-primary" disabled={busy || name.trim() === ''} data-testid="create-room-submit">
            {busy ? 'Creating…' : 'Create room'}
          </button>
        </div>
      </form>
    </Modal>
  );
}

function DirectChatDialog({ onClose }: { onClose: () => void }) {
  const { store } = useApp();
  const [who, setWho] = useState('');
  const { busy, error, setError, run } = useSubmit(onClose);
  const submit = (e: Event) => {
    e.preventDefault();
    const u = who.trim();
    if (!isUserId(u)) return setError('Enter a Matrix ID like @name:server');
    if (u === store.userId) return setError('That is you.');
    void run(() => store.startDirectChat(u));
  };
  return (
    <Modal title="Direct chat" onClose={onClose} testid="dm-dialog">
      <form class="stack" onSubmit={submit}>
        <label class="field">
          <span>Their Matrix ID</span>
          <input value={who} onInput={(e) => setWho(valueOf(e))} placeholder="@name:server" autoFocus autoComplete="off" spellcheck={false} data-testid="dm-user" />
        </label>
        <ErrorText error={error} />
        <div class="modal-actions">
          <button type="button" class="btn btn-ghost" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class="btn btn-primary" disabled={busy || who.trim() === ''} data-testid="dm-submit">
            {busy ? 'Starting…' : 'Start chat'}
          </button>
        </div>
      </form>
    </Modal>
  );
}

function JoinDialog({ onClose }: { onClose: () => void }) {
  const { store } = useApp();
  const [target, setTarget] = useState('');
  const { busy, error, setError, run } = useSubmit(onClose);
  const submit = (e: Event) => {
    e.preventDefault();
    const t = target.trim();
    if (!isRoomId(t) && !isRoomAlias(t)) return setError('Enter a room ID (!…) or a room address (#name:server)');
    void run(() => store.join(t));
  };
  return (
    <Modal title="Join a room" onClose={onClose} testid="join-dialog">
      <form class="stack" onSubmit={submit}>
        <label class="field">
          <span>Room address or ID</span>
          <input value={target} onInput={(e) => setTarget(valueOf(e))} placeholder="#room:server" autoFocus autoComplete="off" spellcheck={false} data-testid="join-target" />
        </label>
        <ErrorText error={error} />
        <div class="modal-actions">
          <button type="button" class="btn btn-ghost" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class="btn btn-primary" disabled={busy || target.trim() === ''} data-testid="join-submit">
            {busy ? 'Joining…' : 'Join'}
          </button>
        </div>
      </form>
    </Modal>
  );
}
