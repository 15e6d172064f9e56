import { describe, expect, it } from 'vitest';
import { versionsEndpoint } from '../../src/api/client/versions.js';
import { wellKnownClientEndpoint } from '../../src/api/client/well-known.js';
import { unknownToken } from '../../src/api/errors.js';
import { createRouter } from '../../src/api/router.js';

const VERSIONS = ['v1.11', 'v1.12', 'v1.13', 'v1.14', 'v1.15', 'v1.16', 'v1.17', 'v1.18', 'v1.19'];

function homeserver(unstable?: Parameters<typeof versionsEndpoint>[0]['unstableFeatures']) {
  return createRouter(
    {
      async authenticate(token) {
        if (token === 'alice') return { userId: '@alice:example.org' };
        throw unknownToken();
      },
    },
    {
      endpoints: [
        versionsEndpoint({ versions: VERSIONS, unstableFeatures: unstable }),
        wellKnownClientEndpoint({ homeserverBaseUrl: 'https://matrix.example.org' }),
      ],
    },
  );
}

describe('GET /_matrix/client/versions', () => {
  it('lists the versions it was given and an empty unstable_features', async () => {
    const res = await homeserver().fetch(new Request('http://hs.test/_matrix/client/versions'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(await res.json()).toEqual({ versions: VERSIONS, unstable_features: {} });
  });

  it('may answer per user when a token is given', async () => {
    const hs = homeserver((p): Record<string, boolean> => (p ? { 'org.example.beta': true } : {}));
    const anon = await (await hs.fetch(new Request('http://hs.test/_matrix/client/versions'))).json();
    expect(anon.unstable_features).toEqual({});
    const authed = await hs.fetch(new Request('http://hs.test/_matrix/client/versions', { headers: { Authorization: 'Bearer alice' } }));
    expect((await authed.json()).unstable_features).toEqual({ 'org.example.beta': true });
  });

  it('refuses to advertise v1.0', () => {
    expect(() => versionsEndpoint({ versions: ['v1.0', 'v1.1'] })).toThrow(/v1\.0/);
  });
});

describe('GET /.well-known/matrix/client', () => {
  it('points at the configured base URL, with CORS headers', async () => {
    const res = await homeserver().fetch(new Request('http://hs.test/.well-known/matrix/client'));
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(await res.json()).toEqual({ 'm.homeserver': { base_url: 'https://matrix.example.org' } });
  });

  it('includes the identity server when configured', async () => {
    const hs = createRouter(
      { authenticate: async () => ({ userId: '@a:x' }) },
      { endpoints: [wellKnownClientEndpoint({ homeserverBaseUrl: 'https://hs.x', identityServerBaseUrl: 'https://id.x' })] },
    );
    const body = await (await hs.fetch(new Request('http://hs.test/.well-known/matrix/client'))).json();
    expect(body).toEqual({ 'm.homeserver': { base_url: 'https://hs.x' }, 'm.identity_server': { base_url: 'https://id.x' } });
  });
});
