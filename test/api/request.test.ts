import { describe, expect, it } from 'vitest';
import type { AnyEndpoint } from '../../src/api/endpoint.js';
import { defineEndpoint } from '../../src/api/endpoint.js';
import { MatrixError } from '../../src/api/errors.js';
import * as validators from '../../src/api/generated/body-validators.js';
import { fieldName, queryBool, queryEnum, queryInt, queryJson, readBody, readJsonObject, requireQuery } from '../../src/api/request.js';
import { createRouter } from '../../src/api/router.js';

const principal = { userId: '@alice:example.org', deviceId: 'D' };
const router = (endpoints: AnyEndpoint[]) =>
  createRouter({ authenticate: async () => principal }, { endpoints });
const auth = { Authorization: 'Bearer t' };

/** The body the handler saw, echoed back. */
const echo = <const P extends string>(method: 'POST' | 'PUT', path: P, operationId: string, extra: Partial<AnyEndpoint> = {}) =>
  defineEndpoint({ method, path, operationId, auth: 'accessToken', handler: ({ body }) => ({ got: body }), ...extra } as AnyEndpoint);

const createRoom = echo('POST', '/_matrix/client/v3/createRoom', 'createRoom');
const sendMessage = echo('PUT', '/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}', 'sendMessage');
const register = defineEndpoint({
  method: 'POST',
  path: '/_matrix/client/v3/register',
  auth: 'none',
  operationId: 'register',
  handler: ({ body }) => ({ got: body }),
});
const login = defineEndpoint({ method: 'POST', path: '/_matrix/client/v3/login', auth: 'none', operationId: 'login', handler: ({ body }) => ({ got: body }) });
const invite = echo('POST', '/_matrix/client/v3/rooms/{roomId}/invite', 'inviteUser');
const setProfileField = echo('PUT', '/_matrix/client/v3/profile/{userId}/{keyName}', 'setProfileField');
const setTyping = echo('PUT', '/_matrix/client/v3/rooms/{roomId}/typing/{userId}', 'setTyping');
const setPresence = echo('PUT', '/_matrix/client/v3/presence/{userId}/status', 'setPresence');
const ALL = [createRoom, sendMessage, register, login, invite, setProfileField, setTyping, setPresence];

async function send(method: string, path: string, body?: BodyInit | null, headers: Record<string, string> = auth) {
  const init: RequestInit & { duplex?: 'half' } = { method, headers, body };
  if (body instanceof ReadableStream) init.duplex = 'half';
  const res = await router(ALL).fetch(new Request('http://hs.test' + path, init));
  return { status: res.status, json: (await res.json()) as Record<string, any> };
}
const post = (path: string, body: unknown) => send('POST', path, typeof body === 'string' ? body : JSON.stringify(body));
const put = (path: string, body: unknown) => send('PUT', path, typeof body === 'string' ? body : JSON.stringify(body));

