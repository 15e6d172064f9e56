/** Me: Matrix ID, display name, the generated password, my devices, the homeserver status, sign out. */
import { useEffect, useState } from 'preact/hooks';
import type { Device } from '../api/types.js';
import { formatAgo } from '../lib/format.js';
import { errorText } from '../store/client-store.js';
import { Avatar, CopyButton, ErrorText, Icon, valueOf } from './common.js';
import { useApp } from './context.js';
import { routeHref } from './hooks.js';
import { StatusArea } from './status.js';

export function AccountView() {
  const { session, logout } = useApp();
  return (
    <section class="account" aria-labelledby="account-title" data-testid="account-view">
      <header class="room-head">
        <a class="btn btn-icon back" href={routeHref({ name: 'home' })} aria-label="Back to chats">
          <Icon name="back" />
        </a>
        <h2 id="account-title" class="room-title">
          Account
        </h2>
      </header>
      <div class="account-body">
        <ProfileCard />
        {session.generatedPassword && <PasswordCard password={session.generatedPassword} />}
        <section class="card">
          <h3>Devices</h3>
          <Devices />
        </section>
        <section class="card">
          <h3>Status</h3>
          <StatusArea />
        </section>
        <section class="card">
          <h3>Sign out</h3>
          <p class="muted">
            {session.generatedPassword
              ? 'Your password was generated and is only stored in this browser: note it down first if you want to sign in again.'
              : 'You can sign in again with your Matrix ID and password.'}
          </p>
          <button type="button" class="btn btn-danger-ghost" onClick={logout} data-testid="logout">
            Sign out
          </button>
        </section>
      </div>
    </section>
  );
}

function ProfileCard() {
  const { store, session, displayName, setDisplayName } = useApp();
  const [name, setName] = useState(displayName);
  const [busy, setBusy] = useState(false);
  const [msg, setMsg] = useState<{ ok: boolean; text: string }>();
  useEffect(() => setName(displayName), [displayName]);
  const save = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setMsg(undefined);
    try {
      await store.api.setDisplayName(session.userId, name.trim());
      setDisplayName(name.trim());
      setMsg({ ok: true, text: 'Saved' });
    } catch (err) {
      setMsg({ ok: false, text: errorText(err) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="card profile">
      <div class="profile-top">
        <Avatar id={session.userId} name={displayName} size="lg" />
        <div>
          <div class="profile-name">{displayName}</div>
          <div class="row wrap">
            <code class="break" data-testid="my-matrix-id">
              {session.userId}
            </code>
            <CopyButton text={session.userId} testid="copy-matrix-id" />
          </div>
          <p class="muted small">Give this Matrix ID to people so they can start a chat with you.</p>
        </div>
      </div>
      <form class="row end" onSubmit={save}>
        <label class="field grow">
          <span>Display name</span>
          <input value={name} maxLength={100} onInput={(e) => setName(valueOf(e))} data-testid="displayname-input" />
        </label>
        <button type="submit" class="btn btn-primary" disabled={busy || name.trim() === '' || name.trim() === displayName} data-testid="displayname-save">
          Save
        </button>
      </form>
      {msg && (
        <p class={msg.ok ? 'ok' : 'error'} role={msg.ok ? 'status' : 'alert'}>
          {msg.text}
        </p>
      )}
    </section>
  );
}

function PasswordCard({ password }: { password: string }) {
  const [shown, setShown] = useState(false);
  return (
    <section class="card">
      <h3>Password</h3>
      <p class="muted">Hearth chose a strong password for you and keeps it in this browser.</p>
      <p class="row wrap">
        <code class="break">{shown ? password : '•'.repeat(16)}</code>
        <button type="button" class="btn btn-ghost btn-sm" onClick={() => setShown(!shown)} aria-pressed={shown}>
          {shown ? 'Hide' : 'Show'}
        </button>
        <CopyButton text={password} />
      </p>
    </section>
  );
}

function Devices() {
  const { store, session } = useApp();
  const [devices, setDevices] = useState<Device[]>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    store.api
      .devices()
      .then((r) => setDevices(r.devices))
      .catch((e: unknown) => setError(errorText(e)));
  }, [store]);
  if (error) return <ErrorText error={error} />;
  if (!devices) return <p class="muted">Loading…</p>;
  const now = Date.now();
  const sorted = [...devices].sort((a, b) => (a.device_id === session.deviceId ? -1 : b.device_id === session.deviceId ? 1 : (b.last_seen_ts ?? 0) - (a.last_seen_ts ?? 0)));
  return (
    <ul class="device-list" data-testid="devices">
      {sorted.map((d) => (
        <li key={d.device_id} class="device">
          <span class="device-name">
            {d.display_name || d.device_id}
            {d.device_id === session.deviceId && <span class="tag">This device</span>}
          </span>
          <span class="muted small">
            <code>{d.device_id}</code>
            {d.last_seen_ts ? ` · last seen ${formatAgo(d.last_seen_ts, now)}` : ''}
          </span>
        </li>
      ))}
    </ul>
  );
}
