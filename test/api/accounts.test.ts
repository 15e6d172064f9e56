import { describe, expect, it } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { STORES } from '../../src/storage/schema.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import { login, newUser } from '../helpers/users.js';

const V3 = '/_matrix/client/v3';

function fakeClock(start = 1_700_000_000_000) {
  const clock = { t: start, now: () => clock.t };
  return clock;
}

const whoami = (hs: Homeserver, token: string) => call(hs, 'GET', `${V3}/account/whoami`, undefined, token);

function passwordAuth(user: string, password: string, session?: string) {
  const auth: Record<string, unknown> = { type: 'm.login.password', identifier: { type: 'm.id.user', user }, password };
  if (session !== undefined) auth.session = session;
  return auth;
}

describe('POST /register', () => {
  it('registers with the m.login.dummy stage and returns a working token', async () => {
    const hs = await newHomeserver();
    const res = await call(hs, 'POST', `${V3}/register`, { username: 'alice', auth: { type: 'm.login.dummy' } });
    expect(res.status).toBe(200);
    expect(res.body.user_id).toBe(`@alice:${hs.serverName}`);
    expect(res.body.home_server).toBe(hs.serverName);
    expect(res.body.access_token).toMatch(/^[A-Za-z0-9_-]{40,}$/);
    expect(res.body.refresh_token).toBeUndefined();
    expect(res.body.expires_in_ms).toBeUndefined();
    const who = await whoami(hs, res.body.access_token);
    expect(who.body).toEqual({ user_id: res.body.user_id, device_id: res.body.device_id, is_guest: false });
  });

  it('answers a request without auth with the UIA flows, then completes the session', async () => {
    const hs = await newHomeserver();
    const first = await call(hs, 'POST', `${V3}/register`, { username: 'bob', password: 'pw' });
    expect(first.status).toBe(401);
    expect(first.body.flows).toEqual([{ stages: ['m.login.dummy'] }]);
    expect(first.body.params).toEqual({});
    expect(typeof first.body.session).toBe('string');
    expect(first.body.errcode).toBeUndefined();
    const second = await call(hs, 'POST', `${V3}/register`, {
      username: 'bob',
      password: 'pw',
      auth: { type: 'm.login.dummy', session: first.body.session },
    });
    expect(second.status).toBe(200);
    // The completed session cannot be replayed.
    const replay = await call(hs, 'POST', `${V3}/register`, {
      username: 'bob2',
      auth: { type: 'm.login.dummy', session: first.body.session },
    });
    expect(replay.status).toBe(400);
    expect(replay.body.errcode).toBe('M_UNKNOWN');
  });

  it('lower-cases the username and generates one when none is given', async () => {
    const hs = await newHomeserver();
    const upper = await call(hs, 'POST', `${V3}/register`, { username: 'Carol', auth: { type: 'm.login.dummy' } });
    expect(upper.body.user_id).toBe(`@carol:${hs.serverName}`);
    const generated = await call(hs, 'POST', `${V3}/register`, { auth: { type: 'm.login.dummy' } });
    expect(generated.status).toBe(200);
    expect(generated.body.user_id).toMatch(/^@\d+:/);
  });

  it('refuses a taken username with M_USER_IN_USE before user-interactive auth', async () => {
    const hs = await newHomeserver();
    await newUser(hs, 'dave');
    const res = await call(hs, 'POST', `${V3}/register`, { username: 'dave' });
    expect(res.status).toBe(400);
    expect(res.body.errcode).toBe('M_USER_IN_USE');
  });

  it.each(['a:b', 'white space', 'émile', '123', '_reserved', '', 'x'.repeat(300)])(
    'refuses the username %j with M_INVALID_USERNAME',
    async (username) => {
      const hs = await newHomeserver();
      const res = await call(hs, 'POST', `${V3}/register`, { username, auth: { type: 'm.login.dummy' } });
      expect(res.status).toBe(400);
      expect(res.body.errcode).toBe('M_INVALID_USERNAME');
    },
  );

  it('answers malformed bodies with the spec codes', async () => {
    const hs = await newHomeserver();
    const notJson = await call(hs, 'POST', `${V3}/register`, '{nope');
    expect([notJson.status, notJson.body.errcode]).toEqual([400, 'M_NOT_JSON']);
    const badType = await call(hs, 'POST', `${V3}/register`, { username: 5 });
    expect([badType.status, badType.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    const badKind = await call(hs, 'POST', `${V3}/register?kind=admin`, {});
    expect([badKind.status, badKind.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    const unknownStage = await call(hs, 'POST', `${V3}/register`, { username: 'x1', auth: { type: 'm.login.magic' } });
    expect([unknownStage.status, unknownStage.body.errcode]).toEqual([400, 'M_UNRECOGNIZED']);
    const unknownSession = await call(hs, 'POST', `${V3}/register`, {
      username: 'x2',
      auth: { type: 'm.login.dummy', session: 'nope' },
    });
    expect([unknownSession.status, unknownSession.body.errcode]).toEqual([400, 'M_UNKNOWN']);
  });

  it('is refused with 403 M_FORBIDDEN when registration is closed', async () => {
    const hs = await newHomeserver({ registration: 'closed' });
    const res = await call(hs, 'POST', `${V3}/register`, { username: 'eve', auth: { type: 'm.login.dummy' } });
    expect(res.status).toBe(403);
    expect(res.body.errcode).toBe('M_FORBIDDEN');
  });

  it('needs a valid m.login.registration_token in token mode', async () => {
    const hs = await newHomeserver({ registration: 'token', registrationTokens: ['letmein'] });
    const first = await call(hs, 'POST', `${V3}/register`, { username: 'fay' });
    expect(first.status).toBe(401);
    expect(first.body.flows).toEqual([{ stages: ['m.login.registration_token'] }]);
    const dummy = await call(hs, 'POST', `${V3}/register`, { username: 'fay', auth: { type: 'm.login.dummy' } });
    expect(dummy.status).toBe(400);
    const wrong = await call(hs, 'POST', `${V3}/register`, {
      username: 'fay',
      auth: { type: 'm.login.registration_token', token: 'guess', session: first.body.session },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.body.errcode).toBe('M_UNAUTHORIZED');
    expect(wrong.body.session).toBe(first.body.session);
    expect(wrong.body.flows).toEqual(first.body.flows);
    const ok = await call(hs, 'POST', `${V3}/register`, {
      username: 'fay',
      auth: { type: 'm.login.registration_token', token: 'letmein', session: first.body.session },
    });
    expect(ok.status).toBe(200);
  });

  it('with inhibit_login returns only the user ID', async () => {
    const hs = await newHomeserver();
    const res = await call(hs, 'POST', `${V3}/register`, {
      username: 'gus',
      password: 'secret',
      inhibit_login: true,
      auth: { type: 'm.login.dummy' },
    });
    expect(res.status).toBe(200);
    expect(res.body.access_token).toBeUndefined();
    expect(res.body.device_id).toBeUndefined();
    await login(hs, 'gus', 'secret');
  });

  it('issues a refresh token and expiry when asked, and keeps the requested device ID', async () => {
    const hs = await newHomeserver({ accessTokenLifetimeMs: 60_000 });
    const res = await call(hs, 'POST', `${V3}/register`, {
      username: 'hal',
      device_id: 'MYDEVICE',
      refresh_token: true,
      auth: { type: 'm.login.dummy' },
    });
    expect(res.body.device_id).toBe('MYDEVICE');
    expect(res.body.expires_in_ms).toBe(60_000);
    expect(typeof res.body.refresh_token).toBe('string');
  });

  it('registers guests when allowed, ignoring the username', async () => {
    const hs = await newHomeserver({ allowGuests: true });
    const res = await call(hs, 'POST', `${V3}/register?kind=guest`, { username: 'ignored', initial_device_display_name: 'G' });
    expect(res.status).toBe(200);
    expect(res.body.user_id).toMatch(/^@\d+:/);
    expect((await whoami(hs, res.body.access_token)).body.is_guest).toBe(true);
    const devices = await call(hs, 'GET', `${V3}/devices`, undefined, res.body.access_token);
    expect(devices.body.devices[0].display_name).toBe('G');
    const closed = await newHomeserver({ allowGuests: false });
    const refused = await call(closed, 'POST', `${V3}/register?kind=guest`, {});
    expect([refused.status, refused.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
  });
});

describe('GET /register/available and registration token validity', () => {
  it('tells available, taken and invalid names apart', async () => {
    const hs = await newHomeserver();
    await newUser(hs, 'ivy');
    const free = await call(hs, 'GET', `${V3}/register/available?username=ivan`);
    expect(free.body).toEqual({ available: true });
    const taken = await call(hs, 'GET', `${V3}/register/available?username=IVY`);
    expect([taken.status, taken.body.errcode]).toEqual([400, 'M_USER_IN_USE']);
    const invalid = await call(hs, 'GET', `${V3}/register/available?username=a%3Ab`);
    expect([invalid.status, invalid.body.errcode]).toEqual([400, 'M_INVALID_USERNAME']);
    const missing = await call(hs, 'GET', `${V3}/register/available`);
    expect([missing.status, missing.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    const closed = await newHomeserver({ registration: 'closed' });
    const refused = await call(closed, 'GET', `${V3}/register/available?username=ivan`);
    expect([refused.status, refused.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
  });

  it('checks registration tokens: valid only in token mode, 403 when registration is closed', async () => {
    const hs = await newHomeserver({ registration: 'token', registrationTokens: ['t1'] });
    const path = '/_matrix/client/v1/register/m.login.registration_token/validity';
    expect((await call(hs, 'GET', `${path}?token=t1`)).body).toEqual({ valid: true });
    expect((await call(hs, 'GET', `${path}?token=t2`)).body).toEqual({ valid: false });
    expect((await call(hs, 'GET', path)).body.errcode).toBe('M_MISSING_PARAM');
    const open = await newHomeserver({ registrationTokens: ['t1'] });
    expect((await call(open, 'GET', `${path}?token=t1`)).body).toEqual({ valid: false });
    const closed = await newHomeserver({ registration: 'closed' });
    const res = await call(closed, 'GET', `${path}?token=t1`);
    expect([res.status, res.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
  });
});

describe('login', () => {
  it('offers m.login.password', async () => {
    const hs = await newHomeserver();
    const res = await call(hs, 'GET', `${V3}/login`);
    expect(res.body.flows).toContainEqual({ type: 'm.login.password' });
  });

  it('accepts a localpart, a full user ID, any case, and the deprecated top-level user', async () => {
    const hs = await newHomeserver();
    const jo = await newUser(hs, 'jo', { password: 'pw1' });
    expect((await login(hs, 'jo', 'pw1')).userId).toBe(jo.userId);
    expect((await login(hs, jo.userId, 'pw1')).userId).toBe(jo.userId);
    expect((await login(hs, 'JO', 'pw1')).userId).toBe(jo.userId);
    const legacy = await call(hs, 'POST', `${V3}/login`, { type: 'm.login.password', user: 'jo', password: 'pw1' });
    expect(legacy.status).toBe(200);
    expect(legacy.body.user_id).toBe(jo.userId);
    expect((await whoami(hs, legacy.body.access_token)).body.user_id).toBe(jo.userId);
  });

  it('refuses wrong passwords and unknown users alike with 403 M_FORBIDDEN', async () => {
    const hs = await newHomeserver();
    await newUser(hs, 'kim', { password: 'right' });
    for (const [user, password] of [['kim', 'wrong'], ['nobody', 'right'], ['@kim:other.example', 'right']]) {
      const res = await call(hs, 'POST', `${V3}/login`, {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user },
        password,
      });
      expect([res.status, res.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    }
    const thirdParty = await call(hs, 'POST', `${V3}/login`, {
      type: 'm.login.password',
      identifier: { type: 'm.id.thirdparty', medium: 'email', address: 'kim@example.org' },
      password: 'right',
    });
    expect(thirdParty.status).toBe(403);
  });

  it('answers malformed logins with the spec codes', async () => {
    const hs = await newHomeserver();
    const noType = await call(hs, 'POST', `${V3}/login`, { password: 'x' });
    expect([noType.status, noType.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    const badType = await call(hs, 'POST', `${V3}/login`, { type: 'm.login.token', token: 'x' });
    expect([badType.status, badType.body.errcode]).toEqual([400, 'M_UNKNOWN']);
    const noPassword = await call(hs, 'POST', `${V3}/login`, { type: 'm.login.password', user: 'x' });
    expect([noPassword.status, noPassword.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    const noUser = await call(hs, 'POST', `${V3}/login`, { type: 'm.login.password', password: 'x' });
    expect([noUser.status, noUser.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    const notJson = await call(hs, 'POST', `${V3}/login`, 'nope');
    expect([notJson.status, notJson.body.errcode]).toEqual([400, 'M_NOT_JSON']);
  });

  it('includes well_known when the public base URL is configured', async () => {
    const hs = await newHomeserver({ publicBaseUrl: 'https://hs.example.org' });
    await newUser(hs, 'wk', { password: 'pw' });
    const res = await call(hs, 'POST', `${V3}/login`, { type: 'm.login.password', user: 'wk', password: 'pw' });
    expect(res.body.well_known).toEqual({ 'm.homeserver': { base_url: 'https://hs.example.org' } });
  });

  it('reuses a known device ID, revoking the old token, and names new devices', async () => {
    const hs = await newHomeserver();
    const lee = await newUser(hs, 'lee', { password: 'pw' });
    const again = await login(hs, 'lee', 'pw', { device_id: lee.deviceId, initial_device_display_name: 'ignored' });
    expect(again.deviceId).toBe(lee.deviceId);
    expect((await whoami(hs, lee.accessToken)).body.errcode).toBe('M_UNKNOWN_TOKEN');
    expect((await whoami(hs, again.accessToken)).status).toBe(200);
    const phone = await login(hs, 'lee', 'pw', { initial_device_display_name: 'Phone' });
    expect(phone.deviceId).not.toBe(lee.deviceId);
    const devices = await call(hs, 'GET', `${V3}/devices`, undefined, again.accessToken);
    expect(devices.body.devices).toHaveLength(2);
    expect(devices.body.devices).toContainEqual({ device_id: phone.deviceId, display_name: 'Phone' });
  });
});

describe('access tokens', () => {
  it('distinguishes a missing token from an unknown one', async () => {
    const hs = await newHomeserver();
    const missing = await call(hs, 'GET', `${V3}/account/whoami`);
    expect([missing.status, missing.body.errcode]).toEqual([401, 'M_MISSING_TOKEN']);
    const unknown = await whoami(hs, 'hat_notatoken');
    expect([unknown.status, unknown.body.errcode]).toEqual([401, 'M_UNKNOWN_TOKEN']);
    expect(unknown.body.soft_logout).toBeUndefined();
  });

  it('expires refreshable tokens with soft_logout and refreshes them', async () => {
    const clock = fakeClock();
    const hs = await newHomeserver({ accessTokenLifetimeMs: 60_000 }, clock);
    await newUser(hs, 'max', { password: 'pw' });
    const res = await call(hs, 'POST', `${V3}/login`, {
      type: 'm.login.password',
      user: 'max',
      password: 'pw',
      refresh_token: true,
    });
    expect(res.body.expires_in_ms).toBe(60_000);
    expect((await whoami(hs, res.body.access_token)).status).toBe(200);
    clock.t += 60_001;
    const expired = await whoami(hs, res.body.access_token);
    expect([expired.status, expired.body.errcode, expired.body.soft_logout]).toEqual([401, 'M_UNKNOWN_TOKEN', true]);

    const r1 = await call(hs, 'POST', `${V3}/refresh`, { refresh_token: res.body.refresh_token });
    expect(r1.status).toBe(200);
    expect(r1.body.expires_in_ms).toBe(60_000);
    // The old refresh token stays usable until the new pair is used (e.g. the response was lost)…
    const r2 = await call(hs, 'POST', `${V3}/refresh`, { refresh_token: res.body.refresh_token });
    expect(r2.status).toBe(200);
    // …which replaces the unused pair minted before.
    expect((await whoami(hs, r1.body.access_token)).status).toBe(401);
    expect((await whoami(hs, r2.body.access_token)).body.user_id).toMatch(/^@max:/);
    // Using the new access token retires the old refresh token.
    const reused = await call(hs, 'POST', `${V3}/refresh`, { refresh_token: res.body.refresh_token });
    expect([reused.status, reused.body.errcode]).toEqual([401, 'M_UNKNOWN_TOKEN']);
    const r3 = await call(hs, 'POST', `${V3}/refresh`, { refresh_token: r2.body.refresh_token });
    expect(r3.status).toBe(200);
    expect((await whoami(hs, r3.body.access_token)).status).toBe(200);
  });

  it('refuses unknown refresh tokens and malformed refresh requests', async () => {
    const hs = await newHomeserver();
    const unknown = await call(hs, 'POST', `${V3}/refresh`, { refresh_token: 'hrt_nope' });
    expect([unknown.status, unknown.body.errcode]).toEqual([401, 'M_UNKNOWN_TOKEN']);
    const missing = await call(hs, 'POST', `${V3}/refresh`, {});
    expect([missing.status, missing.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
  });

  it('logout revokes the token and deletes its device; logout/all revokes every token', async () => {
    const hs = await newHomeserver();
    const ned = await newUser(hs, 'ned', { password: 'pw' });
    const second = await login(hs, 'ned', 'pw');
    const third = await login(hs, 'ned', 'pw');
    const out = await call(hs, 'POST', `${V3}/logout`, undefined, ned.accessToken);
    expect(out.status).toBe(200);
    expect((await whoami(hs, ned.accessToken)).body.errcode).toBe('M_UNKNOWN_TOKEN');
    const devices = await call(hs, 'GET', `${V3}/devices`, undefined, second.accessToken);
    expect(devices.body.devices.map((d: { device_id: string }) => d.device_id).sort()).toEqual(
      [second.deviceId, third.deviceId].sort(),
    );
    expect((await call(hs, 'POST', `${V3}/logout/all`, undefined, second.accessToken)).status).toBe(200);
    expect((await whoami(hs, second.accessToken)).status).toBe(401);
    expect((await whoami(hs, third.accessToken)).status).toBe(401);
  });
});

describe('POST /account/password', () => {
  it('needs the current password, then logs out the other devices but not this token', async () => {
    const hs = await newHomeserver();
    const olga = await newUser(hs, 'olga', { password: 'old' });
    const other = await login(hs, 'olga', 'old');
    const path = `${V3}/account/password`;
    const first = await call(hs, 'POST', path, { new_password: 'new' }, olga.accessToken);
    expect(first.status).toBe(401);
    expect(first.body.flows).toEqual([{ stages: ['m.login.password'] }]);
    const wrong = await call(hs, 'POST', path, { new_password: 'new', auth: passwordAuth('olga', 'bad', first.body.session) }, olga.accessToken);
    expect(wrong.status).toBe(401);
    expect(wrong.body.errcode).toBe('M_FORBIDDEN');
    expect(wrong.body.session).toBe(first.body.session);
    const ok = await call(hs, 'POST', path, { new_password: 'new', auth: passwordAuth('olga', 'old', first.body.session) }, olga.accessToken);
    expect(ok.status).toBe(200);
    expect((await whoami(hs, olga.accessToken)).status).toBe(200);
    expect((await whoami(hs, other.accessToken)).status).toBe(401);
    const oldLogin = await call(hs, 'POST', `${V3}/login`, { type: 'm.login.password', user: 'olga', password: 'old' });
    expect(oldLogin.status).toBe(403);
    await login(hs, 'olga', 'new');
  });

  it('keeps other sessions with logout_devices false', async () => {
    const hs = await newHomeserver();
    const pat = await newUser(hs, 'pat', { password: 'old' });
    const other = await login(hs, 'pat', 'old');
    const res = await call(
      hs,
      'POST',
      `${V3}/account/password`,
      { new_password: 'new', logout_devices: false, auth: passwordAuth('pat', 'old') },
      pat.accessToken,
    );
    expect(res.status).toBe(200);
    expect((await whoami(hs, other.accessToken)).status).toBe(200);
  });

  it('refuses proving another user, guests, a missing token and a missing new password', async () => {
    const hs = await newHomeserver();
    const quinn = await newUser(hs, 'quinn', { password: 'pw' });
    await newUser(hs, 'rita', { password: 'pw2' });
    const path = `${V3}/account/password`;
    const otherUser = await call(hs, 'POST', path, { new_password: 'x', auth: passwordAuth('rita', 'pw2') }, quinn.accessToken);
    expect([otherUser.status, otherUser.body.errcode]).toEqual([401, 'M_FORBIDDEN']);
    const noToken = await call(hs, 'POST', path, { new_password: 'x' });
    expect([noToken.status, noToken.body.errcode]).toEqual([401, 'M_MISSING_TOKEN']);
    const noPassword = await call(hs, 'POST', path, { auth: passwordAuth('quinn', 'pw') }, quinn.accessToken);
    expect([noPassword.status, noPassword.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    const guest = await call(hs, 'POST', `${V3}/register?kind=guest`, {});
    const asGuest = await call(hs, 'POST', path, { new_password: 'x' }, guest.body.access_token);
    expect([asGuest.status, asGuest.body.errcode]).toEqual([403, 'M_GUEST_ACCESS_FORBIDDEN']);
  });

  it('refuses a UIA session started for another operation', async () => {
    const hs = await newHomeserver();
    const sam = await newUser(hs, 'sam', { password: 'pw' });
    const first = await call(hs, 'POST', `${V3}/account/password`, { new_password: 'x' }, sam.accessToken);
    const res = await call(hs, 'POST', `${V3}/account/deactivate`, { auth: passwordAuth('sam', 'pw', first.body.session) }, sam.accessToken);
    expect([res.status, res.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
  });
});

describe('POST /account/deactivate', () => {
  it('revokes every token, runs the onDeactivate hooks, and refuses later logins', async () => {
    const hs = await newHomeserver();
    const tom = await newUser(hs, 'tom', { password: 'pw' });
    const seen: string[] = [];
    hs.services.accounts.onDeactivate.push((userId) => {
      seen.push(userId);
    });
    const first = await call(hs, 'POST', `${V3}/account/deactivate`, {}, tom.accessToken);
    expect(first.status).toBe(401);
    const res = await call(hs, 'POST', `${V3}/account/deactivate`, { auth: passwordAuth('tom', 'pw', first.body.session) }, tom.accessToken);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ id_server_unbind_result: 'success' });
    expect(seen).toEqual([tom.userId]);
    expect((await whoami(hs, tom.accessToken)).status).toBe(401);
    const again = await call(hs, 'POST', `${V3}/login`, { type: 'm.login.password', user: 'tom', password: 'pw' });
    expect([again.status, again.body.errcode]).toEqual([403, 'M_USER_DEACTIVATED']);
    const reuse = await call(hs, 'POST', `${V3}/register`, { username: 'tom', auth: { type: 'm.login.dummy' } });
    expect(reuse.body.errcode).toBe('M_USER_IN_USE');
    expect((await call(hs, 'GET', `${V3}/profile/${encodeURIComponent(tom.userId)}`)).status).toBe(404);
  });

  it('offers m.login.dummy to accounts that have no password', async () => {
    const hs = await newHomeserver();
    const uma = await newUser(hs, 'uma');
    const first = await call(hs, 'POST', `${V3}/account/deactivate`, {}, uma.accessToken);
    expect(first.body.flows).toEqual([{ stages: ['m.login.dummy'] }]);
    const res = await call(hs, 'POST', `${V3}/account/deactivate`, { auth: { type: 'm.login.dummy', session: first.body.session } }, uma.accessToken);
    expect(res.status).toBe(200);
  });

  it('needs an access token', async () => {
    const hs = await newHomeserver();
    const res = await call(hs, 'POST', `${V3}/account/deactivate`, {});
    expect([res.status, res.body.errcode]).toEqual([401, 'M_MISSING_TOKEN']);
  });
});

describe('devices', () => {
  it('lists, gets and renames the own devices only', async () => {
    const hs = await newHomeserver();
    const vic = await newUser(hs, 'vic', { displayName: 'Laptop' });
    const wes = await newUser(hs, 'wes');
    const one = await call(hs, 'GET', `${V3}/devices/${vic.deviceId}`, undefined, vic.accessToken);
    expect(one.body).toEqual({ device_id: vic.deviceId, display_name: 'Laptop' });
    const foreign = await call(hs, 'GET', `${V3}/devices/${wes.deviceId}`, undefined, vic.accessToken);
    expect([foreign.status, foreign.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    const rename = await call(hs, 'PUT', `${V3}/devices/${vic.deviceId}`, { display_name: 'Desk' }, vic.accessToken);
    expect(rename.status).toBe(200);
    const list = await call(hs, 'GET', `${V3}/devices`, undefined, vic.accessToken);
    expect(list.body.devices).toEqual([{ device_id: vic.deviceId, display_name: 'Desk' }]);
    const unknown = await call(hs, 'PUT', `${V3}/devices/NOPE`, { display_name: 'x' }, vic.accessToken);
    expect([unknown.status, unknown.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    const badName = await call(hs, 'PUT', `${V3}/devices/${vic.deviceId}`, { display_name: 5 }, vic.accessToken);
    expect([badName.status, badName.body.errcode]).toEqual([400, 'M_BAD_JSON']);
  });

  it('deletes a device after user-interactive auth, revoking its token', async () => {
    const hs = await newHomeserver();
    const xia = await newUser(hs, 'xia', { password: 'pw' });
    const phone = await login(hs, 'xia', 'pw');
    const deleted: string[][] = [];
    hs.services.accounts.onDevicesDeleted.push((_u, ids) => {
      deleted.push([...ids]);
    });
    const path = `${V3}/devices/${phone.deviceId}`;
    const first = await call(hs, 'DELETE', path, {}, xia.accessToken);
    expect(first.status).toBe(401);
    expect(first.body.flows).toEqual([{ stages: ['m.login.password'] }]);
    expect((await whoami(hs, phone.accessToken)).status).toBe(200);
    const res = await call(hs, 'DELETE', path, { auth: passwordAuth('xia', 'pw', first.body.session) }, xia.accessToken);
    expect(res.status).toBe(200);
    expect(deleted).toEqual([[phone.deviceId]]);
    expect((await whoami(hs, phone.accessToken)).status).toBe(401);
    expect((await whoami(hs, xia.accessToken)).status).toBe(200);
    // Already gone: still 200 ("or had been removed previously").
    const again = await call(hs, 'DELETE', path, { auth: passwordAuth('xia', 'pw') }, xia.accessToken);
    expect(again.status).toBe(200);
  });

  it('deletes devices in bulk and validates the list', async () => {
    const hs = await newHomeserver();
    const yan = await newUser(hs, 'yan', { password: 'pw' });
    const a = await login(hs, 'yan', 'pw');
    const b = await login(hs, 'yan', 'pw');
    const bad = await call(hs, 'POST', `${V3}/delete_devices`, { devices: 'all' }, yan.accessToken);
    expect([bad.status, bad.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    const missing = await call(hs, 'POST', `${V3}/delete_devices`, {}, yan.accessToken);
    expect([missing.status, missing.body.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    const res = await call(
      hs,
      'POST',
      `${V3}/delete_devices`,
      { devices: [a.deviceId, b.deviceId], auth: passwordAuth('yan', 'pw') },
      yan.accessToken,
    );
    expect(res.status).toBe(200);
    expect((await whoami(hs, a.accessToken)).status).toBe(401);
    expect((await whoami(hs, b.accessToken)).status).toBe(401);
    const list = await call(hs, 'GET', `${V3}/devices`, undefined, yan.accessToken);
    expect(list.body.devices).toHaveLength(1);
  });

  it('records device-list changes in the stream for /sync', async () => {
    const hs = await newHomeserver();
    const zed = await newUser(hs, 'zed');
    const entries = await hs.services.ctx.kv.read((tx) => tx.range(STORES.stream));
    expect(entries.map(([, e]) => e)).toContainEqual({ kind: 'device_list', userId: zed.userId, deviceId: zed.deviceId });
  });
});

describe('GET /capabilities', () => {
  it('lists the room versions and account capabilities', async () => {
    const hs = await newHomeserver();
    const amy = await newUser(hs);
    const res = await call(hs, 'GET', `${V3}/capabilities`, undefined, amy.accessToken);
    expect(res.status).toBe(200);
    const c = res.body.capabilities;
    expect(c['m.room_versions'].default).toBe('12');
    expect(Object.keys(c['m.room_versions'].available).sort((x, y) => Number(x) - Number(y))).toEqual(
      ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12'],
    );
    expect(c['m.change_password']).toEqual({ enabled: true });
    expect(c['m.set_displayname']).toEqual({ enabled: true });
    expect(c['m.set_avatar_url']).toEqual({ enabled: true });
    expect(c['m.3pid_changes']).toEqual({ enabled: false });
    expect(c['m.get_login_token']).toEqual({ enabled: false });
    expect((await call(hs, 'GET', `${V3}/capabilities`)).body.errcode).toBe('M_MISSING_TOKEN');
  });
});
