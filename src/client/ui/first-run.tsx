/** First run: pick a name (password optional) → an account on this homeserver; or sign in to an existing one. */
import { useState } from 'preact/hooks';
import { MatrixApi } from '../api/client.js';
import { MatrixApiError } from '../api/http.js';
import { RegistrationTokenRequired, registerAccount } from '../api/register.js';
import { generatedLocalpart, localpartFromName, randomString } from '../lib/account.js';
import { isUserId } from '../lib/ids.js';
import type { Session } from '../session.js';
import { errorText } from '../store/client-store.js';
import { ErrorText, valueOf } from './common.js';

const DEVICE_NAME = 'Hearth web';

export function FirstRun({ baseUrl, onSession }: { baseUrl: string; onSession: (s: Session) => void }) {
  const [mode, setMode] = useState<'register' | 'login'>('register');
  return (
    <div class="first-run">
      <div class="card first-run-card">
        <div class="brand">
          <span class="brand-mark" aria-hidden="true">
            H
          </span>
          <span class="brand-name">Hearth</span>
        </div>
        {mode === 'register' ? (
          <RegisterForm baseUrl={baseUrl} onSession={onSession} onLogin={() => setMode('login')} />
        ) : (
          <LoginForm baseUrl={baseUrl} onSession={onSession} onRegister={() => setMode('register')} />
        )}
      </div>
      <p class="first-run-foot">Your own Matrix homeserver, running right here in this page. Your messages stay in this browser.</p>
    </div>
  );
}

function RegisterForm({ baseUrl, onSession, onLogin }: { baseUrl: string; onSession: (s: Session) => void; onLogin: () => void }) {
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [token, setToken] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const localpart = localpartFromName(name);

  async function submit(e: Event) {
    e.preventDefault();
    const display = name.trim();
    if (!display) return setError('Please choose a name.');
    setBusy(true);
    setError(undefined);
    const chosen = password !== '' ? password : randomString(24);
    const api = new MatrixApi({ baseUrl });
    try {
      const res = await registerAccount(api, {
        username: localpart || generatedLocalpart(),
        password: chosen,
        deviceName: DEVICE_NAME,
        registrationToken: token,
      });
      api.http.accessToken = res.access_token;
      // The display name keeps what was typed ("Zoë Smith"), the Matrix ID its plain form.
      await api.setDisplayName(res.user_id, display).catch(() => undefined);
      onSession({
        baseUrl,
        userId: res.user_id,
        deviceId: res.device_id,
        accessToken: res.access_token,
        ...(password === '' ? { generatedPassword: chosen } : {}),
        isNew: true,
      });
    } catch (err) {
      setBusy(false);
      if (err instanceof RegistrationTokenRequired) {
        setToken(token ?? '');
        setError('This homeserver needs a registration token to create accounts.');
      } else if (err instanceof MatrixApiError && err.errcode === 'M_USER_IN_USE') {
        setError(`The name “${localpart}” is already taken here. Try another one, or sign in.`);
      } else if (err instanceof MatrixApiError && err.errcode === 'M_INVALID_USERNAME') {
        setError('That name cannot be used. Try letters and numbers.');
      } else {
        setError(errorText(err));
      }
    }
  }

  return (
    <form onSubmit={submit} class="stack" aria-labelledby="fr-title">
      <h1 id="fr-title">Welcome</h1>
      <p class="muted">Choose a name to start chatting. No e-mail, no phone number.</p>
      <label class="field">
        <span>Your name</span>
        <input
          name="name"
          data-testid="first-run-name"
          autoComplete="nickname"
          autoFocus
          required
          maxLength={100}
          value={name}
          onInput={(e) => setName(valueOf(e))}
        />
        {name.trim() !== '' && (
          <small class="muted">
            Your Matrix ID will start with <code>@{localpart || 'user-…'}</code>
          </small>
        )}
      </label>
      <label class="field">
        <span>
          Password <span class="muted">(optional)</span>
        </span>
        <input type="password" name="password" autoComplete="new-password" value={password} onInput={(e) => setPassword(valueOf(e))} />
        <small class="muted">Leave it empty and Hearth creates a strong one and keeps it in this browser.</small>
      </label>
      {token !== undefined && (
        <label class="field">
          <span>Registration token</span>
          <input name="token" value={token} onInput={(e) => setToken(valueOf(e))} required />
        </label>
      )}
      <ErrorText error={error} />
      <button type="submit" class="btn btn-primary btn-lg" disabled={busy} data-testid="first-run-submit">
        {busy ? 'Creating your account…' : 'Start chatting'}
      </button>
      <p class="center muted">
        Already have an account here?{' '}
        <button type="button" class="link" onClick={onLogin}>
          Sign in
        </button>
      </p>
    </form>
  );
}

function LoginForm({ baseUrl, onSession, onRegister }: { baseUrl: string; onSession: (s: Session) => void; onRegister: () => void }) {
  const [user, setUser] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();

  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const u = user.trim();
      const res = await new MatrixApi({ baseUrl }).login(isUserId(u) ? u : u.replace(/^@/, ''), password, DEVICE_NAME);
      onSession({ baseUrl, userId: res.user_id, deviceId: res.device_id, accessToken: res.access_token });
    } catch (err) {
      setBusy(false);
      setError(err instanceof MatrixApiError && err.errcode === 'M_FORBIDDEN' ? 'Wrong name or password.' : errorText(err));
    }
  }

  return (
    <form onSubmit={submit} class="stack" aria-labelledby="login-title">
      <h1 id="login-title">Sign in</h1>
      <label class="field">
        <span>Matrix ID or name</span>
        <input name="user" autoComplete="username" autoFocus required value={user} onInput={(e) => setUser(valueOf(e))} />
      </label>
      <label class="field">
        <span>Password</span>
        <input type="password" name="password" autoComplete="current-password" required value={password} onInput={(e) => setPassword(valueOf(e))} />
      </label>
      <ErrorText error={error} />
      <button type="submit" class="btn btn-primary btn-lg" disabled={busy}>
        {busy ? 'Signing in…' : 'Sign in'}
      </button>
      <p class="center muted">
        New here?{' '}
        <button type="button" class="link" onClick={onRegister}>
          Create an account
        </button>
      </p>
    </form>
  );
}
