import { describe, expect, it } from 'vitest';
import { call, newHomeserver } from '../helpers/homeserver.js';
import { newUser } from '../helpers/users.js';

const V3 = '/_matrix/client/v3';
const filterPath = (userId: string, id?: string) =>
  `${V3}/user/${encodeURIComponent(userId)}/filter${id === undefined ? '' : `/${encodeURIComponent(id)}`}`;

const FILTER = {
  room: {
    state: { types: ['m.room.*'], not_rooms: ['!abc:example.org'], lazy_load_members: true },
    timeline: { limit: 10, types: ['m.room.message'], not_senders: ['@spam:example.org'] },
  },
  presence: { not_senders: ['@alice:example.org'] },
  event_format: 'client',
  event_fields: ['type', 'content.body'],
};

describe('filters', () => {
  it('stores a filter and returns it by ID, and getFilter serves it to /sync', async () => {
    const hs = await newHomeserver();
    const a = await newUser(hs);
    const res = await call(hs, 'POST', filterPath(a.userId), FILTER, a.accessToken);
    expect(res.status).toBe(200);
    expect(typeof res.body.filter_id).toBe('string');
    expect(res.body.filter_id.startsWith('{')).toBe(false);
    const got = await call(hs, 'GET', filterPath(a.userId, res.body.filter_id), undefined, a.accessToken);
    expect(got.body).toEqual(FILTER);
    expect(await hs.services.accounts.filters.getFilter(a.userId, res.body.filter_id)).toEqual(FILTER);
    const second = await call(hs, 'POST', filterPath(a.userId), {}, a.accessToken);
    expect(second.body.filter_id).not.toBe(res.body.filter_id);
  });

  it('answers unknown filters with 404 and other users with 403', async () => {
    const hs = await newHomeserver();
    const a = await newUser(hs);
    const b = await newUser(hs);
    const { body } = await call(hs, 'POST', filterPath(a.userId), FILTER, a.accessToken);
    const missing = await call(hs, 'GET', filterPath(a.userId, '999'), undefined, a.accessToken);
    expect([missing.status, missing.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    const foreignGet = await call(hs, 'GET', filterPath(a.userId, body.filter_id), undefined, b.accessToken);
    expect([foreignGet.status, foreignGet.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    const foreignPost = await call(hs, 'POST', filterPath(a.userId), FILTER, b.accessToken);
    expect([foreignPost.status, foreignPost.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    // Filters are per user: b cannot reach a's filter through its own ID either.
    const own = await call(hs, 'GET', filterPath(b.userId, body.filter_id), undefined, b.accessToken);
    expect(own.status).toBe(404);
  });

  it.each([
    [{ room: { timeline: { limit: 'ten' } } }, 'M_BAD_JSON'],
    [{ event_format: 'xml' }, 'M_INVALID_PARAM'],
    [{ room: { timeline: { limit: 0 } } }, 'M_INVALID_PARAM'],
    [{ room: { rooms: ['not a room'] } }, 'M_INVALID_PARAM'],
    [{ room: { state: { not_rooms: ['#alias:example.org'] } } }, 'M_INVALID_PARAM'],
    [{ presence: { senders: ['nobody'] } }, 'M_INVALID_PARAM'],
    [{ room: { state: { lazy_load_members: 'yes' } } }, 'M_BAD_JSON'],
  ])('refuses the filter %j with %s', async (filter, errcode) => {
    const hs = await newHomeserver();
    const a = await newUser(hs);
    const res = await call(hs, 'POST', filterPath(a.userId), filter, a.accessToken);
    expect([res.status, res.body.errcode]).toEqual([400, errcode]);
  });

  it('answers non-JSON with M_NOT_JSON and no token with M_MISSING_TOKEN', async () => {
    const hs = await newHomeserver();
    const a = await newUser(hs);
    const notJson = await call(hs, 'POST', filterPath(a.userId), 'nope', a.accessToken);
    expect([notJson.status, notJson.body.errcode]).toEqual([400, 'M_NOT_JSON']);
    const noToken = await call(hs, 'POST', filterPath(a.userId), {});
    expect([noToken.status, noToken.body.errcode]).toEqual([401, 'M_MISSING_TOKEN']);
  });
});
