import { describe, expect, it, vi } from 'vitest';
import { CORS_HEADERS } from '../../src/api/cors.js';
import type { AnyEndpoint, Principal } from '../../src/api/endpoint.js';
import { defineEndpoint, jsonResponse } from '../../src/api/endpoint.js';
import { limitExceeded, unknownToken } from '../../src/api/errors.js';
import { createRouter } from '../../src/api/router.js';
import type { RouterComponents } from '../../src/api/router.js';

const ALICE: Principal = { userId: '@alice:example.org', deviceId: 'ALICEDEV' };

function components(over: Partial<RouterComponents> = {}): RouterComponents {
  return {
    async authenticate(token) {
      if (token === 'alice-token') return ALICE;
      throw unknownToken(token === 'soft-token');
    },
    logger: { error: vi.fn(), debug: vi.fn() },
    ...over,
  };
}

/** Echoes what the handler saw. */
const sendMessage = defineEndpoint({
  method: 'PUT',
  path: '/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}',
  auth: 'accessToken',
  operationId: 'sendMessage',
  handler: ({ params, principal, body, legacyR0 }) => ({ params, user: principal.userId, body, legacyR0 }),
});
const getState = defineEndpoint({
  method: 'GET',
  path: '/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}',
  auth: 'accessToken',
  operationId: 'getRoomStateWithKey',
  handler: ({ params }) => ({ params }),
});
const sync = defineEndpoint({
  method: 'GET',
  path: '/_matrix/client/v3/sync',
  auth: 'accessToken',
  operationId: 'sync',
  handler: ({ principal, query }) => ({ user: principal.userId, since: query.get('since') }),
});
const hierarchy = defineEndpoint({
  method: 'GET',
  path: '/_matrix/client/v1/rooms/{roomId}/hierarchy',
  auth: 'accessToken',
  operationId: 'getSpaceHierarchy',
  handler: ({ params }) => ({ rooms: [], room: params.roomId }),
});
const pushRules = defineEndpoint({
  method: 'GET',
  path: '/_matrix/client/v3/pushrules/',
  auth: 'accessToken',
  operationId: 'getPushRules',
  handler: () => ({ global: {} }),
});
const joinRoom = defineEndpoint({
  method: 'POST',
  path: '/_matrix/client/v3/join/{roomIdOrAlias}',
  auth: 'accessToken',
  operationId: 'joinRoom',
  handler: ({ params, query }) => ({ room_id: params.roomIdOrAlias, via: query.getAll('via') }),
});
const getDevice = defineEndpoint({
  method: 'GET',
  path: '/_matrix/client/v3/devices/{deviceId}',
  auth: 'accessToken',
  operationId: 'getDevice',
  handler: ({ params }) => ({ device_id: params.deviceId }),
});
const getProfile = defineEndpoint({
  method: 'GET',
  path: '/_matrix/client/v3/profile/{userId}',
  auth: 'none',
  operationId: 'getUserProfile',
  handler: ({ params, principal, accessToken }) => ({ user: params.userId, principal: principal ?? null, accessToken: accessToken ?? null }),
});
const versions = defineEndpoint({
  method: 'GET',
  path: '/_matrix/client/versions',
  auth: 'optionalAccessToken',
  operationId: 'getVersions',
  handler: ({ principal }) => ({ versions: ['v1.19'], who: principal?.userId ?? null }),
});

const ENDPOINTS: AnyEndpoint[] = [sendMessage, getState, sync, hierarchy, pushRules, joinRoom, getDevice, getProfile, versions];

const BASE = 'http://hs.test';
function req(method: string, path: string, init: { body?: string; headers?: Record<string, string> } = {}): Request {
  return new Request(BASE + path, { method, body: init.body, headers: init.headers });
}
const auth = { Authorization: 'Bearer alice-token' };

async function call(r: Request, comps = components(), endpoints = ENDPOINTS) {
  const res = await createRouter(comps, { endpoints }).fetch(r);
  const text = await res.text();
  return { res, status: res.status, json: text ? (JSON.parse(text) as Record<string, any>) : null };
}

