import { describe, expect, it } from 'vitest';
import type { ProfileChange } from '../../src/services/profile.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import { newUser } from '../helpers/users.js';

const V3 = '/_matrix/client/v3';
const profilePath = (userId: string, key?: string) =>
  `${V3}/profile/${encodeURIComponent(userId)}${key === undefined ? '' : `/${encodeURIComponent(key)}`}`;

describe('profiles', () => {
  it('starts with the localpart as display name and serves the whole profile without auth', async () => {
    const hs = await newHomeserver();
    const alice = await newUser(hs, 'alice');
    const res = await call(hs, 'GET', profilePath(alice.userId));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ displayname: 'alice' });
    const field = await call(hs, 'GET', profilePath(alice.userId, 'displayname'));
    expect(field.body).toEqual({ displayname: 'alice' });
  });

  it('sets and reads display name, avatar URL, time zone and custom fields', async () => {
    const hs = await newHomeserver();
    const bob = await newUser(hs, 'bob');
    const set = (key: string, value: unknown) => call(hs, 'PUT', profilePath(bob.userId, key), { [key]: value }, bob.accessToken);
    expect((await set('displayname', 'Bob B.')).status).toBe(200);
    expect((await set('avatar_url', 'mxc://example.org/abc123')).status).toBe(200);
    expect((await set('m.tz', 'Europe/Paris')).status).toBe(200);
    expect((await set('org.example.pets', { cats: 2 })).status).toBe(200);
    const res = await call(hs, 'GET', profilePath(bob.userId));
    expect(res.body).toEqual({
      displayname: 'Bob B.',
      avatar_url: 'mxc://example.org/abc123',
      'm.tz': 'Europe/Paris',
      'org.example.pets': { cats: 2 },
    });
    expect((await call(hs, 'GET', profilePath(bob.userId, 'avatar_url'))).body).toEqual({ avatar_url: 'mxc://example.org/abc123' });
  });

  it('deletes fields, succeeding when the field is already gone', async () => {
    const hs = await newHomeserver();
    const cy = await newUser(hs, 'cy');
    const del = await call(hs, 'DELETE', profilePath(cy.userId, 'displayname'), undefined, cy.accessToken);
    expect(del.status).toBe(200);
    const gone = await call(hs, 'GET', profilePath(cy.userId, 'displayname'));
    expect([gone.status, gone.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    expect((await call(hs, 'DELETE', profilePath(cy.userId, 'displayname'), undefined, cy.accessToken)).status).toBe(200);
  });

  it("refuses changing another user's profile with 403", async () => {
    const hs = await newHomeserver();
    const dee = await newUser(hs, 'dee');
    const eve = await newUser(hs, 'eve');
    const put = await call(hs, 'PUT', profilePath(dee.userId, 'displayname'), { displayname: 'x' }, eve.accessToken);
    expect([put.status, put.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    const del = await call(hs, 'DELETE', profilePath(dee.userId, 'displayname'), undefined, eve.accessToken);
    expect([del.status, del.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
  });

  it('answers unknown users with 404 and invalid IDs with 400', async () => {
    const hs = await newHomeserver();
    const unknown = await call(hs, 'GET', profilePath(`@ghost:${hs.serverName}`));
    expect([unknown.status, unknown.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    const field = await call(hs, 'GET', profilePath(`@ghost:${hs.serverName}`, 'displayname'));
    expect([field.status, field.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    const invalid = await call(hs, 'GET', profilePath('not-a-user-id'));
    expect([invalid.status, invalid.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
  });

  it('validates keys and values', async () => {
    const hs = await newHomeserver();
    const fay = await newUser(hs, 'fay');
    const put = (key: string, body: unknown) => call(hs, 'PUT', profilePath(fay.userId, key), body, fay.accessToken);
    const codes = async (key: string, body: unknown) => {
      const r = await put(key, body);
      return [r.status, r.body.errcode];
    };
    expect(await codes('displayname', {})).toEqual([400, 'M_MISSING_PARAM']);
    expect(await codes('displayname', { avatar_url: 'mxc://a/b' })).toEqual([400, 'M_MISSING_PARAM']);
    expect(await codes('displayname', { displayname: 5 })).toEqual([400, 'M_BAD_JSON']);
    expect(await codes('displayname', { displayname: 'x'.repeat(300) })).toEqual([400, 'M_INVALID_PARAM']);
    expect(await codes('avatar_url', { avatar_url: 'https://example.org/a.png' })).toEqual([400, 'M_INVALID_PARAM']);
    expect(await codes('NotAKey', { NotAKey: 1 })).toEqual([400, 'M_INVALID_PARAM']);
    const longKey = `org.${'a'.repeat(300)}`;
    expect(await codes(longKey, { [longKey]: 1 })).toEqual([400, 'M_KEY_TOO_LARGE']);
    expect(await codes('org.example.big', { 'org.example.big': 'x'.repeat(70 * 1024) })).toEqual([413, 'M_TOO_LARGE']);
    expect(await codes('org.example.big', { 'org.example.big': 'x'.repeat(40 * 1024) })).toEqual([200, undefined]);
    expect(await codes('org.example.big2', { 'org.example.big2': 'x'.repeat(40 * 1024) })).toEqual([400, 'M_PROFILE_TOO_LARGE']);
    const notJson = await put('displayname', '{');
    expect([notJson.status, notJson.body.errcode]).toEqual([400, 'M_NOT_JSON']);
    const noToken = await call(hs, 'PUT', profilePath(fay.userId, 'displayname'), { displayname: 'x' });
    expect([noToken.status, noToken.body.errcode]).toEqual([401, 'M_MISSING_TOKEN']);
  });

  it('lets guests change only their display name', async () => {
    const hs = await newHomeserver();
    const guest = await call(hs, 'POST', `${V3}/register?kind=guest`, {});
    const { user_id: userId, access_token: token } = guest.body;
    expect((await call(hs, 'PUT', profilePath(userId, 'displayname'), { displayname: 'Visitor' }, token)).status).toBe(200);
    const avatar = await call(hs, 'PUT', profilePath(userId, 'avatar_url'), { avatar_url: 'mxc://a/b' }, token);
    expect([avatar.status, avatar.body.errcode]).toEqual([403, 'M_GUEST_ACCESS_FORBIDDEN']);
  });

  it('tells profileChanged listeners about committed changes only', async () => {
    const hs = await newHomeserver();
    const gil = await newUser(hs, 'gil');
    const changes: ProfileChange[] = [];
    hs.services.accounts.profile.profileChanged.push((c) => {
      changes.push(c);
    });
    await call(hs, 'PUT', profilePath(gil.userId, 'displayname'), { displayname: 'Gil' }, gil.accessToken);
    // Unchanged value and a refused value: no notification.
    await call(hs, 'PUT', profilePath(gil.userId, 'displayname'), { displayname: 'Gil' }, gil.accessToken);
    await call(hs, 'PUT', profilePath(gil.userId, 'displayname'), { displayname: 7 }, gil.accessToken);
    await call(hs, 'DELETE', profilePath(gil.userId, 'displayname'), undefined, gil.accessToken);
    expect(changes).toEqual([
      { userId: gil.userId, key: 'displayname', value: 'Gil', profile: { displayname: 'Gil' } },
      { userId: gil.userId, key: 'displayname', value: undefined, profile: {} },
    ]);
  });
});
