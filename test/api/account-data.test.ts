import { describe, expect, it } from 'vitest';
import { STORES } from '../../src/storage/schema.js';
import { call, newHomeserver } from '../helpers/homeserver.js';
import { newUser } from '../helpers/users.js';

const V3 = '/_matrix/client/v3';
const ROOM = '!room:example.org';
const e = encodeURIComponent;
const globalPath = (userId: string, type: string) => `${V3}/user/${e(userId)}/account_data/${e(type)}`;
const roomPath = (userId: string, roomId: string, type: string) =>
  `${V3}/user/${e(userId)}/rooms/${e(roomId)}/account_data/${e(type)}`;
const tagsPath = (userId: string, roomId: string, tag?: string) =>
  `${V3}/user/${e(userId)}/rooms/${e(roomId)}/tags${tag === undefined ? '' : `/${e(tag)}`}`;

describe('account data', () => {
  it('stores and returns global and per-room data separately', async () => {
    const hs = await newHomeserver();
    const a = await newUser(hs);
    expect((await call(hs, 'PUT', globalPath(a.userId, 'org.example.cfg'), { theme: 'dark' }, a.accessToken)).status).toBe(200);
    expect((await call(hs, 'PUT', roomPath(a.userId, ROOM, 'org.example.cfg'), { pinned: true }, a.accessToken)).status).toBe(200);
    expect((await call(hs, 'GET', globalPath(a.userId, 'org.example.cfg'), undefined, a.accessToken)).body).toEqual({ theme: 'dark' });
    expect((await call(hs, 'GET', roomPath(a.userId, ROOM, 'org.example.cfg'), undefined, a.accessToken)).body).toEqual({ pinned: true });
    await call(hs, 'PUT', globalPath(a.userId, 'org.example.cfg'), { theme: 'light' }, a.accessToken);
    expect((await call(hs, 'GET', globalPath(a.userId, 'org.example.cfg'), undefined, a.accessToken)).body).toEqual({ theme: 'light' });
  });

  it('answers missing data with 404 M_NOT_FOUND', async () => {
    const hs = await newHomeserver();
    const a = await newUser(hs);
    const g = await call(hs, 'GET', globalPath(a.userId, 'm.nothing'), undefined, a.accessToken);
    expect([g.status, g.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
    const r = await call(hs, 'GET', roomPath(a.userId, ROOM, 'm.nothing'), undefined, a.accessToken);
    expect([r.status, r.body.errcode]).toEqual([404, 'M_NOT_FOUND']);
  });

  it("refuses other users' data with 403 M_FORBIDDEN", async () => {
    const hs = await newHomeserver();
    const a = await newUser(hs);
    const b = await newUser(hs);
    await call(hs, 'PUT', globalPath(a.userId, 'org.example.x'), { v: 1 }, a.accessToken);
    const read = await call(hs, 'GET', globalPath(a.userId, 'org.example.x'), undefined, b.accessToken);
    expect([read.status, read.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    const write = await call(hs, 'PUT', roomPath(a.userId, ROOM, 'org.example.x'), { v: 2 }, b.accessToken);
    expect([write.status, write.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
  });

  it('refuses server-managed types with 405 M_BAD_JSON', async () => {
    const hs = await newHomeserver();
    const a = await newUser(hs);
    for (const path of [
      globalPath(a.userId, 'm.push_rules'),
      globalPath(a.userId, 'm.fully_read'),
      roomPath(a.userId, ROOM, 'm.fully_read'),
      roomPath(a.userId, ROOM, 'm.push_rules'),
    ]) {
      const res = await call(hs, 'PUT', path, { event_id: '$x' }, a.accessToken);
      expect([res.status, res.body.errcode]).toEqual([405, 'M_BAD_JSON']);
    }
  });

  it('validates the room ID and the body', async () => {
    const hs = await newHomeserver();
    const a = await newUser(hs);
    const badRoom = await call(hs, 'PUT', roomPath(a.userId, 'not-a-room', 'org.example.x'), {}, a.accessToken);
    expect([badRoom.status, badRoom.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    const badRoomGet = await call(hs, 'GET', roomPath(a.userId, 'not-a-room', 'org.example.x'), undefined, a.accessToken);
    expect([badRoomGet.status, badRoomGet.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    const notJson = await call(hs, 'PUT', globalPath(a.userId, 'org.example.x'), '{', a.accessToken);
    expect([notJson.status, notJson.body.errcode]).toEqual([400, 'M_NOT_JSON']);
    const array = await call(hs, 'PUT', globalPath(a.userId, 'org.example.x'), [1], a.accessToken);
    expect([array.status, array.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    const noToken = await call(hs, 'GET', globalPath(a.userId, 'org.example.x'));
    expect([noToken.status, noToken.body.errcode]).toEqual([401, 'M_MISSING_TOKEN']);
  });

  it('writes a stream entry per change and wakes /sync waiters', async () => {
    const hs = await newHomeserver();
    const a = await newUser(hs);
    const woken = hs.services.ctx.notifier.waitForChange(5_000);
    await call(hs, 'PUT', roomPath(a.userId, ROOM, 'org.example.x'), { v: 1 }, a.accessToken);
    await woken;
    const entries = await hs.services.ctx.kv.read((tx) => tx.range(STORES.stream));
    expect(entries.map(([, v]) => v)).toContainEqual({ kind: 'account_data', userId: a.userId, roomId: ROOM, dataType: 'org.example.x' });
    const pos = entries[entries.length - 1][0][0];
    expect(hs.services.ctx.notifier.position).toBe(pos);
  });

  it('forbids guests', async () => {
    const hs = await newHomeserver();
    const guest = await call(hs, 'POST', `${V3}/register?kind=guest`, {});
    const res = await call(hs, 'PUT', globalPath(guest.body.user_id, 'org.example.x'), {}, guest.body.access_token);
    expect([res.status, res.body.errcode]).toEqual([403, 'M_GUEST_ACCESS_FORBIDDEN']);
  });
});

describe('room tags', () => {
  it('adds, lists and removes tags as m.tag room account data', async () => {
    const hs = await newHomeserver();
    const a = await newUser(hs);
    expect((await call(hs, 'GET', tagsPath(a.userId, ROOM), undefined, a.accessToken)).body).toEqual({ tags: {} });
    expect((await call(hs, 'PUT', tagsPath(a.userId, ROOM, 'm.favourite'), { order: 0.5 }, a.accessToken)).status).toBe(200);
    expect((await call(hs, 'PUT', tagsPath(a.userId, ROOM, 'u.work'), {}, a.accessToken)).status).toBe(200);
    const tags = await call(hs, 'GET', tagsPath(a.userId, ROOM), undefined, a.accessToken);
    expect(tags.body).toEqual({ tags: { 'm.favourite': { order: 0.5 }, 'u.work': {} } });
    const asData = await call(hs, 'GET', roomPath(a.userId, ROOM, 'm.tag'), undefined, a.accessToken);
    expect(asData.body).toEqual(tags.body);
    expect((await call(hs, 'DELETE', tagsPath(a.userId, ROOM, 'u.work'), undefined, a.accessToken)).status).toBe(200);
    // Deleting an absent tag is fine.
    expect((await call(hs, 'DELETE', tagsPath(a.userId, ROOM, 'u.work'), undefined, a.accessToken)).status).toBe(200);
    expect((await call(hs, 'GET', tagsPath(a.userId, ROOM), undefined, a.accessToken)).body).toEqual({ tags: { 'm.favourite': { order: 0.5 } } });
  });

  it('refuses bad input and other users', async () => {
    const hs = await newHomeserver();
    const a = await newUser(hs);
    const b = await newUser(hs);
    const badOrder = await call(hs, 'PUT', tagsPath(a.userId, ROOM, 'u.x'), { order: 'first' }, a.accessToken);
    expect([badOrder.status, badOrder.body.errcode]).toEqual([400, 'M_BAD_JSON']);
    const outOfRange = await call(hs, 'PUT', tagsPath(a.userId, ROOM, 'u.x'), { order: 2 }, a.accessToken);
    expect([outOfRange.status, outOfRange.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    const longTag = await call(hs, 'PUT', tagsPath(a.userId, ROOM, 'u.' + 'x'.repeat(300)), {}, a.accessToken);
    expect([longTag.status, longTag.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    const badRoom = await call(hs, 'GET', tagsPath(a.userId, 'nope'), undefined, a.accessToken);
    expect([badRoom.status, badRoom.body.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    const foreign = await call(hs, 'GET', tagsPath(a.userId, ROOM), undefined, b.accessToken);
    expect([foreign.status, foreign.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
    const foreignDel = await call(hs, 'DELETE', tagsPath(a.userId, ROOM, 'u.x'), undefined, b.accessToken);
    expect([foreignDel.status, foreignDel.body.errcode]).toEqual([403, 'M_FORBIDDEN']);
  });
});
