import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CS_ENDPOINTS } from '../../src/api/generated/cs-endpoints.js';
import * as validators from '../../src/api/generated/body-validators.js';
import type { BodyValidator } from '../../src/api/request.js';
import { defaultSpecDir, generate, outDir, requestBodyExamples } from '../../scripts/gen-endpoints.js';

describe('the generated endpoint table', () => {
  it('lists all 166 Client-Server endpoints with unique operationIds', () => {
    expect(CS_ENDPOINTS.length).toBe(166);
    expect(new Set(CS_ENDPOINTS.map((e) => e.operationId)).size).toBe(166);
  });

  it('carries auth, r0 and body kinds from the spec', () => {
    const by = (id: string) => CS_ENDPOINTS.find((e) => e.operationId === id)!;
    expect(by('sync')).toMatchObject({ method: 'GET', path: '/_matrix/client/v3/sync', auth: 'accessToken', r0: true, body: 'none' });
    expect(by('getVersions')).toMatchObject({ path: '/_matrix/client/versions', auth: 'optionalAccessToken', r0: false });
    expect(by('login')).toMatchObject({ auth: 'none', body: 'json', rateLimited: true, r0: true });
    expect(by('uploadContent')).toMatchObject({ path: '/_matrix/media/v3/upload', body: 'binary', r0: true });
    expect(by('knockRoom')).toMatchObject({ r0: false, addedIn: '1.1' });
    expect(by('getSpaceHierarchy')).toMatchObject({ r0: false });
    expect(by('pingAppservice')).toMatchObject({ appserviceOnly: true });
    expect(by('getEvents')).toMatchObject({ deprecated: true });
  });

  it('is what the generator makes from the spec copy today (re-run scripts/gen-endpoints.ts if not)', () => {
    const { files } = generate(defaultSpecDir());
    for (const [name, text] of files) {
      expect(readFileSync(join(outDir, name), 'utf8'), name).toBe(text);
    }
  });

  it('ships no ajv and no eval at runtime', () => {
    const js = readFileSync(join(outDir, 'body-validators.js'), 'utf8');
    expect(js).not.toMatch(/require\(|from ['"]ajv|new Function|eval\(/);
  });
});

describe('the generated body validators accept what clients really send', () => {
  const byId = validators as unknown as Record<string, BodyValidator>;

  it('accepts every whole-body request example in the spec', () => {
    const examples = requestBodyExamples(defaultSpecDir());
    expect(examples.length).toBeGreaterThan(30);
    for (const { operationId, example } of examples) {
      const validate = byId[operationId];
      expect(validate, operationId).toBeTypeOf('function');
      expect({ operationId, valid: validate(example), errors: validate.errors ?? null }).toEqual({ operationId, valid: true, errors: null });
    }
  });

  it('accepts bodies shaped like matrix-js-sdk / Element requests', () => {
    const sig = { '@a:x': { 'ed25519:D': 's' } };
    const cases: [string, unknown][] = [
      ['uploadKeys', {
        device_keys: { user_id: '@a:x', device_id: 'D', algorithms: ['m.olm.v1.curve25519-aes-sha2', 'm.megolm.v1.aes-sha2'], keys: { 'curve25519:D': 'c', 'ed25519:D': 'e' }, signatures: sig },
        one_time_keys: { 'signed_curve25519:AAAAAQ': { key: 'k', signatures: sig } },
        fallback_keys: { 'signed_curve25519:AAAAAg': { key: 'k', fallback: true, signatures: sig } },
      }],
      ['sendToDevice', { messages: { '@b:x': { DEV: { algorithm: 'm.olm.v1.curve25519-aes-sha2', ciphertext: {} }, '*': { a: 1 } } } }],
      ['setPushRule', { actions: ['notify', { set_tweak: 'sound', value: 'default' }], conditions: [{ kind: 'event_match', key: 'content.body', pattern: 'cake*' }] }],
      ['defineFilter', { room: { timeline: { limit: 20, lazy_load_members: true }, state: { lazy_load_members: true } }, presence: { not_types: ['*'] }, event_format: 'client' }],
      ['queryKeys', { device_keys: { '@a:x': [] }, timeout: 10000 }],
      ['claimKeys', { one_time_keys: { '@a:x': { D: 'signed_curve25519' } } }],
      ['putRoomKeys', { rooms: { '!r:x': { sessions: { sid: { first_message_index: 0, forwarded_count: 0, is_verified: true, session_data: { ephemeral: 'e', ciphertext: 'c', mac: 'm' } } } } } }],
      ['setReadMarker', { 'm.fully_read': '$e', 'm.read': '$e', 'm.read.private': '$e' }],
      ['register', { initial_device_display_name: 'Element', refresh_token: true, auth: { type: 'm.login.registration_token', token: 'abc', session: 'xyz' } }],
      ['login', { type: 'm.login.token', token: 't', device_id: 'D', 'org.example.extra': 1 }],
      ['joinRoom', {}],
      ['leaveRoom', {}],
    ];
    for (const [operationId, body] of cases) {
      const validate = byId[operationId];
      expect({ operationId, valid: validate(body), errors: validate.errors ?? null }).toEqual({ operationId, valid: true, errors: null });
    }
  });
});
