/** Members with their power levels; invite, remove (kick) and ban when my power level allows it. */
import { useState } from 'preact/hooks';
import { isUserId } from '../lib/ids.js';
import { errorText } from '../store/client-store.js';
import { can } from '../store/power.js';
import type { RoomState } from '../store/room-state.js';
import { memberList } from '../store/room-summary.js';
import type { MemberInfo } from '../store/room-summary.js';
import { Avatar, ConfirmButton, ErrorText, valueOf } from './common.js';
import { useApp } from './context.js';

export function MemberPanel({ room }: { room: RoomState }) {
  const { store } = useApp();
  const me = store.userId;
  const members = memberList(room);
  const [error, setError] = useState<string>();
  const act = (f: () => Promise<unknown>) => {
    setError(undefined);
    f().catch((e: unknown) => setError(errorText(e)));
  };
  const joined = members.filter((m) => m.membership === 'join').length;
  const invited = members.filter((m) => m.membership === 'invite').length;
  return (
    <div class="panel-body" data-testid="member-panel">
      {can(room, me, 'invite') && <InviteForm roomId={room.roomId} />}
      <ErrorText error={error} />
      <h3 class="panel-sub">
        {joined} {joined === 1 ? 'member' : 'members'}
        {invited > 0 && ` · ${invited} invited`}
      </h3>
      <ul class="member-list">
        {members.map((m) => (
          <MemberRow key={m.userId} m={m} room={room} me={me} act={act} />
        ))}
      </ul>
    </div>
  );
}

function MemberRow({ m, room, me, act }: { m: MemberInfo; room: RoomState; me: string; act: (f: () => Promise<unknown>) => void }) {
  const { store } = useApp();
  const api = store.api;
  const canKick = m.membership !== 'ban' && can(room, me, 'kick', m.userId);
  const canBan = can(room, me, 'ban', m.userId);
  return (
    <li class="member" data-testid="member" data-user-id={m.userId}>
      <Avatar id={m.userId} name={m.name} />
      <span class="member-text">
        <span class="member-name">
          {m.name}
          {m.userId === me && <span class="muted"> (you)</span>}
        </span>
        <span class="member-id">{m.userId}</span>
      </span>
      <span class="member-tags">
        {m.role && (
          <span class="tag tag-role" data-testid="member-role">
            {m.role}
          </span>
        )}
        {m.membership === 'invite' && <span class="tag">Invited</span>}
        {m.membership === 'ban' && <span class="tag tag-bad">Banned</span>}
      </span>
      {(canKick || canBan) && (
        <span class="member-actions">
          {canKick && (
            <ConfirmButton
              label={m.membership === 'invite' ? 'Uninvite' : 'Remove'}
              confirmLabel={`Remove ${m.name}?`}
              onConfirm={() => act(() => api.kick(room.roomId, m.userId))}
            />
          )}
          {canBan && m.membership !== 'ban' && (
            <ConfirmButton label="Ban" confirmLabel={`Ban ${m.name}?`} onConfirm={() => act(() => api.ban(room.roomId, m.userId))} />
          )}
          {canBan && m.membership === 'ban' && (
            <button type="button" class="btn btn-sm btn-ghost" onClick={() => act(() => api.unban(room.roomId, m.userId))}>
              Unban
            </button>
          )}
        </span>
      )}
    </li>
  );
}

function InviteForm({ roomId }: { roomId: string }) {
  const { store } = useApp();
  const [who, setWho] = useState('');
  const [busy, setBusy] = useState(false);
  const [msg, setMsg] = useState<{ ok: boolean; text: string }>();
  const submit = async (e: Event) => {
    e.preventDefault();
    const u = who.trim();
    if (!isUserId(u)) return setMsg({ ok: false, text: 'Enter a Matrix ID like @name:server' });
    setBusy(true);
    setMsg(undefined);
    try {
      await store.api.invite(roomId, u);
      setWho('');
      setMsg({ ok: true, text: `Invited ${u}` });
    } catch (err) {
      setMsg({ ok: false, text: errorText(err) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="invite-form" onSubmit={submit}>
      <label class="field">
        <span>Invite someone</span>
        <span class="row">
          <input placeholder="@name:server" value={who} onInput={(e) => setWho(valueOf(e))} data-testid="invite-input" autoComplete="off" spellcheck={false} />
          <button type="submit" class="btn btn-primary" disabled={busy || who.trim() === ''} data-testid="invite-submit">
            Invite
          </button>
        </span>
      </label>
      {msg && (
        <p class={msg.ok ? 'ok' : 'error'} role={msg.ok ? 'status' : 'alert'}>
          {msg.text}
        </p>
      )}
    </form>
  );
}