describe('router: matching', () => {
  it('answers unknown paths under /_matrix with 404 M_UNRECOGNIZED', async () => {
    const { status, json, res } = await call(req('GET', '/_matrix/client/v3/no/such/thing', { headers: auth }));
    expect(status).toBe(404);
    expect(json).toMatchObject({ errcode: 'M_UNRECOGNIZED' });
    expect(res.headers.get('content-type')).toBe('application/json');
  });

  it('answers a spec endpoint that is not implemented with 404, even when its path has other methods', async () => {
    // DELETE /devices/{deviceId} is deleteDevice in the spec; only getDevice is implemented.
    const { status, json } = await call(req('DELETE', '/_matrix/client/v3/devices/ABC', { headers: auth }));
    expect(status).toBe(404);
    expect(json?.errcode).toBe('M_UNRECOGNIZED');
    // A spec endpoint with no implemented sibling at all.
    expect((await call(req('GET', '/_matrix/client/v3/joined_rooms', { headers: auth }))).status).toBe(404);
  });

  it('answers a known path with a method nobody serves with 405 M_UNRECOGNIZED and an Allow header', async () => {
    const { status, json, res } = await call(req('PATCH', '/_matrix/client/v3/devices/ABC', { headers: auth }));
    expect(status).toBe(405);
    expect(json?.errcode).toBe('M_UNRECOGNIZED');
    expect(res.headers.get('allow')).toBe('GET, HEAD, OPTIONS');
    const post = await call(req('POST', '/_matrix/client/v3/sync', { headers: auth, body: '{}' }));
    expect(post.status).toBe(405);
  });

  it('answers paths outside /_matrix with 404 M_UNRECOGNIZED', async () => {
    const { status, json } = await call(req('GET', '/index.html'));
    expect(status).toBe(404);
    expect(json?.errcode).toBe('M_UNRECOGNIZED');
  });

  it('decodes path parameters after splitting on "/": room IDs, event IDs, aliases with an encoded slash', async () => {
    const { status, json } = await call(
      req('PUT', '/_matrix/client/v3/rooms/!abc%3Aexample.org/send/m.room.message/t%2F1%20x', { headers: auth, body: '{"body":"hi"}' }),
    );
    expect(status).toBe(200);
    expect(json?.params).toEqual({ roomId: '!abc:example.org', eventType: 'm.room.message', txnId: 't/1 x' });
    expect(json?.user).toBe('@alice:example.org');
    expect(json?.body).toEqual({ body: 'hi' });

    const alias = await call(req('POST', '/_matrix/client/v3/join/%23foo%2Fbar%3Aexample.org?via=a.org&via=b.org', { headers: auth }));
    expect(alias.json).toEqual({ room_id: '#foo/bar:example.org', via: ['a.org', 'b.org'] });

    const unencoded = await call(req('GET', '/_matrix/client/v3/rooms/!abc:example.org/state/m.room.member/@bob:example.org', { headers: auth }));
    expect(unencoded.json?.params).toEqual({ roomId: '!abc:example.org', eventType: 'm.room.member', stateKey: '@bob:example.org' });

    const eventType = await call(req('GET', '/_matrix/client/v3/rooms/!r:x/state/%24weird/k', { headers: auth }));
    expect(eventType.json?.params.eventType).toBe('$weird');
  });

  it('refuses malformed percent-encoding in a parameter with 400 M_INVALID_PARAM', async () => {
    const { status, json } = await call(req('GET', '/_matrix/client/v3/devices/%E0%A4%A', { headers: auth }));
    expect(status).toBe(400);
    expect(json?.errcode).toBe('M_INVALID_PARAM');
    expect(json?.error).toContain('deviceId');
  });

  it('lets the state key be empty, with or without the trailing slash', async () => {
    const slash = await call(req('GET', '/_matrix/client/v3/rooms/!r:x/state/m.room.name/', { headers: auth }));
    expect(slash.status).toBe(200);
    expect(slash.json?.params.stateKey).toBe('');
    const none = await call(req('GET', '/_matrix/client/v3/rooms/!r:x/state/m.room.name', { headers: auth }));
    expect(none.status).toBe(200);
    expect(none.json?.params).toEqual({ roomId: '!r:x', eventType: 'm.room.name', stateKey: '' });
    // Other parameters may not be empty.
    expect((await call(req('GET', '/_matrix/client/v3/devices/', { headers: auth }))).status).toBe(404);
  });

  it('matches spec paths that end in a slash with or without it', async () => {
    expect((await call(req('GET', '/_matrix/client/v3/pushrules/', { headers: auth }))).status).toBe(200);
    expect((await call(req('GET', '/_matrix/client/v3/pushrules', { headers: auth }))).status).toBe(200);
  });

  it('serves v3 endpoints that had an r0 form under /r0/ too, and not the others', async () => {
    const r0 = await call(req('GET', '/_matrix/client/r0/sync?since=s1', { headers: auth }));
    expect(r0.status).toBe(200);
    expect(r0.json).toEqual({ user: '@alice:example.org', since: 's1' });
    const send = await call(req('PUT', '/_matrix/client/r0/rooms/!r:x/send/m.room.message/1', { headers: auth, body: '{}' }));
    expect(send.json?.legacyR0).toBe(true);
    // v1 endpoints never had an r0 form, nor a v3 one.
    expect((await call(req('GET', '/_matrix/client/r0/rooms/!r:x/hierarchy', { headers: auth }))).status).toBe(404);
    expect((await call(req('GET', '/_matrix/client/v3/rooms/!r:x/hierarchy', { headers: auth }))).status).toBe(404);
    expect((await call(req('GET', '/_matrix/client/v1/rooms/!r:x/hierarchy', { headers: auth }))).status).toBe(200);
    // /versions has no version prefix at all.
    expect((await call(req('GET', '/_matrix/client/r0/versions'))).status).toBe(404);
  });

  it('does not serve /r0/ for endpoints first specified in v1.1 or later', async () => {
    const knock = defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/knock/{roomIdOrAlias}',
      auth: 'accessToken',
      operationId: 'knockRoom',
      handler: () => ({ room_id: '!r:x' }),
    });
    const eps = [...ENDPOINTS, knock];
    expect((await call(req('POST', '/_matrix/client/v3/knock/!r:x', { headers: auth }), components(), eps)).status).toBe(200);
    expect((await call(req('POST', '/_matrix/client/r0/knock/!r:x', { headers: auth }), components(), eps)).status).toBe(404);
  });

  it('prefers literal segments over parameters', async () => {
    const a = defineEndpoint({ method: 'GET', path: '/_matrix/test/{x}', auth: 'none', operationId: 'testParam', handler: () => ({ which: 'param' }) });
    const b = defineEndpoint({ method: 'GET', path: '/_matrix/test/literal', auth: 'none', operationId: 'testLiteral', handler: () => ({ which: 'literal' }) });
    expect((await call(req('GET', '/_matrix/test/literal'), components(), [a, b])).json).toEqual({ which: 'literal' });
    expect((await call(req('GET', '/_matrix/test/other'), components(), [a, b])).json).toEqual({ which: 'param' });
  });

  it('answers HEAD from the GET handler, without a body', async () => {
    const { status, res } = await call(req('HEAD', '/_matrix/client/versions'));
    expect(status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
  });

  it('refuses inconsistent declarations when built', () => {
    const wrongPath = defineEndpoint({ method: 'GET', path: '/_matrix/client/v3/synk', auth: 'accessToken', operationId: 'sync', handler: () => ({}) });
    expect(() => createRouter(components(), { endpoints: [wrongPath] })).toThrow(/sync/);
    expect(() => createRouter(components(), { endpoints: [sync, sync] })).toThrow(/two endpoints/);
    const fed = defineEndpoint({ method: 'GET', path: '/_matrix/federation/v1/version', auth: 'federation', operationId: 'getVersion', handler: () => ({}) });
    expect(() => createRouter(components(), { endpoints: [fed] })).toThrow(/authenticateFederation/);
  });
});

