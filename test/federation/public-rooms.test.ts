/**
 * The room directory over federation: a client's /publicRooms?server=<remote> (GET and POST with a filter) lists
 * the remote server's published rooms through GET/POST /_matrix/federation/v1/publicRooms; bad input gets the
 * spec's errors, an unreachable server a 502.
 * Spec: data/api/server-server/public_rooms.yaml; client-server list_public_rooms.yaml.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import { call } from '../helpers/homeserver.js';
import { enc, newPublicRoom, newRoom } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';
import type { Federation } from '../helpers/federation.js';
import { newFederation } from '../helpers/federation.js';

const C = '/_matrix/client/v3';
const F = '/_matrix/federation/v1';
let fed: Federation;
let a: Homeserver, b: Homeserver, c: Homeserver;
let alice: TestUser, bob: TestUser;
let hearthRoom: string, kitchenRoom: string;

beforeAll(async () => {
  fed = await newFederation(3);
  [a, b, c] = fed.servers;
  alice = await newUser(a, 'alice');
  bob = await newUser(b, 'bob');
  hearthRoom = await newPublicRoom(a, alice, { name: 'The Hearth', visibility: 'public' });
  kitchenRoom = await newPublicRoom(a, alice, { name: 'Kitchen', topic: 'soup', visibility: 'public' });
  await newRoom(a, alice, { name: 'Private' });
});

afterAll(async () => {
  await fed?.stop();
});

describe('publicRooms over federation', () => {
  test("bob's /publicRooms?server=A lists A's published rooms", async () => {
    const res = await call(b, 'GET', `${C}/publicRooms?server=${enc(a.serverName)}`);
    expect(res.status).toBe(200);
    expect(res.body.chunk.map((r: any) => r.room_id).sort()).toEqual([hearthRoom, kitchenRoom].sort());
    expect(res.body.chunk.find((r: any) => r.room_id === kitchenRoom).topic).toBe('soup');
  });

  test('POST with a filter and a limit, paged with next_batch', async () => {
    const filtered = await call(b, 'POST', `${C}/publicRooms?server=${enc(a.serverName)}`, { filter: { generic_search_term: 'kitch' } }, bob.accessToken);
    expect(filtered.status).toBe(200);
    expect(filtered.body.chunk.map((r: any) => r.room_id)).toEqual([kitchenRoom]);
    const first = await call(b, 'GET', `${C}/publicRooms?server=${enc(a.serverName)}&limit=1`);
    expect(first.body.chunk).toHaveLength(1);
    expect(typeof first.body.next_batch).toBe('string');
    const second = await call(b, 'GET', `${C}/publicRooms?server=${enc(a.serverName)}&limit=1&since=${enc(first.body.next_batch)}`);
    expect(second.body.chunk).toHaveLength(1);
    expect(second.body.chunk[0].room_id).not.toBe(first.body.chunk[0].room_id);
  });

  test('an unreachable server is a 502, never a 500', async () => {
    fed.offline(c);
    try {
      const res = await call(b, 'GET', `${C}/publicRooms?server=${enc(c.serverName)}`);
      expect(res.status).toBe(502);
      expect(res.body.errcode).toBe('M_UNKNOWN');
    } finally {
      fed.online(c);
    }
  });

  test('bad input on the federation endpoints gets the spec errors', async () => {
    const ask = (method: 'GET' | 'POST', path: string, body?: any) => a.federation.handleRequest(b.serverName, { method, path, body }) as Promise<any>;
    const cases: Array<[string, Promise<any>, number, string]> = [
      ['limit not a number', ask('GET', `${F}/publicRooms?limit=lots`), 400, 'M_INVALID_PARAM'],
      ['include_all_networks not a boolean', ask('GET', `${F}/publicRooms?include_all_networks=maybe`), 400, 'M_INVALID_PARAM'],
      ['a since token that is not ours', ask('GET', `${F}/publicRooms?since=garbage`), 400, 'M_INVALID_PARAM'],
      ['POST limit not a number', ask('POST', `${F}/publicRooms`, { limit: 'x' }), 400, 'M_BAD_JSON'],
      ['POST filter not an object', ask('POST', `${F}/publicRooms`, { filter: 3 }), 400, 'M_BAD_JSON'],
      ['POST negative limit', ask('POST', `${F}/publicRooms`, { limit: -1 }), 400, 'M_INVALID_PARAM'],
    ];
    for (const [what, p, status, errcode] of cases) {
      const res = await p;
      expect({ what, status: res.status, errcode: res.body.errcode }).toEqual({ what, status, errcode });
    }
    const ok = await ask('POST', `${F}/publicRooms`, { limit: 10 });
    expect(ok.status).toBe(200);
    expect(ok.body.chunk).toHaveLength(2);
  });
});
