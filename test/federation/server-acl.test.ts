/**
 * Server ACLs (m.room.server_acl): the matching rules, then a room on A that denies server C — C's requests about
 * the room are refused with 403 M_FORBIDDEN, its PDUs (in /send and gossip) and its typing/receipt EDUs are
 * ignored, while B carries on; lifting the ACL lets C back in.
 * Spec: server-server-api.md §"Server Access Control Lists (ACLs)"; event-schemas m.room.server_acl.yaml.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { JsonObject } from '../../src/core/json.js';
import { serverAclAllows } from '../../src/core/server-acl.js';
import type { FederationMethod } from '../../src/federation/transport.js';
import type { Homeserver } from '../../src/homeserver.js';
import { call } from '../helpers/homeserver.js';
import { enc, joinRoom, newPublicRoom, sendText, setState, storedEvent } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';
import type { Federation } from '../helpers/federation.js';
import { newFederation, SyncView, waitFor } from '../helpers/federation.js';

const F = '/_matrix/federation';

describe('serverAclAllows', () => {
  test('no ACL allows everyone; an ACL without allow denies everyone', () => {
    expect(serverAclAllows(undefined, 'anyone.org')).toBe(true);
    expect(serverAclAllows({}, 'anyone.org')).toBe(false);
    expect(serverAclAllows({ deny: ['evil.com'] }, 'good.org')).toBe(false);
  });

  test('deny wins over allow; globs with * and ?, case-insensitive, ports ignored', () => {
    const acl = { allow: ['*'], deny: ['evil.com', '*.evil.org', 'bad?.net'] };
    expect(serverAclAllows(acl, 'good.org')).toBe(true);
    expect(serverAclAllows(acl, 'EVIL.com')).toBe(false);
    expect(serverAclAllows(acl, 'evil.com:8448')).toBe(false);
    expect(serverAclAllows(acl, 'a.b.evil.org')).toBe(false);
    expect(serverAclAllows(acl, 'evil.org')).toBe(true);
    expect(serverAclAllows(acl, 'bad1.net')).toBe(false);
    expect(serverAclAllows(acl, 'bad12.net')).toBe(true);
    // Regex characters in a glob are literal.
    expect(serverAclAllows({ allow: ['a.c'] }, 'abc')).toBe(false);
    expect(serverAclAllows({ allow: ['*.example.com'] }, 'matrix.example.com')).toBe(true);
    expect(serverAclAllows({ allow: ['*.example.com'] }, 'example.com')).toBe(false);
  });

  test('allow_ip_literals: false denies IPv4 and IPv6 literals; missing or not a boolean means true', () => {
    for (const name of ['1.2.3.4', '1.2.3.4:8448', '[::1]', '[2001:db8::1]:8448']) {
      expect(serverAclAllows({ allow: ['*'], allow_ip_literals: false }, name)).toBe(false);
      expect(serverAclAllows({ allow: ['*'] }, name)).toBe(true);
      expect(serverAclAllows({ allow: ['*'], allow_ip_literals: 'no' }, name)).toBe(true);
    }
    expect(serverAclAllows({ allow: ['*'], allow_ip_literals: false }, 'host.example')).toBe(true);
  });
});

describe('a room on A that denies C', () => {
  let fed: Federation;
  let a: Homeserver, b: Homeserver, c: Homeserver;
  let alice: TestUser, bob: TestUser, carol: TestUser;
  let room: string;
  let lastEvent: string;
  let aliceView: SyncView;

  const req = (from: Homeserver, method: FederationMethod, path: string, body?: JsonObject) =>
    a.federation.handleRequest(from.serverName, { method, path, body }) as Promise<{ status: number; body: any }>;

  const eventJson = async (hs: Homeserver, eventId: string): Promise<JsonObject> => {
    const rec = await storedEvent(hs, eventId);
    expect(rec).toBeDefined();
    const { unsigned: _u, ...json } = rec!.json;
    return json;
  };

  beforeAll(async () => {
    fed = await newFederation(3);
    [a, b, c] = fed.servers;
    alice = await newUser(a, 'alice');
    bob = await newUser(b, 'bob');
    carol = await newUser(c, 'carol');
    room = await newPublicRoom(a, alice);
    for (const [hs, u] of [[b, bob], [c, carol]] as const) {
      const res = await call(hs, 'POST', `/_matrix/client/v3/join/${enc(room)}?via=${enc(a.serverName)}`, {}, u.accessToken);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
    }
    await fed.settle();
    // Deny C by a glob on its name (names are case-insensitive).
    await setState(a, alice, room, 'm.room.server_acl', '', { allow: ['*'], deny: [`${c.serverName.slice(0, 20).toUpperCase()}*`] });
    lastEvent = await sendText(a, alice, room, 'after the ACL');
    await fed.settle();
    aliceView = new SyncView(a, alice);
    await aliceView.poll();
  });

  afterAll(async () => {
    await fed?.stop();
  });

  test('every protected endpoint answers C with 403 M_FORBIDDEN', async () => {
    const r = enc(room);
    const e = enc(lastEvent);
    const newcomer = enc(`@newcomer:${c.serverName}`);
    const cases: Array<[FederationMethod, string, JsonObject?]> = [
      ['GET', `${F}/v1/make_join/${r}/${newcomer}`],
      ['GET', `${F}/v1/make_leave/${r}/${enc(carol.userId)}`],
      ['GET', `${F}/v1/make_knock/${r}/${newcomer}?ver=11`],
      ['PUT', `${F}/v2/send_join/${r}/${enc('$x')}`, {}],
      ['PUT', `${F}/v2/send_leave/${r}/${enc('$x')}`, {}],
      ['PUT', `${F}/v1/send_knock/${r}/${enc('$x')}`, {}],
      ['PUT', `${F}/v2/invite/${r}/${enc('$x')}`, {}],
      ['GET', `${F}/v1/state/${r}?event_id=${e}`],
      ['GET', `${F}/v1/state_ids/${r}?event_id=${e}`],
      ['GET', `${F}/v1/event_auth/${r}/${e}`],
      ['GET', `${F}/v1/backfill/${r}?v=${e}&limit=10`],
      ['POST', `${F}/v1/get_missing_events/${r}`, { earliest_events: [], latest_events: [lastEvent] }],
      ['GET', `${F}/v1/event/${e}`],
    ];
    for (const [method, path, body] of cases) {
      const res = await req(c, method, path, body);
      expect(res.status, `${method} ${path}: ${JSON.stringify(res.body)}`).toBe(403);
      expect(res.body.errcode).toBe('M_FORBIDDEN');
    }
    // B is not denied.
    expect((await req(b, 'GET', `${F}/v1/state_ids/${r}?event_id=${e}`)).status).toBe(200);
    expect((await req(b, 'GET', `${F}/v1/event/${e}`)).status).toBe(200);
  });

  test("C's PDUs are ignored in /send (with a per-PDU error) and in gossip; B's still arrive", async () => {
    const fromCarol = await sendText(c, carol, room, 'carol after the ACL');
    const fromBob = await sendText(b, bob, room, 'bob after the ACL');
    await aliceView.waitForMessage(room, 'bob after the ACL');
    await fed.settle();
    expect(await storedEvent(a, fromCarol)).toBeUndefined();
    expect(await storedEvent(b, fromCarol)).toBeUndefined();
    expect(aliceView.messages(room)).not.toContain('carol after the ACL');
    expect(await storedEvent(a, fromBob)).toBeDefined();

    const json = await eventJson(c, fromCarol);
    const res = await req(c, 'PUT', `${F}/v1/send/acl-1`, { origin: c.serverName, origin_server_ts: Date.now(), pdus: [json] });
    expect(res.status).toBe(200);
    expect(res.body.pdus[fromCarol].error).toMatch(/ACL/);
    // Gossip: from C itself, and relayed by B with C as its origin.
    await a.federation.handleGossip(room, c.serverName, { origin: c.serverName, pdus: [json] });
    await a.federation.handleGossip(room, b.serverName, { origin: c.serverName, pdus: [json] });
    expect(await storedEvent(a, fromCarol)).toBeUndefined();
  });

  test("C's typing and receipts are ignored; B's are applied", async () => {
    const typing = (u: TestUser) => ({ edu_type: 'm.typing', content: { room_id: room, user_id: u.userId, typing: true, timeout: 20_000 } });
    const receipt = (u: TestUser) => ({
      edu_type: 'm.receipt',
      content: { [room]: { 'm.read': { [u.userId]: { event_ids: [lastEvent], data: { ts: Date.now() } } } } },
    });
    expect((await req(c, 'PUT', `${F}/v1/send/acl-2`, { origin: c.serverName, pdus: [], edus: [typing(carol), receipt(carol)] })).status).toBe(200);
    expect((await req(b, 'PUT', `${F}/v1/send/acl-3`, { origin: b.serverName, pdus: [], edus: [typing(bob), receipt(bob)] })).status).toBe(200);
    const eph = () => aliceView.ephemeral.get(room) ?? [];
    await aliceView.until(() => eph().some((e) => e.type === 'm.typing' && e.content.user_ids.includes(bob.userId)), 5000, "bob's typing");
    await aliceView.until(() => eph().some((e) => e.type === 'm.receipt' && JSON.stringify(e.content).includes(bob.userId)), 5000, "bob's receipt");
    await aliceView.poll();
    expect(JSON.stringify(eph())).not.toContain(carol.userId);
  });

  test('lifting the ACL lets C back in', async () => {
    await setState(a, alice, room, 'm.room.server_acl', '', { allow: ['*'] });
    const res = await req(c, 'GET', `${F}/v1/make_join/${enc(room)}/${enc(`@newcomer:${c.serverName}`)}?ver=12`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    await fed.settle();
    const again = await sendText(c, carol, room, 'carol is back');
    await waitFor(async () => (await storedEvent(a, again)) !== undefined, 5000, "carol's message on A");
    // B learnt of the new ACL as a remote event: its cached ACL was dropped then (and only then).
    await waitFor(async () => (await storedEvent(b, again)) !== undefined, 5000, "carol's message on B");
  });
});