describe('router: CORS', () => {
  it('answers OPTIONS on any /_matrix path without auth and without running a handler', async () => {
    const handler = vi.fn(() => ({}));
    const ep = defineEndpoint({ method: 'GET', path: '/_matrix/client/v3/sync', auth: 'accessToken', operationId: 'sync', handler });
    for (const path of ['/_matrix/client/v3/sync', '/_matrix/client/v3/no/such/endpoint', '/.well-known/matrix/client']) {
      const { status, res } = await call(req('OPTIONS', path), components(), [ep]);
      expect(status).toBe(204);
      for (const [k, v] of Object.entries(CORS_HEADERS)) expect(res.headers.get(k)).toBe(v);
    }
    expect(handler).not.toHaveBeenCalled();
  });

  it('puts the CORS headers on every response, errors included', async () => {
    for (const r of [
      req('GET', '/_matrix/client/versions'),
      req('GET', '/_matrix/client/v3/sync'),
      req('GET', '/_matrix/client/v3/nope'),
      req('PATCH', '/_matrix/client/v3/sync'),
    ]) {
      const { res } = await call(r);
      expect(res.headers.get('access-control-allow-origin')).toBe('*');
      expect(res.headers.get('access-control-allow-methods')).toBe('GET, POST, PUT, DELETE, OPTIONS');
      expect(res.headers.get('access-control-allow-headers')).toBe('X-Requested-With, Content-Type, Authorization');
    }
  });

  it('adds them to handler responses with immutable headers too', async () => {
    const redirect = defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/login/sso/redirect',
      auth: 'none',
      operationId: 'redirectToSSO',
      handler: () => Response.redirect('https://idp.example.org/login', 302),
    });
    const { status, res } = await call(req('GET', '/_matrix/client/v3/login/sso/redirect'), components(), [redirect]);
    expect(status).toBe(302);
    expect(res.headers.get('location')).toBe('https://idp.example.org/login');
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
  });
});