describe('JSON bodies', () => {
  it('answers a body that is not JSON with 400 M_NOT_JSON', async () => {
    for (const bad of ['{"a":', 'hello', "{'single': 1}", '{"a": NaN}']) {
      const { status, json } = await post('/_matrix/client/v3/createRoom', bad);
      expect(status).toBe(400);
      expect(json.errcode).toBe('M_NOT_JSON');
    }
  });

  it('answers invalid UTF-8 with 400 M_NOT_JSON', async () => {
    const bytes = new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]); // {"a":"\xff\xfe"}
    const { status, json } = await send('POST', '/_matrix/client/v3/createRoom', bytes);
    expect(status).toBe(400);
    expect(json.errcode).toBe('M_NOT_JSON');
  });

  it('answers JSON that is not an object with 400 M_BAD_JSON', async () => {
    for (const bad of ['[]', '"room"', '42', 'null', 'true']) {
      const { status, json } = await post('/_matrix/client/v3/createRoom', bad);
      expect(status).toBe(400);
      expect(json.errcode).toBe('M_BAD_JSON');
    }
  });

  it('accepts a body without Content-Type, or with an odd one, and treats an empty body as {}', async () => {
    const none = await send('POST', '/_matrix/client/v3/createRoom', '{"name":"n"}', auth);
    expect(none.json.got).toEqual({ name: 'n' });
    const odd = await send('POST', '/_matrix/client/v3/createRoom', '{"name":"n"}', { ...auth, 'Content-Type': 'text/plain' });
    expect(odd.json.got).toEqual({ name: 'n' });
    const empty = await send('POST', '/_matrix/client/v3/createRoom', null);
    expect(empty.status).toBe(200);
    expect(empty.json.got).toEqual({});
  });

  it('keeps the body exactly as sent, unknown fields included', async () => {
    const body = { name: 'n', 'org.example.custom': { nested: [1, 2] }, creation_content: { 'm.federate': false, extra: 1 } };
    const { status, json } = await post('/_matrix/client/v3/createRoom', body);
    expect(status).toBe(200);
    expect(json.got).toEqual(body);
  });

  it('refuses a body over the limit with 413 M_TOO_LARGE, from the Content-Length alone', async () => {
    const big = JSON.stringify({ name: 'x'.repeat(70 * 1024) });
    const { status, json } = await post('/_matrix/client/v3/createRoom', big);
    expect(status).toBe(413);
    expect(json.errcode).toBe('M_TOO_LARGE');
  });

  it('stops reading a streamed body as soon as it passes the limit', async () => {
    let pulled = 0;
    let cancelled = false;
    const endless = new ReadableStream<Uint8Array>({
      pull(c) {
        pulled++;
        c.enqueue(new TextEncoder().encode('{"a":"' + 'x'.repeat(8 * 1024)));
      },
      cancel() {
        cancelled = true;
      },
    });
    const { status, json } = await send('POST', '/_matrix/client/v3/createRoom', endless);
    expect(status).toBe(413);
    expect(json.errcode).toBe('M_TOO_LARGE');
    expect(cancelled).toBe(true);
    expect(pulled).toBeLessThan(20); // 64 KiB in 8 KiB chunks, plus the stream's own read-ahead
  });

  it('honours a per-endpoint limit', async () => {
    const small = defineEndpoint({ ...createRoom, maxBodyBytes: 10 } as AnyEndpoint);
    const res = await router([small]).fetch(
      new Request('http://hs.test/_matrix/client/v3/createRoom', { method: 'POST', headers: auth, body: '{"name":"abcdef"}' }),
    );
    expect(res.status).toBe(413);
  });
});

