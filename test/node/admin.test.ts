/**
 * The admin API of `hearth serve` (/_hearth/admin/v1/…, issue 5 "For operators and researchers") on real processes:
 * the admin token (generated into the data directory with owner-only permissions, or given with --admin-token),
 * Matrix-style refusals, raw PDUs as stored (hashes and signatures that verify, pagination), forward extremities,
 * the libp2p network view, and /_matrix/key/v2/server over HTTP.
 */
import { statSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { computeEventId } from '../../src/core/event-id.js';
import { checkContentHash } from '../../src/core/hashes.js';
import { roomVersion } from '../../src/core/room-versions.js';
import { verifyEventSignatureSync, verifyJsonSignatureSync } from '../../src/core/signing.js';
import { decodeBase64 } from '../../src/core/base64.js';
import { roomTopic } from '../../src/net/libp2p-transport.js';
import { http, registerUser, runCli, startServe } from '../helpers/serve.js';
import type { Account, ServedPeer } from '../helpers/serve.js';
import { createRoom, enc, HttpSyncView, invite, join as joinRoom, sendText, startPeers, tcpAddr } from '../federation-node/peers.js';

const ADMIN = '/_hearth/admin/v1';
const GIVEN_TOKEN = 'given-admin-token-0123456789';

let a: ServedPeer, b: ServedPeer;
let alice: Account, bob: Account;
let adminA: string;
let room: string;
const sent: string[] = [];

beforeAll(async () => {
  // A generates its token; B is given one.
  [a] = await startPeers(1);
  b = await startServe({ args: ['--p2p-port', '0', '--no-mdns', '--bootstrap', tcpAddr(a), '--admin-token', GIVEN_TOKEN] });
  adminA = readFileSync(join(a.dataDir, 'admin-token'), 'utf8').trim();
  [alice, bob] = await Promise.all([registerUser(a, 'alice'), registerUser(b, 'bob')]);
  room = await createRoom(a, alice, { name: 'Admin view' });
  for (let i = 0; i < 5; i++) sent.push(await sendText(a, alice, room, `m${i}`));
}, 90_000);

afterAll(async () => {
  await Promise.all([a, b].map((p) => p?.dispose()));
}, 60_000);

const get = (peer: ServedPeer, path: string, token?: string) => http(peer, 'GET', `${ADMIN}${path}`, undefined, token);

describe('admin token', () => {
  test('is generated on first start into <data>/admin-token, readable by the owner only', async () => {
    expect(adminA).toMatch(/^[A-Za-z0-9_-]{40,}$/);
    expect(statSync(join(a.dataDir, 'admin-token')).mode & 0o777).toBe(0o600);
    expect((await get(a, '/rooms', adminA)).status).toBe(200);
  });

  test('--admin-token sets it', async () => {
    expect((await get(b, '/rooms', GIVEN_TOKEN)).status).toBe(200);
    expect((await get(b, '/rooms', adminA)).status).toBe(401);
  });

  test.each([
    ['no token', undefined, 401, 'M_MISSING_TOKEN'],
    ['an unknown token', 'not-the-admin-token', 401, 'M_UNKNOWN_TOKEN'],
  ])('%s is refused', async (_what, token, status, errcode) => {
    for (const path of ['/rooms', `/rooms/${enc(room)}/pdus`, `/rooms/${enc(room)}/extremities`, '/network']) {
      const res = await get(a, path, token);
      expect(res.status).toBe(status);
      expect(res.body.errcode).toBe(errcode);
    }
  });

  test("a user's valid access token is 403 M_FORBIDDEN", async () => {
    const res = await get(a, '/network', alice.accessToken);
    expect(res.status).toBe(403);
    expect(res.body.errcode).toBe('M_FORBIDDEN');
  });

  test('unknown admin paths are 404 M_UNRECOGNIZED, a wrong method 405', async () => {
    const unknown = await get(a, '/nothing-here', adminA);
    expect(unknown.status).toBe(404);
    expect(unknown.body.errcode).toBe('M_UNRECOGNIZED');
    const post = await http(a, 'POST', `${ADMIN}/network`, {}, adminA);
    expect(post.status).toBe(405);
    expect(post.body.errcode).toBe('M_UNRECOGNIZED');
  });

  test('a bad --admin-token exits 2 saying why', async () => {
    const r = await runCli(['serve', '--admin-token', 'short']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--admin-token/);
  });
});

describe('rooms and PDUs', () => {
  test('rooms lists what the peer holds', async () => {
    const res = await get(a, '/rooms', adminA);
    expect(res.body.rooms).toContainEqual({ room_id: room, room_version: expect.any(String) });
  });

  test('pdus returns the stored PDUs with hashes and signatures that verify, in timeline order', async () => {
    const res = await get(a, `/rooms/${enc(room)}/pdus?limit=1000`, adminA);
    expect(res.status).toBe(200);
    expect(res.body.room_id).toBe(room);
    const pdus = res.body.pdus as any[];
    expect(pdus[0].pdu.type).toBe('m.room.create');
    expect(pdus.slice(-5).map((p) => p.event_id)).toEqual(sent);
    expect(res.body.next_from).toBeUndefined();
    const version = roomVersion(pdus[0].pdu.content.room_version ?? '1')!;
    const keyResponse = (await http(a, 'GET', '/_matrix/key/v2/server')).body;
    const [keyId, key] = Object.entries<any>(keyResponse.verify_keys)[0];
    for (const p of pdus) {
      expect(p.pdu.hashes.sha256).toEqual(expect.any(String));
      expect(p.pdu.signatures[a.serverName][keyId]).toEqual(expect.any(String));
      expect(checkContentHash(p.pdu)).toBe(true);
      expect(computeEventId(p.pdu, version)).toBe(p.event_id);
      expect(verifyEventSignatureSync(p.pdu, version, a.serverName, keyId, decodeBase64(key.key)!)).toBe(true);
    }
    const positions = pdus.map((p) => p.stream_pos);
    expect([...positions].sort((x, y) => x - y)).toEqual(positions);
  });

  test('pages forwards and backwards by stream position', async () => {
    const all = (await get(a, `/rooms/${enc(room)}/pdus?limit=1000`, adminA)).body.pdus.map((p: any) => p.event_id);
    const seen: string[] = [];
    let from: number | undefined;
    for (let i = 0; i < 50; i++) {
      const res = await get(a, `/rooms/${enc(room)}/pdus?limit=3${from !== undefined ? `&from=${from}` : ''}`, adminA);
      expect(res.body.pdus.length).toBeLessThanOrEqual(3);
      seen.push(...res.body.pdus.map((p: any) => p.event_id));
      from = res.body.next_from;
      if (from === undefined) break;
    }
    expect(seen).toEqual(all);
    const back = await get(a, `/rooms/${enc(room)}/pdus?dir=b&limit=2`, adminA);
    expect(back.body.pdus.map((p: any) => p.event_id)).toEqual([sent[4], sent[3]]);
    const next = await get(a, `/rooms/${enc(room)}/pdus?dir=b&limit=2&from=${back.body.next_from}`, adminA);
    expect(next.body.pdus.map((p: any) => p.event_id)).toEqual([sent[2], sent[1]]);
  });

  test.each([
    ['a malformed room ID', `/rooms/${enc('not-a-room')}/pdus`, 400, 'M_INVALID_PARAM'],
    ['an unknown room', `/rooms/${enc('!nope:example.org')}/pdus`, 404, 'M_NOT_FOUND'],
    ['an unknown room (extremities)', `/rooms/${enc('!nope:example.org')}/extremities`, 404, 'M_NOT_FOUND'],
    ['limit=0', '/rooms/ROOM/pdus?limit=0', 400, 'M_INVALID_PARAM'],
    ['a limit over 1000', '/rooms/ROOM/pdus?limit=1001', 400, 'M_INVALID_PARAM'],
    ['limit=abc', '/rooms/ROOM/pdus?limit=abc', 400, 'M_INVALID_PARAM'],
    ['from=-1', '/rooms/ROOM/pdus?from=-1', 400, 'M_INVALID_PARAM'],
    ['dir=x', '/rooms/ROOM/pdus?dir=x', 400, 'M_INVALID_PARAM'],
  ])('%s is refused', async (_what, path, status, errcode) => {
    const res = await get(a, path.replace('ROOM', enc(room)), adminA);
    expect(res.status).toBe(status);
    expect(res.body.errcode).toBe(errcode);
  });

  test('extremities are the latest event', async () => {
    const res = await get(a, `/rooms/${enc(room)}/extremities`, adminA);
    expect(res.status).toBe(200);
    expect(res.body.extremities.map((e: any) => e.event_id)).toEqual([sent[4]]);
    expect(res.body.extremities[0].sender).toBe(alice.userId);
    expect(res.body.extremities[0].depth).toEqual(expect.any(Number));
  });
});

describe('network', () => {
  test('shows the libp2p connection between the peers, its transport and direction, and the room topics', async () => {
    const vb = new HttpSyncView(b, bob);
    await vb.poll();
    await invite(a, alice, room, bob.userId);
    await vb.until(() => vb.invites.get(room), 20_000, 'invite');
    await joinRoom(b, bob, room, [a.serverName]);

    let net: any;
    const end = Date.now() + 20_000;
    do {
      net = (await get(a, '/network', adminA)).body;
      if (net.topics.includes(roomTopic(room)) && net.connections.some((c: any) => c.server_name === b.serverName)) break;
      await new Promise((r) => setTimeout(r, 200));
    } while (Date.now() < end);
    expect(net.enabled).toBe(true);
    expect(net.peer_id).toBe(a.multiaddrs[0].split('/p2p/')[1]);
    expect(net.multiaddrs).toEqual(expect.arrayContaining([expect.stringMatching(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\//)]));
    expect(net.topics).toContain(roomTopic(room));
    expect(net.servers).toContain(b.serverName);
    // B dialled A (its bootstrap): inbound on A over TCP, outbound on B.
    const toB = net.connections.find((c: any) => c.server_name === b.serverName);
    expect(toB).toMatchObject({ transport: 'tcp', direction: 'inbound', limited: false });
    expect(toB.remote_addr).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+/);
    const fromB = (await get(b, '/network', GIVEN_TOKEN)).body;
    expect(fromB.connections.find((c: any) => c.server_name === a.serverName)).toMatchObject({ transport: 'tcp', direction: 'outbound' });
    expect(Array.isArray(net.send_queues)).toBe(true);

    // B's copy of the room, seen through B's admin API, has the same PDUs since it joined.
    const onB = (await get(b, `/rooms/${enc(room)}/pdus?limit=1000`, GIVEN_TOKEN)).body.pdus.map((p: any) => p.event_id);
    const bJoin = onB[onB.length - 1];
    const onA = (await get(a, `/rooms/${enc(room)}/pdus?limit=1000`, adminA)).body.pdus.map((p: any) => p.event_id);
    expect(onA).toContain(bJoin);
  }, 60_000);
});

describe('/_matrix/key/v2/server over HTTP', () => {
  test("serves the peer's signed key: server_name is the peer's name and the self-signature verifies", async () => {
    const res = await http(a, 'GET', '/_matrix/key/v2/server');
    expect(res.status).toBe(200);
    expect(res.body.server_name).toBe(a.serverName);
    expect(res.body.valid_until_ts).toBeGreaterThan(Date.now());
    const [keyId, key] = Object.entries<any>(res.body.verify_keys)[0];
    expect(keyId).toMatch(/^ed25519:/);
    expect(verifyJsonSignatureSync(res.body, a.serverName, keyId, decodeBase64(key.key)!)).toBe(true);
  });
});

describe('restart', () => {
  test('the generated admin token is kept across a restart', async () => {
    await a.restart();
    expect(readFileSync(join(a.dataDir, 'admin-token'), 'utf8').trim()).toBe(adminA);
    expect((await get(a, '/rooms', adminA)).status).toBe(200);
  }, 60_000);
});