describe('router: authentication', () => {
  it('answers a missing token with 401 M_MISSING_TOKEN', async () => {
    const { status, json } = await call(req('GET', '/_matrix/client/v3/sync'));
    expect(status).toBe(401);
    expect(json?.errcode).toBe('M_MISSING_TOKEN');
    // A non-Bearer Authorization header is no access token either.
    expect((await call(req('GET', '/_matrix/client/v3/sync', { headers: { Authorization: 'Basic YTpi' } }))).json?.errcode).toBe('M_MISSING_TOKEN');
  });

  it('answers an unknown token with 401 M_UNKNOWN_TOKEN, with soft_logout when the port says so', async () => {
    const bad = await call(req('GET', '/_matrix/client/v3/sync', { headers: { Authorization: 'Bearer nope' } }));
    expect(bad.status).toBe(401);
    expect(bad.json).toEqual({ errcode: 'M_UNKNOWN_TOKEN', error: expect.any(String) });
    const soft = await call(req('GET', '/_matrix/client/v3/sync', { headers: { Authorization: 'Bearer soft-token' } }));
    expect(soft.json).toMatchObject({ errcode: 'M_UNKNOWN_TOKEN', soft_logout: true });
  });

  it('accepts the token from the header (any case of "Bearer") or the access_token query parameter', async () => {
    expect((await call(req('GET', '/_matrix/client/v3/sync', { headers: { Authorization: 'bearer alice-token' } }))).status).toBe(200);
    const q = await call(req('GET', '/_matrix/client/v3/sync?access_token=alice-token'));
    expect(q.status).toBe(200);
    expect(q.json?.user).toBe('@alice:example.org');
  });

  it('refuses a token sent both ways (RFC 6750: one method per request) with 400', async () => {
    const { status, json } = await call(req('GET', '/_matrix/client/v3/sync?access_token=alice-token', { headers: auth }));
    expect(status).toBe(400);
    expect(json?.errcode).toBe('M_INVALID_PARAM');
  });

  it('treats optional auth as optional, but a given token must be valid', async () => {
    expect((await call(req('GET', '/_matrix/client/versions'))).json?.who).toBeNull();
    expect((await call(req('GET', '/_matrix/client/versions', { headers: auth }))).json?.who).toBe('@alice:example.org');
    expect((await call(req('GET', '/_matrix/client/versions', { headers: { Authorization: 'Bearer nope' } }))).status).toBe(401);
  });

  it('does not authenticate endpoints without auth, but passes the token through', async () => {
    const authenticate = vi.fn(async () => ALICE);
    const { status, json } = await call(
      req('GET', '/_matrix/client/v3/profile/%40bob%3Ax', { headers: { Authorization: 'Bearer whatever' } }),
      components({ authenticate }),
    );
    expect(status).toBe(200);
    expect(json).toEqual({ user: '@bob:x', principal: null, accessToken: 'whatever' });
    expect(authenticate).not.toHaveBeenCalled();
  });

  it('runs the rate limiter after authentication, for rate-limited endpoints only', async () => {
    const rateLimit = vi.fn(({ principal }: { principal?: Principal }) => {
      if (principal?.userId === ALICE.userId) throw limitExceeded(1500);
    });
    const limited = defineEndpoint({ ...sync, rateLimited: true });
    const r = await call(req('GET', '/_matrix/client/v3/sync', { headers: auth }), components({ rateLimit }), [limited]);
    expect(r.status).toBe(429);
    expect(r.json).toEqual({ errcode: 'M_LIMIT_EXCEEDED', error: expect.any(String), retry_after_ms: 1500 });
    expect(r.res.headers.get('retry-after')).toBe('2');
    // Unauthenticated requests are refused before the limiter sees them.
    rateLimit.mockClear();
    await call(req('GET', '/_matrix/client/v3/sync'), components({ rateLimit }), [limited]);
    expect(rateLimit).not.toHaveBeenCalled();
    // sync itself is not rate-limited in the spec.
    expect((await call(req('GET', '/_matrix/client/v3/sync', { headers: auth }), components({ rateLimit }))).status).toBe(200);
  });

  it('authenticates federation endpoints through their own port, after reading the body', async () => {
    const authenticateFederation = vi.fn(async ({ body }: { body: unknown }) => {
      expect(body).toEqual({ pdus: [] });
      return 'remote.example.org';
    });
    const send = defineEndpoint({
      method: 'PUT',
      path: '/_matrix/federation/v1/send/{txnId}',
      auth: 'federation',
      operationId: 'sendTransaction',
      handler: ({ origin, params }) => ({ origin, txn: params.txnId }),
    });
    const { json } = await call(
      req('PUT', '/_matrix/federation/v1/send/t1', { body: '{"pdus":[]}', headers: { Authorization: 'X-Matrix origin="remote.example.org"' } }),
      components({ authenticateFederation }),
      [send],
    );
    expect(json).toEqual({ origin: 'remote.example.org', txn: 't1' });
  });
});