describe('generated body validators', () => {
  it('createRoom: wrong types are M_BAD_JSON, refused values are M_INVALID_PARAM, each naming the field', async () => {
    const cases: [unknown, string, string][] = [
      [{ name: 5 }, 'M_BAD_JSON', 'name'],
      [{ invite: '@bob:x' }, 'M_BAD_JSON', 'invite'],
      [{ invite: [5] }, 'M_BAD_JSON', 'invite[0]'],
      [{ invite: ['bob'] }, 'M_INVALID_PARAM', 'invite[0]'],
      [{ visibility: 'secret' }, 'M_INVALID_PARAM', 'visibility'],
      [{ preset: 'party' }, 'M_INVALID_PARAM', 'preset'],
      [{ is_direct: 'yes' }, 'M_BAD_JSON', 'is_direct'],
      [{ initial_state: [{ content: {} }] }, 'M_MISSING_PARAM', 'initial_state[0].type'],
      [{ creation_content: [] }, 'M_BAD_JSON', 'creation_content'],
      [{ room_alias_name: ['x'] }, 'M_BAD_JSON', 'room_alias_name'],
      [{ power_level_content_override: 'high' }, 'M_BAD_JSON', 'power_level_content_override'],
    ];
    for (const [body, errcode, field] of cases) {
      const { status, json } = await post('/_matrix/client/v3/createRoom', body);
      expect({ body, status, errcode: json.errcode }).toEqual({ body, status: 400, errcode });
      if (field) expect(json.error).toContain(`'${field}'`);
    }
    const ok = await post('/_matrix/client/v3/createRoom', {
      visibility: 'public',
      preset: 'public_chat',
      invite: ['@bob:example.org'],
      initial_state: [{ type: 'm.room.topic', content: { topic: 't' } }],
      room_version: '11',
      is_direct: false,
    });
    expect(ok.status).toBe(200);
  });

  it('register and login: missing required fields are M_MISSING_PARAM, wrong types M_BAD_JSON', async () => {
    const r1 = await post('/_matrix/client/v3/register', { username: 5 });
    expect([r1.status, r1.json.errcode]).toEqual([400, 'M_BAD_JSON']);
    expect(r1.json.error).toContain("'username'");
    const r2 = await post('/_matrix/client/v3/register', { auth: { type: 5 } });
    expect(r2.json.errcode).toBe('M_BAD_JSON');
    expect(r2.json.error).toContain("'auth.type'");
    const r3 = await post('/_matrix/client/v3/register', { inhibit_login: 'no' });
    expect(r3.json.errcode).toBe('M_BAD_JSON');
    const ok = await post('/_matrix/client/v3/register', { username: 'alice', password: 'pw', auth: { type: 'm.login.dummy', session: 's' } });
    expect(ok.status).toBe(200);

    const l1 = await post('/_matrix/client/v3/login', { identifier: { type: 'm.id.user', user: 'alice' }, password: 'pw' });
    expect([l1.status, l1.json.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    expect(l1.json.error).toContain("'type'");
    const l2 = await post('/_matrix/client/v3/login', { type: 'm.login.password', identifier: { user: 'alice' } });
    expect(l2.json.errcode).toBe('M_MISSING_PARAM');
    expect(l2.json.error).toContain("'identifier.type'");
  });

  it('sendMessage: any JSON object is event content; anything else is M_BAD_JSON', async () => {
    const ok = await put('/_matrix/client/v3/rooms/!r:x/send/m.room.message/1', { msgtype: 'm.text', body: 'hi', 'm.new_content': {} });
    expect(ok.status).toBe(200);
    const arr = await put('/_matrix/client/v3/rooms/!r:x/send/m.room.message/2', [1]);
    expect([arr.status, arr.json.errcode]).toEqual([400, 'M_BAD_JSON']);
  });

  it('typing, presence, profile: the small bodies', async () => {
    const t = await put('/_matrix/client/v3/rooms/!r:x/typing/@alice:example.org', { timeout: 3000 });
    expect([t.status, t.json.errcode]).toEqual([400, 'M_MISSING_PARAM']);
    expect(t.json.error).toContain("'typing'");
    const t2 = await put('/_matrix/client/v3/rooms/!r:x/typing/@alice:example.org', { typing: true, timeout: 'soon' });
    expect(t2.json.errcode).toBe('M_BAD_JSON');
    const p = await put('/_matrix/client/v3/presence/@alice:example.org/status', { presence: 'busy' });
    expect([p.status, p.json.errcode]).toEqual([400, 'M_INVALID_PARAM']);
    expect(p.json.error).toContain('online');
    const pf = await put('/_matrix/client/v3/profile/@alice:example.org/displayname', {});
    expect([pf.status, pf.json.errcode]).toEqual([400, 'M_INVALID_PARAM']);
  });

  it('POST /rooms/{roomId}/invite accepts either spec body (inviteUser or inviteBy3PID)', async () => {
    expect((await post('/_matrix/client/v3/rooms/!r:x/invite', { user_id: '@bob:x', reason: 'hi' })).status).toBe(200);
    const threePid = { id_server: 'id.x', id_access_token: 'tok', medium: 'email', address: 'bob@x' };
    expect((await post('/_matrix/client/v3/rooms/!r:x/invite', threePid)).status).toBe(200);
    const wrongType = await post('/_matrix/client/v3/rooms/!r:x/invite', { user_id: 5 });
    expect(wrongType.json.errcode).toBe('M_BAD_JSON');
    expect(wrongType.json.error).toContain("'user_id'");
    const empty = await post('/_matrix/client/v3/rooms/!r:x/invite', {});
    expect(empty.json.errcode).toBe('M_MISSING_PARAM');
  });

  it('exports one validator per JSON request body in the spec', () => {
    expect(Object.keys(validators).length).toBe(71);
    expect(validators.createRoom({ visibility: 'private' })).toBe(true);
    expect(validators.createRoom({ visibility: 'nope' })).toBe(false);
    expect(validators.createRoom.errors?.[0]).toMatchObject({ instancePath: '/visibility', keyword: 'enum' });
  });
});

describe('request helpers', () => {
  it('readBody refuses an oversized Content-Length before reading', async () => {
    let pulled = false;
    const body = new ReadableStream({ pull() { pulled = true; } });
    const r = new Request('http://x/', { method: 'POST', body, headers: { 'Content-Length': '999999' }, duplex: 'half' } as RequestInit);
    await expect(readBody(r, 1000)).rejects.toMatchObject({ errcode: 'M_TOO_LARGE', status: 413 });
    expect(pulled).toBe(false);
  });

  it('readJsonObject: empty is M_NOT_JSON unless allowed', async () => {
    await expect(readJsonObject(new Request('http://x/', { method: 'POST', body: '' }))).rejects.toMatchObject({ errcode: 'M_NOT_JSON' });
    await expect(readJsonObject(new Request('http://x/', { method: 'POST', body: ' \n' }), { allowEmpty: true })).resolves.toEqual({});
    await expect(readJsonObject(new Request('http://x/', { method: 'POST', body: '\ufeff{"a":1}' }))).resolves.toEqual({ a: 1 });
  });

  it('queryInt parses integers and names the parameter when it cannot', () => {
    const q = new URLSearchParams('limit=10&timeout=abc&neg=-5&big=99999999999999999999&f=1.5');
    expect(queryInt(q, 'limit', 5)).toBe(10);
    expect(queryInt(q, 'missing', 5)).toBe(5);
    expect(queryInt(q, 'missing')).toBeUndefined();
    expect(queryInt(q, 'neg')).toBe(-5);
    for (const name of ['timeout', 'big', 'f']) {
      let err: unknown;
      try {
        queryInt(q, name);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(MatrixError);
      expect(err).toMatchObject({ status: 400, errcode: 'M_INVALID_PARAM', message: expect.stringContaining(name) });
    }
    expect(() => queryInt(q, 'limit', 5, { max: 5 })).toThrow(/limit/);
    expect(() => queryInt(q, 'neg', 0, { min: 0 })).toThrow(/neg/);
  });

  it('queryBool, queryEnum, queryJson, requireQuery', () => {
    const q = new URLSearchParams('a=true&b=false&c=yes&dir=b&filter=%7B%22limit%22%3A1%7D&bad=%7B');
    expect(queryBool(q, 'a', false)).toBe(true);
    expect(queryBool(q, 'b', true)).toBe(false);
    expect(queryBool(q, 'z', true)).toBe(true);
    expect(() => queryBool(q, 'c', false)).toThrow(MatrixError);
    expect(queryEnum(q, 'dir', ['b', 'f'] as const, 'f')).toBe('b');
    expect(() => queryEnum(new URLSearchParams('dir=x'), 'dir', ['b', 'f'] as const)).toThrow(/dir/);
    expect(queryJson(q, 'filter')).toEqual({ limit: 1 });
    expect(() => queryJson(q, 'bad')).toThrow(MatrixError);
    expect(() => requireQuery(q, 'nope')).toThrow(expect.objectContaining({ errcode: 'M_MISSING_PARAM' }));
  });

  it('fieldName renders JSON pointers readably', () => {
    expect(fieldName('')).toBe('');
    expect(fieldName('/invite/0')).toBe('invite[0]');
    expect(fieldName('/creation_content/m.federate')).toBe('creation_content["m.federate"]');
    expect(fieldName('/a~1b/c')).toBe('["a/b"].c');
  });
});
