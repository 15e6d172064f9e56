/**
 * Room settings: name, topic, who can read history, who can join. Fields I may not change are read-only.
 * https://spec.matrix.org/v1.19/client-server-api/#room-history-visibility
 * https://spec.matrix.org/v1.19/client-server-api/#mroomjoin_rules
 */
import { useState } from 'preact/hooks';
import type { JsonObject } from '../api/types.js';
import { errorText } from '../store/client-store.js';
import { canSendState } from '../store/power.js';
import { getState } from '../store/room-state.js';
import type { RoomState } from '../store/room-state.js';
import { roomTopic } from '../store/room-summary.js';
import { ConfirmButton, CopyButton, valueOf } from './common.js';
import { useApp } from './context.js';

function str(v: unknown, d: string): string {
  return typeof v === 'string' ? v : d;
}

export function RoomSettings({ room, onLeave }: { room: RoomState; onLeave: () => void }) {
  const { store } = useApp();
  const me = store.userId;
  const current = {
    name: str(getState(room, 'm.room.name')?.content.name, ''),
    topic: roomTopic(room),
    history: str(getState(room, 'm.room.history_visibility')?.content.history_visibility, 'shared'),
    join: str(getState(room, 'm.room.join_rules')?.content.join_rule, 'invite'),
  };
  const [form, setForm] = useState(current);
  const [busy, setBusy] = useState(false);
  const [msg, setMsg] = useState<{ ok: boolean; text: string }>();
  const may = (type: string) => canSendState(room, me, type);

  const changes: [string, JsonObject][] = [];
  if (form.name !== current.name) changes.push(['m.room.name', { name: form.name }]);
  if (form.topic !== current.topic) changes.push(['m.room.topic', { topic: form.topic }]);
  if (form.history !== current.history) changes.push(['m.room.history_visibility', { history_visibility: form.history }]);
  if (form.join !== current.join) changes.push(['m.room.join_rules', { join_rule: form.join }]);

  const save = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setMsg(undefined);
    try {
      for (const [type, content] of changes) await store.api.setState(room.roomId, type, '', content);
      setMsg({ ok: true, text: 'Saved' });
    } catch (err) {
      setMsg({ ok: false, text: errorText(err) });
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="panel-body" data-testid="room-settings">
      <form class="stack" onSubmit={save}>
        <label class="field">
          <span>Room name</span>
          <input value={form.name} disabled={!may('m.room.name')} maxLength={255} onInput={(e) => setForm({ ...form, name: valueOf(e) })} data-testid="settings-name" />
        </label>
        <label class="field">
          <span>Topic</span>
          <textarea rows={3} value={form.topic} disabled={!may('m.room.topic')} onInput={(e) => setForm({ ...form, topic: valueOf(e) })} data-testid="settings-topic" />
        </label>
        <label class="field">
          <span>Who can read the history</span>
          <select value={form.history} disabled={!may('m.room.history_visibility')} onChange={(e) => setForm({ ...form, history: valueOf(e) })} data-testid="settings-history">
            <option value="shared">Members (all history)</option>
            <option value="invited">Members, since they were invited</option>
            <option value="joined">Members, since they joined</option>
            <option value="world_readable">Anyone</option>
          </select>
        </label>
        <label class="field">
          <span>Who can join</span>
          <select value={form.join} disabled={!may('m.room.join_rules')} onChange={(e) => setForm({ ...form, join: valueOf(e) })} data-testid="settings-join">
            <option value="invite">Only people who are invited</option>
            <option value="public">Anyone who knows the room</option>
            <option value="knock">Anyone can ask to join</option>
          </select>
        </label>
        {msg && (
          <p class={msg.ok ? 'ok' : 'error'} role={msg.ok ? 'status' : 'alert'}>
            {msg.text}
          </p>
        )}
        <button type="submit" class="btn btn-primary" disabled={busy || changes.length === 0} data-testid="settings-save">
          {busy ? 'Saving…' : 'Save changes'}
        </button>
      </form>
      <section class="settings-section">
        <h3 class="panel-sub">Room ID</h3>
        <p class="row wrap">
          <code class="break">{room.roomId}</code>
          <CopyButton text={room.roomId} />
        </p>
      </section>
      <section class="settings-section">
        <ConfirmButton label="Leave room" confirmLabel="Leave this room?" onConfirm={onLeave} />
      </section>
    </div>
  );
}
