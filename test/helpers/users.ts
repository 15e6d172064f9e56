/**
 * User builders: `const alice = await newUser(hs)` registers through the real API (POST /register with the
 * m.login.dummy stage) and returns what a client would keep.
 *
 * Accounts are registered without a password unless one is given, which skips the deliberately slow password
 * hash (~50–100 ms): most tests only need the access token. Pass `{ password }` to test login or
 * user-interactive auth.
 */
import { expect } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call } from './homeserver.js';

export interface TestUser {
  userId: string;
  accessToken: string;
  deviceId: string;
  /** Set when registered with a password. */
  password?: string;
}

let counter = 0;

/** Registers a user (localpart defaults to a fresh `user<n>`) and returns its ID, access token and device ID. */
export async function newUser(
  hs: Homeserver,
  localpart?: string,
  opts: { password?: string; deviceId?: string; displayName?: string } = {},
): Promise<TestUser> {
  const body: Record<string, unknown> = {
    username: localpart ?? `user${++counter}`,
    auth: { type: 'm.login.dummy' },
  };
  if (opts.password !== undefined) body.password = opts.password;
  if (opts.deviceId !== undefined) body.device_id = opts.deviceId;
  if (opts.displayName !== undefined) body.initial_device_display_name = opts.displayName;
  const res = await call(hs, 'POST', '/_matrix/client/v3/register', body);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  const user: TestUser = { userId: res.body.user_id, accessToken: res.body.access_token, deviceId: res.body.device_id };
  if (opts.password !== undefined) user.password = opts.password;
  return user;
}

/** Logs in with a password (m.login.password, m.id.user) and returns the new session. */
export async function login(
  hs: Homeserver,
  user: string,
  password: string,
  extra: Record<string, unknown> = {},
): Promise<{ userId: string; accessToken: string; deviceId: string }> {
  const res = await call(hs, 'POST', '/_matrix/client/v3/login', {
    type: 'm.login.password',
    identifier: { type: 'm.id.user', user },
    password,
    ...extra,
  });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return { userId: res.body.user_id, accessToken: res.body.access_token, deviceId: res.body.device_id };
}
