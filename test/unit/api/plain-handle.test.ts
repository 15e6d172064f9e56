/**
 * `Homeserver.handle` (plain data in and out, what `hearth serve` calls) answers exactly as `fetch` does: same
 * status, headers and body for the same request, errors included, and its writes are the homeserver's writes.
 */
import { describe, expect, it } from 'vitest';
import type { PlainRequest, PlainResponse } from '../../../src/api/router.js';
import { call, newHomeserver } from '../../helpers/homeserver.js';
import type { Homeserver } from '../../../src/homeserver.js';

const BASE = 'http://localhost';
const utf8 = new TextEncoder();

function plain(method: string, path: string, opts: { body?: string; token?: string; headers?: Record<string, string> } = {}): PlainRequest {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['content-length'] = String(utf8.encode(opts.body).byteLength);
  return { method, url: `${BASE}${path}`, headers, body: opts.body === undefined ? null : utf8.encode(opts.body) };
}

function asRequest(p: PlainRequest): Request {
  const headers = new Headers();
  for (const [k, v] of Object.entries(p.headers)) if (v !== undefined) headers.set(k, v);
  return new Request(p.url, { method: p.method, headers, body: p.body as BodyInit | null });
}

async function text(body: PlainResponse['body']): Promise<string> {
  if (body === null) return '';
  if (typeof body === 'string') return body;
  if (body instanceof Uint8Array) return new TextDecoder().decode(body);
  return new Response(body).text();
}

/** Both entries on the same request; returns both answers in comparable form. */
async function both(hs: Homeserver, p: PlainRequest) {
  const viaHandle = await hs.handle(p);
  const viaFetch = await hs.fetch(asRequest(p));
  const fetchHeaders: Record<string, string> = {};
  for (const [k, v] of viaFetch.headers) fetchHeaders[k] = v;
  return {
    handle: { status: viaHandle.status, headers: viaHandle.headers, body: await text(viaHandle.body) },
    fetch: { status: viaFetch.status, headers: fetchHeaders, body: await viaFetch.text() },
  };
}

describe('Homeserver.handle', () => {
  it('answers read-only requests and errors exactly as fetch does', async () => {
    const hs = await newHomeserver();
    const alice = (await call(hs, 'POST', '/_matrix/client/v3/register', { username: 'alice', password: 'pw-alice-123', auth: { type: 'm.login.dummy' } })).body;
    const room = (await call(hs, 'POST', '/_matrix/client/v3/createRoom', { name: 'r' }, alice.access_token)).body.room_id as string;
    const token = alice.access_token as string;
    const cases: PlainRequest[] = [
      plain('GET', '/_matrix/client/versions'),
      plain('HEAD', '/_matrix/client/versions'),
      plain('OPTIONS', '/_matrix/client/v3/sync'),
      plain('GET', '/_matrix/client/v3/account/whoami', { token }),
      plain('GET', `/_matrix/client/v3/account/whoami?access_token=${token}`),
      plain('GET', '/_matrix/client/v3/account/whoami', { token, headers: {} }),
      plain('GET', `/_matrix/client/v3/account/whoami?access_token=${token}`, { token }), // both: 400
      plain('GET', '/_matrix/client/v3/account/whoami'), // 401 M_MISSING_TOKEN
      plain('GET', '/_matrix/client/v3/account/whoami', { token: 'nope' }), // 401 M_UNKNOWN_TOKEN
      plain('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/state/m.room.name`, { token }),
      plain('GET', `/_matrix/client/r0/rooms/${encodeURIComponent(room)}/state/m.room.name/`, { token }),
      plain('GET', '/_matrix/client/v3/rooms/%E0%A4%A/state', { token }), // bad percent-encoding
      plain('GET', '/_matrix/client/v3/not/a/thing'), // 404
      plain('DELETE', '/_matrix/client/versions'), // 405 + Allow
      plain('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/t1`, { token, body: '{nope' }), // M_NOT_JSON
      plain('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/t1`, { token, body: '[1]' }), // M_BAD_JSON
      plain('POST', '/_matrix/client/v3/createRoom', { token, body: JSON.stringify({ name: 'x'.repeat(70_000) }) }), // 413
      plain('POST', '/_matrix/client/v3/createRoom', { token, body: JSON.stringify({ visibility: 'sideways' }) }), // M_INVALID_PARAM
    ];
    for (const p of cases) {
      const r = await both(hs, p);
      expect(r.handle, `${p.method} ${String(p.url)}`).toEqual(r.fetch);
    }
  });

  it('serves writes: a message sent through handle is in the room for fetch readers', async () => {
    const hs = await newHomeserver();
    const alice = (await call(hs, 'POST', '/_matrix/client/v3/register', { username: 'alice', password: 'pw-alice-123', auth: { type: 'm.login.dummy' } })).body;
    const token = alice.access_token as string;
    const created = await hs.handle(plain('POST', '/_matrix/client/v3/createRoom', { token, body: '{}' }));
    expect(created.status).toBe(200);
    expect(created.headers['content-type']).toBe('application/json');
    expect(created.headers['access-control-allow-origin']).toBe('*');
    const room = JSON.parse(await text(created.body)).room_id as string;
    const path = `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/txn1`;
    const sent = await hs.handle(plain('PUT', path, { token, body: JSON.stringify({ msgtype: 'm.text', body: 'hi' }) }));
    expect(sent.status).toBe(200);
    const eventId = JSON.parse(await text(sent.body)).event_id as string;
    // The same transaction ID again: the same event (idempotent), as through fetch.
    const again = await call(hs, 'PUT', path, { msgtype: 'm.text', body: 'hi' }, token);
    expect(again.body.event_id).toBe(eventId);
    const ev = await call(hs, 'GET', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/event/${encodeURIComponent(eventId)}`, undefined, token);
    expect(ev.body.content).toEqual({ msgtype: 'm.text', body: 'hi' });
  });

  it('takes a string or a stream body, and a URL object', async () => {
    const hs = await newHomeserver();
    const reg = (body: PlainRequest['body']) =>
      hs.handle({ method: 'POST', url: new URL(`${BASE}/_matrix/client/v3/register`), headers: {}, body });
    const s = await reg(JSON.stringify({ username: 'bob', password: 'pw-bob-12345', auth: { type: 'm.login.dummy' } }));
    expect(s.status).toBe(200);
    const stream = new Blob([JSON.stringify({ username: 'carol', password: 'pw-carol-1234', auth: { type: 'm.login.dummy' } })]).stream();
    const t = await reg(stream);
    expect(t.status).toBe(200);
    expect(JSON.parse(await text(t.body)).user_id).toMatch(/^@carol:/);
    const bad = await hs.handle({ method: 'GET', url: 'not a url', headers: {}, body: null });
    expect(bad.status).toBe(400);
  });
});
