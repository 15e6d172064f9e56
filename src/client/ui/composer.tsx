/**
 * The message composer: Enter sends, Shift+Enter is a new line, typing notifications while writing, and an edit
 * mode for correcting one of my messages.
 * https://spec.matrix.org/v1.19/client-server-api/#typing-notifications
 */
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { errorText } from '../store/client-store.js';
import type { MessageItem } from '../store/timeline.js';
import { Icon } from './common.js';
import { useApp } from './context.js';

const TYPING_REFRESH_MS = 20_000;
const TYPING_IDLE_MS = 5_000;

export function Composer({ roomId, editing, onDoneEditing, disabled }: { roomId: string; editing?: MessageItem; onDoneEditing: () => void; disabled?: string }) {
  const { store } = useApp();
  const [text, setText] = useState('');
  const [error, setError] = useState<string>();
  const ref = useRef<HTMLTextAreaElement>(null);
  const typingSentAt = useRef(0);
  const idle = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  const stopTyping = () => {
    clearTimeout(idle.current);
    if (typingSentAt.current) {
      typingSentAt.current = 0;
      store.setTyping(roomId, false);
    }
  };
  // On a desktop, a room opens ready to type; on a phone that would pop the keyboard up over the messages.
  useEffect(() => {
    if (matchMedia('(hover: hover) and (min-width: 721px)').matches) ref.current?.focus();
  }, []);
  // Leaving the room (or the page) ends "typing…" for the others.
  useEffect(() => stopTyping, [roomId]);
  useEffect(() => {
    setText(editing ? editing.body : '');
    if (editing) ref.current?.focus();
  }, [editing]);

  // Grow with the text up to a few lines, then scroll.
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, 200)}px`;
  }, [text]);

  const onInput = (value: string) => {
    setText(value);
    if (editing) return;
    if (value.trim() === '') return stopTyping();
    const now = Date.now();
    if (now - typingSentAt.current > TYPING_REFRESH_MS) {
      typingSentAt.current = now;
      store.setTyping(roomId, true);
    }
    clearTimeout(idle.current);
    idle.current = setTimeout(stopTyping, TYPING_IDLE_MS);
  };

  const send = () => {
    const body = text.replace(/^\n+|\s+$/g, '');
    if (body === '') return;
    setError(undefined);
    if (editing?.eventId) {
      const target = editing.eventId;
      if (body !== editing.body) store.edit(roomId, target, body).catch((e: unknown) => setError(errorText(e)));
      onDoneEditing();
      setText('');
      return;
    }
    stopTyping();
    setText('');
    void store.sendText(roomId, body);
  };

  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    } else if (e.key === 'Escape' && editing) {
      e.preventDefault();
      onDoneEditing();
    }
  };

  return (
    <form
      class="composer"
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
    >
      {editing && (
        <div class="composer-mode">
          <span>Editing message</span>
          <button type="button" class="btn btn-sm btn-ghost" onClick={onDoneEditing}>
            Cancel
          </button>
        </div>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="composer-row">
        <textarea
          ref={ref}
          rows={1}
          value={text}
          placeholder={disabled ?? 'Write a message…'}
          aria-label="Message"
          data-testid="composer"
          disabled={disabled !== undefined}
          onInput={(e) => onInput(e.currentTarget.value)}
          onKeyDown={onKeyDown}
        />
        <button type="submit" class="btn btn-primary btn-icon send" aria-label={editing ? 'Save edit' : 'Send'} disabled={disabled !== undefined || text.trim() === ''} data-testid="send">
          <Icon name={editing ? 'check' : 'send'} />
        </button>
      </div>
    </form>
  );
}
