import { describe, expect, it } from 'vitest';
import { isHearthServerName } from '../../src/core/server-key.js';
import { call, newHomeserver } from '../helpers/homeserver.js';

describe('homeserver', () => {
  it('answers /versions and well-known through one fetch', async () => {
    const hs = await newHomeserver();
    const v = await call(hs, 'GET', '/_matrix/client/versions');
    expect(v.status).toBe(200);
    expect(v.body.versions).toContain('v1.19');
    const wk = await call(hs, 'GET', '/.well-known/matrix/client');
    expect(wk.body['m.homeserver'].base_url).toBe('http://localhost');
  });

  it('has a self-certifying server name kept across restarts of the same storage', async () => {
    const hs = await newHomeserver();
    expect(isHearthServerName(hs.serverName)).toBe(true);
  });

  it('answers an unknown /_matrix path with 404 M_UNRECOGNIZED', async () => {
    const hs = await newHomeserver();
    const r = await call(hs, 'GET', '/_matrix/client/v3/no/such/thing');
    expect(r.status).toBe(404);
    expect(r.body.errcode).toBe('M_UNRECOGNIZED');
  });
});
