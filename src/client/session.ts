import { MatrixApi } from './api/client.js';
import type { FetchFn } from './api/http.js';

/**
 * The logged-in session, kept in the page's localStorage so a return visit (and every other tab of this origin)
 * is logged in without typing. The generated password lives here too: it is the only copy.
 */

export interface Session {
  baseUrl: string;
  userId: string;
  deviceId: string;
  accessToken: string;
  /** Set when the app chose the password (the person gave none). */
  generatedPassword?: string;
  /** Shown once after registering: the welcome with the Matrix ID. */
  isNew?: boolean;
}

const KEY = 'hearth.session.v1';

export interface SessionStorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

function store(): SessionStorageLike | undefined {
  try {
    return globalThis.localStorage;
  } catch {
    return undefined; // storage disabled
  }
}

export function loadSession(s: SessionStorageLike | undefined = store()): Session | undefined {
  const raw = s?.getItem(KEY);
  if (!raw) return undefined;
  try {
    const v = JSON.parse(raw) as Partial<Session>;
    if (typeof v.userId === 'string' && typeof v.accessToken === 'string' && typeof v.deviceId === 'string' && typeof v.baseUrl === 'string') {
      return v as Session;
    }
  } catch {
    // fall through: a corrupt entry is as good as none
  }
  return undefined;
}

export function saveSession(session: Session, s: SessionStorageLike | undefined = store()): void {
  s?.setItem(KEY, JSON.stringify(session));
}

export function clearSession(s: SessionStorageLike | undefined = store()): void {
  s?.removeItem(KEY);
}

/**
 * The server no longer knows our access token (logged out elsewhere, token expired). With the password Hearth
 * generated (its only copy is in the session) we sign in again rather than lose the account; otherwise (or when
 * that fails) the person signs in by hand.
 */
export async function signInAgain(session: Session, fetch?: FetchFn): Promise<Session | undefined> {
  if (!session.generatedPassword) return undefined;
  try {
    const res = await new MatrixApi({ baseUrl: session.baseUrl, fetch }).login(session.userId, session.generatedPassword, 'Hearth web');
    return { ...session, accessToken: res.access_token, deviceId: res.device_id, userId: res.user_id };
  } catch {
    return undefined;
  }
}