describe('router: handler results and failures', () => {
  it('sends plain objects as 200 JSON and passes Responses through', async () => {
    const created = defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/createRoom',
      auth: 'accessToken',
      operationId: 'createRoom',
      handler: () => jsonResponse({ room_id: '!new:x' }, 200, { 'X-Extra': '1' }),
    });
    const { status, json, res } = await call(req('POST', '/_matrix/client/v3/createRoom', { headers: auth, body: '{}' }), components(), [created]);
    expect(status).toBe(200);
    expect(json).toEqual({ room_id: '!new:x' });
    expect(res.headers.get('x-extra')).toBe('1');
  });

  it('turns a thrown non-Matrix error into 500 M_UNKNOWN without its detail, logging the detail', async () => {
    const comps = components();
    const boom = defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/sync',
      auth: 'accessToken',
      operationId: 'sync',
      handler: () => {
        throw new Error('SQLITE_CORRUPT at /var/lib/secret.db');
      },
    });
    const { status, json } = await call(req('GET', '/_matrix/client/v3/sync', { headers: auth }), comps, [boom]);
    expect(status).toBe(500);
    expect(json).toEqual({ errcode: 'M_UNKNOWN', error: 'Internal server error' });
    expect(JSON.stringify(json)).not.toContain('SQLITE');
    expect(comps.logger!.error).toHaveBeenCalledWith(expect.any(String), expect.objectContaining({ message: expect.stringContaining('SQLITE_CORRUPT') }));
  });

  it('hands the request signal to the handler', async () => {
    const controller = new AbortController();
    let seen: AbortSignal | undefined;
    const ep = defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/sync',
      auth: 'accessToken',
      operationId: 'sync',
      handler: ({ signal }) => {
        seen = signal;
        return {};
      },
    });
    await call(new Request(BASE + '/_matrix/client/v3/sync', { headers: auth, signal: controller.signal }), components(), [ep]);
    controller.abort();
    expect(seen?.aborted).toBe(true);
  });
});
