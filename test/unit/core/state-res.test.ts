/**
 * State resolution: every JSON fixture in test/fixtures/state-res/, plus unit tests for the pieces (auth chains,
 * the auth difference, the conflicted state subgraph, the orderings) and for bad input.
 *
 * Fixture format (one scenario per file):
 *   proves        one sentence: what the scenario shows.
 *   versions      the room versions it runs under, e.g. ["1", "2", "11", "12"].
 *   events        compact events, in an order where prev_events come first:
 *                   id            fake event ID without the "$" ("PL2" → "$PL2")
 *                   type, state_key, sender, content
 *                   prev_events   default: the event listed just before (none for the first)
 *                   auth_events   default: the auth events selection from the state before the event (which the
 *                                 loader tracks along single-parent prev_events; give it explicitly otherwise)
 *                   origin_server_ts  default: the event's 1-based position in the list
 *                   depth         default: 1 + the greatest depth of its prev_events
 *                   keep_creators in v12 the loader removes room creators from power-levels `users` (rule 10.4
 *                                 forbids listing them); true keeps them, for events meant to break that rule.
 *                 Users are written as bare names ("alice" → "@alice:example.org") in sender, member state
 *                 keys, power-levels `users` and `additional_creators`.
 *   state_sets | tips   the states to resolve: explicit lists of event IDs, or fork tips whose state after is used.
 *   rejected      events the source reports as rejected on receipt (optional).
 *   unauthorised  events deliberately not allowed by their own auth events (a malicious server's fork); the
 *                 fixture sanity check skips them (optional).
 *   expected      per algorithm ("v1", "v2", "v2.1", or "all"): { type: { state_key: event ID } }, the whole
 *                 resolved state.
 *
 * Room versions change the wire form, which the loader produces: v1–v2 carry event_id and [id, hashes] references,
 * v1–v10 put `creator` in the create event, v12's create event has no room_id and is never an auth event.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { authorize, authStateFromEvents, checkAuthEventsSelection } from '../../../src/core/auth/rules.js';
import { Pdu, splitStateKey, stateKey } from '../../../src/core/event.js';
import type { StateMap } from '../../../src/core/event.js';
import type { JsonObject, JsonValue } from '../../../src/core/json.js';
import { isJsonObject } from '../../../src/core/json.js';
import { roomVersion } from '../../../src/core/room-versions.js';
import type { RoomVersion } from '../../../src/core/room-versions.js';
import {
  EventCache,
  authChain,
  authChainDifference,
  conflictedStateSubgraph,
  isPowerEvent,
  mainlinePositions,
  partitionStateSets,
  partitionStateSetsV1,
  resolveState,
  sha1Hex,
  sortByMainline,
  sortByReverseTopologicalPower,
  v1AuthOrder,
} from '../../../src/core/state-res/index.js';
import type { EventSource } from '../../../src/core/state-res/index.js';

const FIXTURE_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/state-res');
const SERVER = 'example.org';

// ---------------------------------------------------------------------------------------------------------------
// Fixture loader

interface FixtureEvent {
  id: string;
  type: string;
  state_key?: string;
  sender: string;
  content?: JsonObject;
  prev_events?: string[];
  auth_events?: string[];
  origin_server_ts?: number;
  depth?: number;
  keep_creators?: boolean;
}
type ExpectedState = Record<string, Record<string, string>>;
interface Fixture {
  proves: string;
  versions: string[];
  events: FixtureEvent[];
  state_sets?: string[][];
  tips?: string[];
  rejected?: string[];
  unauthorised?: string[];
  expected: Partial<Record<'v1' | 'v2' | 'v2.1' | 'all', ExpectedState>>;
}

function user(name: string): string {
  if (name.startsWith('@')) return name;
  return name.includes(':') ? '@' + name : `@${name}:${SERVER}`;
}
const eid = (id: string): string => '$' + id;
const bare = (id: string): string => (id.startsWith('$') ? id.slice(1) : id);

interface Room {
  version: RoomVersion;
  roomId: string;
  events: Map<string, Pdu>;
  /** State after each event whose state the loader could track. */
  stateAfter: Map<string, StateMap>;
}

function expandContent(fx: FixtureEvent, version: RoomVersion, creators: string[]): JsonObject {
  const content: JsonObject = structuredClone(fx.content ?? {});
  if (fx.type === 'm.room.create') {
    if (!version.implicitRoomCreator) content.creator = user(fx.sender);
    content.room_version = version.id;
    if (Array.isArray(content.additional_creators)) {
      content.additional_creators = content.additional_creators.map((u) => (typeof u === 'string' ? user(u) : u));
    }
  }
  if (fx.type === 'm.room.power_levels' && isJsonObject(content.users)) {
    const users: JsonObject = {};
    for (const [name, level] of Object.entries(content.users)) {
      const id = user(name);
      if (version.privilegedCreators && !fx.keep_creators && creators.includes(id)) continue;
      users[id] = level;
    }
    content.users = users;
  }
  return content;
}

/** The auth events selection (server-server-api.md), written independently of src/ for the fixtures. */
function selectAuthEvents(state: StateMap, type: string, sender: string, sk: string | undefined, content: JsonObject, version: RoomVersion): string[] {
  if (type === 'm.room.create') return [];
  const keys: Array<[string, string]> = [];
  if (!version.roomIdFromCreateEvent) keys.push(['m.room.create', '']);
  keys.push(['m.room.power_levels', ''], ['m.room.member', sender]);
  if (type === 'm.room.member' && sk !== undefined) {
    keys.push(['m.room.member', sk]);
    if (['join', 'invite', 'knock'].includes(String(content.membership))) keys.push(['m.room.join_rules', '']);
  }
  const out: string[] = [];
  for (const [t, k] of keys) {
    const id = state.get(stateKey(t, k));
    if (id !== undefined && !out.includes(id)) out.push(id);
  }
  return out;
}

function buildRoom(fixture: Pick<Fixture, 'events'>, version: RoomVersion): Room {
  const events = new Map<string, Pdu>();
  const stateAfter = new Map<string, StateMap>();
  const createFx = fixture.events.find((e) => e.type === 'm.room.create');
  const createId = createFx ? eid(createFx.id) : '$CREATE';
  const roomId = version.roomIdFromCreateEvent ? '!' + createId.slice(1) : `!room:${SERVER}`;
  const creators: string[] = [];
  if (createFx) {
    creators.push(user(createFx.sender));
    const extra = createFx.content?.additional_creators;
    if (version.privilegedCreators && Array.isArray(extra)) for (const u of extra) creators.push(user(String(u)));
  }
  const ref = (id: string): JsonValue => (version.eventIdFormat === 'server' ? [id, { sha256: 'fixture' }] : id);

  fixture.events.forEach((fx, index) => {
    const id = eid(fx.id);
    if (events.has(id)) throw new Error(`fixture: duplicate event ${fx.id}`);
    const prevs = (fx.prev_events ?? (index > 0 && fx.type !== 'm.room.create' ? [fixture.events[index - 1].id] : [])).map(eid);
    for (const p of prevs) if (!events.has(p)) throw new Error(`fixture: ${fx.id} names unknown prev event ${p}`);
    const sender = user(fx.sender);
    const sk = fx.state_key === undefined ? undefined : fx.type === 'm.room.member' ? user(fx.state_key) : fx.state_key;
    const content = expandContent(fx, version, creators);
    const before: StateMap | undefined =
      prevs.length === 0 ? new Map() : prevs.length === 1 ? stateAfter.get(prevs[0]) : undefined;
    let auth: string[];
    if (fx.auth_events) auth = fx.auth_events.map(eid);
    else if (before) auth = selectAuthEvents(before, fx.type, sender, sk, content, version);
    else throw new Error(`fixture: ${fx.id} has several prev_events; give its auth_events`);
    for (const a of auth) if (!events.has(a)) throw new Error(`fixture: ${fx.id} names unknown auth event ${a}`);
    const depth = fx.depth ?? (prevs.length === 0 ? 1 : 1 + Math.max(...prevs.map((p) => events.get(p)?.depth ?? 0)));
    const json: JsonObject = {
      type: fx.type,
      sender,
      content,
      origin_server_ts: fx.origin_server_ts ?? index + 1,
      depth,
      prev_events: prevs.map(ref),
      auth_events: auth.map(ref),
      hashes: { sha256: 'fixture' },
      signatures: { [SERVER]: { 'ed25519:fixture': 'fixture' } },
    };
    if (sk !== undefined) json.state_key = sk;
    if (!(version.roomIdFromCreateEvent && fx.type === 'm.room.create')) json.room_id = roomId;
    if (version.eventIdFormat === 'server') json.event_id = id;
    const pdu = new Pdu(id, json);
    events.set(id, pdu);
    if (before) {
      const after = new Map(before);
      if (sk !== undefined) after.set(stateKey(fx.type, sk), id);
      stateAfter.set(id, after);
    }
  });
  return { version, roomId, events, stateAfter };
}

function stateSetsOf(fixture: Fixture, room: Room): StateMap[] {
  if (fixture.state_sets) {
    return fixture.state_sets.map((ids) => {
      const m: StateMap = new Map();
      for (const id of ids) {
        const e = room.events.get(eid(id));
        if (!e || e.stateKey === undefined) throw new Error(`fixture: state set names ${id}, not a known state event`);
        const k = stateKey(e.type, e.stateKey);
        if (m.has(k)) throw new Error(`fixture: state set has two events for ${e.type}/${e.stateKey}`);
        m.set(k, e.eventId);
      }
      return m;
    });
  }
  return (fixture.tips ?? []).map((tip) => {
    const s = room.stateAfter.get(eid(tip));
    if (!s) throw new Error(`fixture: no tracked state after ${tip}`);
    return s;
  });
}

/** A Map-backed EventSource that counts how it is called. */
function sourceOf(events: Map<string, Pdu>, opts: { batch?: boolean; rejected?: Iterable<string> } = {}): EventSource & {
  calls: { single: number; batch: number };
} {
  const rejected = new Set(opts.rejected ?? []);
  const calls = { single: 0, batch: 0 };
  const src: EventSource & { calls: typeof calls } = {
    calls,
    async getEvent(id) {
      calls.single++;
      return events.get(id);
    },
    async getRejected(ids) {
      return new Set(ids.filter((id) => rejected.has(id)));
    },
  };
  if (opts.batch !== false) {
    src.getEvents = async (ids) => {
      calls.batch++;
      const out = new Map<string, Pdu>();
      for (const id of ids) {
        const e = events.get(id);
        if (e) out.set(id, e);
      }
      return out;
    };
  }
  return src;
}

/** A state map as a plain object, `type|state_key` → bare event ID, for readable diffs. */
function plain(state: StateMap): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of [...state.keys()].sort()) {
    const [t, s] = splitStateKey(k);
    out[`${t}|${s}`] = bare(state.get(k) as string);
  }
  return out;
}
function expectedPlain(expected: ExpectedState): Record<string, string> {
  const m: StateMap = new Map();
  for (const [type, byKey] of Object.entries(expected)) {
    for (const [k, id] of Object.entries(byKey)) m.set(stateKey(type, type === 'm.room.member' ? user(k) : k), eid(id));
  }
  return plain(m);
}

function loadFixtures(): Array<[string, Fixture]> {
  return readdirSync(FIXTURE_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => [f.replace(/\.json$/, ''), JSON.parse(readFileSync(join(FIXTURE_DIR, f), 'utf8')) as Fixture]);
}

function mustVersion(id: string): RoomVersion {
  const v = roomVersion(id);
  if (!v) throw new Error(`unknown room version ${id}`);
  return v;
}

// ---------------------------------------------------------------------------------------------------------------
// Fixtures

const fixtures = loadFixtures();

describe('state resolution fixtures', () => {
  it('has at least 25 scenarios, each saying what it proves and expecting a result for every algorithm it runs', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(25);
    for (const [name, fx] of fixtures) {
      expect(typeof fx.proves, name).toBe('string');
      expect(fx.proves.length, name).toBeGreaterThan(20);
      expect(fx.versions.length, name).toBeGreaterThan(0);
      for (const v of fx.versions) {
        const alg = mustVersion(v).stateRes;
        expect(fx.expected[alg] ?? fx.expected.all, `${name}: expected for ${alg}`).toBeDefined();
      }
    }
  });

  for (const [name, fx] of fixtures) {
    describe(name, () => {
      fx.versions.forEach((versionId, i) => {
        const version = mustVersion(versionId);
        it(`room version ${versionId}: ${fx.proves}`, async () => {
          const room = buildRoom(fx, version);
          const rejected = (fx.rejected ?? []).map(eid);
          // Alternate between a batching source and a one-at-a-time one.
          const events = sourceOf(room.events, { batch: i % 2 === 0, rejected });
          const resolved = await resolveState({ version, stateSets: stateSetsOf(fx, room), events });
          const expected = (fx.expected[version.stateRes] ?? fx.expected.all) as ExpectedState;
          expect(plain(resolved)).toEqual(expectedPlain(expected));
        });

        it(`room version ${versionId}: every event is allowed by its own auth events (unless marked unauthorised)`, () => {
          const room = buildRoom(fx, version);
          const skip = new Set((fx.unauthorised ?? []).map(eid));
          const rejected = new Set((fx.rejected ?? []).map(eid));
          const create = [...room.events.values()].find((e) => e.type === 'm.room.create');
          for (const e of room.events.values()) {
            if (skip.has(e.eventId)) continue;
            const authEvents = e.authEvents.map((a) => room.events.get(a) as Pdu);
            const sel = checkAuthEventsSelection(e, authEvents, version, (id) => rejected.has(id));
            expect(sel, `${bare(e.eventId)} auth_events`).toEqual({ ok: true });
            const withCreate = version.roomIdFromCreateEvent && create ? [create, ...authEvents] : authEvents;
            expect(authorize(e, authStateFromEvents(withCreate), version), bare(e.eventId)).toEqual({ ok: true });
          }
        });
      });
    });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Building blocks

const V2 = mustVersion('10');
const V12 = mustVersion('12');
const V1 = mustVersion('1');

/** A small room: alice creates it, bob and charlie join, then the events given. */
function smallRoom(extra: FixtureEvent[], version: RoomVersion = V2): Room {
  return buildRoom(
    {
      events: [
        { id: 'CREATE', type: 'm.room.create', state_key: '', sender: 'alice' },
        { id: 'IMA', type: 'm.room.member', state_key: 'alice', sender: 'alice', content: { membership: 'join' } },
        { id: 'IPOWER', type: 'm.room.power_levels', state_key: '', sender: 'alice', content: { users: { alice: 100, bob: 50 } } },
        { id: 'IJR', type: 'm.room.join_rules', state_key: '', sender: 'alice', content: { join_rule: 'public' } },
        { id: 'IMB', type: 'm.room.member', state_key: 'bob', sender: 'bob', content: { membership: 'join' } },
        { id: 'IMC', type: 'm.room.member', state_key: 'charlie', sender: 'charlie', content: { membership: 'join' } },
        ...extra,
      ],
    },
    version,
  );
}
const ids = (...names: string[]): string[] => names.map(eid);
const sorted = (s: Iterable<string>): string[] => [...s].map(bare).sort();

describe('authChain', () => {
  const room = smallRoom([
    { id: 'T1', type: 'm.room.topic', state_key: '', sender: 'alice', content: { topic: 'a' } },
  ]);
  const src = sourceOf(room.events);

  it('follows auth_events recursively and leaves out the starting events', async () => {
    expect(sorted(await authChain(ids('IMC'), src))).toEqual(['CREATE', 'IJR', 'IMA', 'IPOWER']);
    expect(sorted(await authChain(ids('T1'), src))).toEqual(['CREATE', 'IMA', 'IPOWER']);
    expect(sorted(await authChain(ids('CREATE'), src))).toEqual([]);
  });

  it('is the union for several events, and counts a starting event that another one reaches', async () => {
    expect(sorted(await authChain(ids('IMC', 'IPOWER'), src))).toEqual(['CREATE', 'IJR', 'IMA', 'IPOWER']);
    expect(sorted(await authChain(ids('IMC'), src, { includeStart: true }))).toEqual(['CREATE', 'IJR', 'IMA', 'IMC', 'IPOWER']);
  });

  it('fetches one batch per level of the walk, not one call per event', async () => {
    const counting = sourceOf(room.events);
    await authChain(ids('IMC', 'T1'), counting);
    expect(counting.calls.single).toBe(0);
    expect(counting.calls.batch).toBeLessThanOrEqual(4);
  });

  it('skips events the source does not have and ends on a cycle', async () => {
    const a = new Pdu('$A', { type: 'm.room.topic', state_key: '', auth_events: ['$B', '$GONE'], room_id: '!r' });
    const b = new Pdu('$B', { type: 'm.room.topic', state_key: '', auth_events: ['$A'], room_id: '!r' });
    const cyc = sourceOf(new Map([['$A', a], ['$B', b]]));
    expect(sorted(await authChain(['$A'], cyc))).toEqual(['A', 'B']);
  });
});

describe('authChainDifference', () => {
  const room = smallRoom([
    { id: 'PL2', type: 'm.room.power_levels', state_key: '', sender: 'alice', content: { users: { alice: 100, bob: 100 } } },
    { id: 'PL3', type: 'm.room.power_levels', state_key: '', sender: 'bob', content: { users: { alice: 100, bob: 100, charlie: 50 } } },
    { id: 'T1', type: 'm.room.topic', state_key: '', sender: 'alice', content: { topic: 'x' }, prev_events: ['IMC'] },
  ]);
  const src = sourceOf(room.events);

  it('is the events reachable from some state sets but not all, counting the state events themselves', async () => {
    const s1 = room.stateAfter.get('$PL3') as StateMap;
    const s2 = room.stateAfter.get('$T1') as StateMap;
    expect(sorted(await authChainDifference([s1, s2], src))).toEqual(['PL2', 'PL3', 'T1']);
  });

  it('is empty for identical state sets and for a single one', async () => {
    const s = room.stateAfter.get('$T1') as StateMap;
    expect(sorted(await authChainDifference([s, new Map(s)], src))).toEqual([]);
    expect(sorted(await authChainDifference([s], src))).toEqual([]);
  });

  it('does not count an old event reached from every state set', async () => {
    // IPOWER is the old power levels in s1 and cited by PL2 → reachable from both sides.
    const s1 = room.stateAfter.get('$PL2') as StateMap;
    const s2 = room.stateAfter.get('$IMC') as StateMap;
    expect(sorted(await authChainDifference([s1, s2], src))).toEqual(['PL2']);
  });
});

describe('conflictedStateSubgraph', () => {
  it('holds the events on auth paths between conflicted events, endpoints included, and nothing else', async () => {
    const room = smallRoom([
      { id: 'PL2', type: 'm.room.power_levels', state_key: '', sender: 'alice', content: { users: { alice: 100, bob: 100 } } },
      { id: 'PL3', type: 'm.room.power_levels', state_key: '', sender: 'bob', content: { users: { alice: 100, bob: 100, charlie: 50 } } },
    ]);
    const src = sourceOf(room.events);
    // PL3 → PL2 → IPOWER, and PL3 → IMB (bob's join) → IJR → IPOWER: all on paths between the two conflicted
    // events. CREATE and IMA lie below IPOWER only; IMC cites IPOWER but no conflicted event reaches it.
    expect(sorted(await conflictedStateSubgraph(ids('PL3', 'IPOWER'), src))).toEqual(['IJR', 'IMB', 'IPOWER', 'PL2', 'PL3']);
    expect(sorted(await conflictedStateSubgraph(ids('PL3'), src))).toEqual(['PL3']);
  });
});

describe('partitioning state sets', () => {
  const a = new Map([[stateKey('t', ''), '$1'], [stateKey('u', ''), '$2'], [stateKey('only', ''), '$3']]);
  const b = new Map([[stateKey('t', ''), '$1'], [stateKey('u', ''), '$9']]);

  it('v2: a key missing from some state set is conflicted', () => {
    const { unconflicted, conflicted } = partitionStateSets([a, b]);
    expect([...unconflicted]).toEqual([[stateKey('t', ''), '$1']]);
    expect(conflicted.get(stateKey('u', ''))).toEqual(new Set(['$2', '$9']));
    expect(conflicted.get(stateKey('only', ''))).toEqual(new Set(['$3']));
  });

  it('v1: only disagreeing keys are conflicts', () => {
    const { unconflicted, conflicted } = partitionStateSetsV1([a, b]);
    expect(unconflicted.get(stateKey('only', ''))).toBe('$3');
    expect([...conflicted.keys()]).toEqual([stateKey('u', '')]);
  });
});

describe('power events', () => {
  const ev = (json: JsonObject): Pdu => new Pdu('$x', json);
  it('are power levels, join rules, kicks and bans', () => {
    expect(isPowerEvent(ev({ type: 'm.room.power_levels', state_key: '' }))).toBe(true);
    expect(isPowerEvent(ev({ type: 'm.room.join_rules', state_key: '' }))).toBe(true);
    expect(isPowerEvent(ev({ type: 'm.room.member', state_key: '@b:x', sender: '@a:x', content: { membership: 'ban' } }))).toBe(true);
    expect(isPowerEvent(ev({ type: 'm.room.member', state_key: '@b:x', sender: '@a:x', content: { membership: 'leave' } }))).toBe(true);
  });
  it('are not leaving oneself, joins, topics or message events', () => {
    expect(isPowerEvent(ev({ type: 'm.room.member', state_key: '@a:x', sender: '@a:x', content: { membership: 'leave' } }))).toBe(false);
    expect(isPowerEvent(ev({ type: 'm.room.member', state_key: '@a:x', sender: '@a:x', content: { membership: 'join' } }))).toBe(false);
    expect(isPowerEvent(ev({ type: 'm.room.topic', state_key: '' }))).toBe(false);
    expect(isPowerEvent(ev({ type: 'm.room.power_levels' }))).toBe(false);
  });
});

describe('reverse topological power ordering', () => {
  const room = smallRoom([
    { id: 'JA', type: 'm.room.join_rules', state_key: '', sender: 'alice', content: { join_rule: 'invite' }, origin_server_ts: 50, prev_events: ['IMC'] },
    { id: 'JB', type: 'm.room.join_rules', state_key: '', sender: 'bob', content: { join_rule: 'invite' }, origin_server_ts: 10, prev_events: ['IMC'] },
    { id: 'JC', type: 'm.room.join_rules', state_key: '', sender: 'charlie', content: { join_rule: 'invite' }, origin_server_ts: 10, prev_events: ['IMC'] },
    { id: 'JD', type: 'm.room.join_rules', state_key: '', sender: 'charlie', content: { join_rule: 'invite' }, origin_server_ts: 10, prev_events: ['IMC'] },
  ]);
  const src = sourceOf(room.events);

  it('puts greater power first, then smaller origin_server_ts, then smaller event ID', async () => {
    expect((await sortByReverseTopologicalPower(ids('JD', 'JC', 'JB', 'JA'), src, V2)).map(bare)).toEqual(['JA', 'JB', 'JC', 'JD']);
  });

  it('keeps auth events before the events they authorise, whatever the power', async () => {
    // IMC (charlie, power 0) is an auth event of nothing here, but IPOWER is one of IJR's and IMB's.
    expect((await sortByReverseTopologicalPower(ids('IMB', 'IJR', 'IPOWER', 'CREATE'), src, V2)).map(bare)).toEqual([
      'CREATE',
      'IPOWER',
      'IJR',
      'IMB',
    ]);
  });

  it('sees an auth dependency through an event outside the set', async () => {
    // A → B → C with B left out: C must still come first, although A's timestamp is smaller.
    const mk = (id: string, auth: string[], ts: number): Pdu =>
      new Pdu(id, { type: 'm.room.join_rules', state_key: '', sender: '@a:x', auth_events: auth, origin_server_ts: ts, room_id: '!r' });
    const m = new Map([['$A', mk('$A', ['$B'], 1)], ['$B', mk('$B', ['$C'], 5)], ['$C', mk('$C', [], 9)]]);
    expect(await sortByReverseTopologicalPower(['$A', '$C'], sourceOf(m), V2)).toEqual(['$C', '$A']);
  });

  it('counts room v12 creators as infinitely powerful', async () => {
    // alice (creator) and bob (100) send at once; bob's event is older. v11: equal power, so bob's goes first.
    const v11 = mustVersion('11');
    const r11 = buildRoom({ events: creatorAndAdminEvents() }, v11);
    expect((await sortByReverseTopologicalPower(ids('X1', 'X2'), sourceOf(r11.events), v11)).map(bare)).toEqual(['X1', 'X2']);
    const r12 = buildRoom({ events: creatorAndAdminEvents() }, V12);
    expect((await sortByReverseTopologicalPower(ids('X1', 'X2'), sourceOf(r12.events), V12)).map(bare)).toEqual(['X2', 'X1']);
  });

  it('terminates on an auth cycle and still returns every event once', async () => {
    const mk = (id: string, auth: string[], ts: number): Pdu =>
      new Pdu(id, { type: 'm.room.join_rules', state_key: '', sender: '@a:x', auth_events: auth, origin_server_ts: ts, room_id: '!r' });
    const m = new Map([['$A', mk('$A', ['$B'], 3)], ['$B', mk('$B', ['$C'], 2)], ['$C', mk('$C', ['$A'], 1)], ['$D', mk('$D', [], 9)]]);
    const order = await sortByReverseTopologicalPower(['$A', '$B', '$C', '$D'], sourceOf(m), V2);
    expect([...order].sort()).toEqual(['$A', '$B', '$C', '$D']);
    expect(order[0]).toBe('$D');
  });
});

function creatorAndAdminEvents(): FixtureEvent[] {
  return [
    { id: 'CREATE', type: 'm.room.create', state_key: '', sender: 'alice' },
    { id: 'IMA', type: 'm.room.member', state_key: 'alice', sender: 'alice', content: { membership: 'join' } },
    { id: 'IPOWER', type: 'm.room.power_levels', state_key: '', sender: 'alice', content: { users: { alice: 100, bob: 100 } } },
    { id: 'IJR', type: 'm.room.join_rules', state_key: '', sender: 'alice', content: { join_rule: 'public' } },
    { id: 'IMB', type: 'm.room.member', state_key: 'bob', sender: 'bob', content: { membership: 'join' } },
    { id: 'X1', type: 'm.room.topic', state_key: '', sender: 'bob', origin_server_ts: 1, prev_events: ['IMB'] },
    { id: 'X2', type: 'm.room.topic', state_key: '', sender: 'alice', origin_server_ts: 2, prev_events: ['IMB'] },
  ];
}

describe('mainline ordering', () => {
  const room = smallRoom([
    { id: 'PL2', type: 'm.room.power_levels', state_key: '', sender: 'alice', content: { users: { alice: 100, bob: 50, charlie: 50 } } },
    { id: 'PL3', type: 'm.room.power_levels', state_key: '', sender: 'alice', content: { users: { alice: 100, bob: 50 } } },
    { id: 'OLD', type: 'm.room.topic', state_key: '', sender: 'alice', origin_server_ts: 900, prev_events: ['IMC'] },
    { id: 'MID', type: 'm.room.topic', state_key: '', sender: 'alice', origin_server_ts: 500, prev_events: ['PL2'] },
    { id: 'NEW1', type: 'm.room.topic', state_key: '', sender: 'alice', origin_server_ts: 100, prev_events: ['PL3'] },
    { id: 'NEW2', type: 'm.room.topic', state_key: '', sender: 'alice', origin_server_ts: 100, prev_events: ['PL3'] },
    { id: 'NOPL', type: 'm.room.topic', state_key: '', sender: 'alice', origin_server_ts: 999, auth_events: ['CREATE', 'IMA'], prev_events: ['IMA'] },
  ]);
  const src = sourceOf(room.events);

  it('gives positions along the power-levels chain of P₀, and Infinity off it', async () => {
    const cache = new EventCache(src);
    const pos = await mainlinePositions(ids('OLD', 'MID', 'NEW1', 'PL3', 'NOPL'), '$PL3', cache);
    expect(Object.fromEntries([...pos].map(([k, v]) => [bare(k), v]))).toEqual({ OLD: 2, MID: 1, NEW1: 0, PL3: 1, NOPL: Infinity });
  });

  it('orders by position (greatest first), then origin_server_ts, then event ID', async () => {
    expect((await sortByMainline(ids('NEW2', 'NEW1', 'MID', 'OLD', 'NOPL'), '$PL3', src)).map(bare)).toEqual([
      'NOPL',
      'OLD',
      'MID',
      'NEW1',
      'NEW2',
    ]);
  });

  it('puts everything at Infinity when there is no power-levels event to base it on', async () => {
    expect((await sortByMainline(ids('NEW2', 'OLD', 'MID'), undefined, src)).map(bare)).toEqual(['NEW2', 'MID', 'OLD']);
  });
});

describe('v1 ordering', () => {
  it('replays auth-relevant conflicts by ascending depth, then descending sha1(event_id)', () => {
    const mk = (id: string, depth: number): Pdu => new Pdu(id, { type: 'm.room.power_levels', state_key: '', depth });
    const [x, y] = ['$a', '$b'].sort((p, q) => (sha1Hex(p) < sha1Hex(q) ? 1 : -1));
    expect([mk(y, 3), mk(x, 3), mk('$c', 1)].sort(v1AuthOrder).map((e) => e.eventId)).toEqual(['$c', x, y]);
    expect(sha1Hex('abc')).toBe('a9993e364706816aba3e25717850c26c9cd0d89d');
  });
});

describe('resolveState on bad input', () => {
  const room = smallRoom([
    { id: 'T1', type: 'm.room.topic', state_key: '', sender: 'alice', content: { topic: 'one' }, origin_server_ts: 10, prev_events: ['IMC'] },
    { id: 'T2', type: 'm.room.topic', state_key: '', sender: 'bob', content: { topic: 'two' }, origin_server_ts: 20, prev_events: ['IMC'] },
  ]);
  const s1 = room.stateAfter.get('$T1') as StateMap;
  const s2 = room.stateAfter.get('$T2') as StateMap;

  it('resolves nothing to nothing and one state set to itself', async () => {
    const events = sourceOf(room.events);
    expect((await resolveState({ version: V2, stateSets: [], events })).size).toBe(0);
    expect(plain(await resolveState({ version: V2, stateSets: [s1], events }))).toEqual(plain(s1));
  });

  it('drops a conflicted event the source does not have and keeps unconflicted ones it lacks', async () => {
    for (const version of [V1, V2, V12]) {
      const r = buildRoom({ events: smallRoomEvents() }, version);
      const a = r.stateAfter.get('$T1') as StateMap;
      const b = r.stateAfter.get('$T2') as StateMap;
      const events = new Map(r.events);
      events.delete('$T2');
      events.delete('$IMC'); // unconflicted
      const out = await resolveState({ version, stateSets: [a, b], events: sourceOf(events) });
      expect(out.get(stateKey('m.room.topic', '')), version.id).toBe('$T1');
      expect(out.get(stateKey('m.room.member', user('charlie'))), version.id).toBe('$IMC');
    }
  });

  it('ignores events from another room', async () => {
    const foreign = new Pdu('$T2', { ...room.events.get('$T2')!.json, room_id: '!elsewhere:example.org' });
    const events = new Map(room.events);
    events.set('$T2', foreign);
    const out = await resolveState({ version: V2, stateSets: [s1, s2], events: sourceOf(events) });
    expect(out.get(stateKey('m.room.topic', ''))).toBe('$T1');
    // Told the room explicitly, the same holds.
    const out2 = await resolveState({ version: V2, stateSets: [s1, s2], events: sourceOf(events), roomId: room.roomId });
    expect(out2.get(stateKey('m.room.topic', ''))).toBe('$T1');
  });

  it('finishes on an auth_events cycle', async () => {
    const cyc = new Map(room.events);
    const t1 = room.events.get('$T1') as Pdu;
    const t2 = room.events.get('$T2') as Pdu;
    cyc.set('$T1', new Pdu('$T1', { ...t1.json, auth_events: [...t1.authEvents, '$T2'] }));
    cyc.set('$T2', new Pdu('$T2', { ...t2.json, auth_events: [...t2.authEvents, '$T1'] }));
    for (const version of [V2, V12]) {
      const out = await resolveState({ version, stateSets: [s1, s2], events: sourceOf(cyc) });
      expect(out.get(stateKey('m.room.create', ''))).toBe('$CREATE');
    }
  });

  it('reports the events the iterative auth checks leave out', async () => {
    const r = smallRoom([
      { id: 'KICK', type: 'm.room.member', state_key: 'bob', sender: 'alice', content: { membership: 'leave' }, prev_events: ['IMC'] },
      { id: 'TB', type: 'm.room.topic', state_key: '', sender: 'bob', content: { topic: 'mine' }, prev_events: ['IMC'] },
    ]);
    const dropped: string[] = [];
    const out = await resolveState({
      version: V2,
      stateSets: [r.stateAfter.get('$KICK') as StateMap, r.stateAfter.get('$TB') as StateMap],
      events: sourceOf(r.events),
      onRejected: (e) => dropped.push(bare(e.eventId)),
    });
    expect(dropped).toEqual(['TB']);
    expect(out.has(stateKey('m.room.topic', ''))).toBe(false);
  });

  it('does not fetch events one at a time when the source can batch', async () => {
    const events = sourceOf(room.events);
    await resolveState({ version: V2, stateSets: [s1, s2], events });
    expect(events.calls.single).toBe(0);
  });
});

function smallRoomEvents(): FixtureEvent[] {
  return [
    { id: 'CREATE', type: 'm.room.create', state_key: '', sender: 'alice' },
    { id: 'IMA', type: 'm.room.member', state_key: 'alice', sender: 'alice', content: { membership: 'join' } },
    { id: 'IPOWER', type: 'm.room.power_levels', state_key: '', sender: 'alice', content: { users: { alice: 100, bob: 50 } } },
    { id: 'IJR', type: 'm.room.join_rules', state_key: '', sender: 'alice', content: { join_rule: 'public' } },
    { id: 'IMB', type: 'm.room.member', state_key: 'bob', sender: 'bob', content: { membership: 'join' } },
    { id: 'IMC', type: 'm.room.member', state_key: 'charlie', sender: 'charlie', content: { membership: 'join' } },
    { id: 'T1', type: 'm.room.topic', state_key: '', sender: 'alice', content: { topic: 'one' }, origin_server_ts: 10, prev_events: ['IMC'] },
    { id: 'T2', type: 'm.room.topic', state_key: '', sender: 'bob', content: { topic: 'two' }, origin_server_ts: 20, prev_events: ['IMC'] },
  ];
}

describe('rejected auth events', () => {
  it('are what keeps the v2.1 join out in v21-rejected-auth-event-not-used: unflagged, the same join gets in', async () => {
    const fx = fixtures.find(([n]) => n === 'v21-rejected-auth-event-not-used')?.[1] as Fixture;
    const room = buildRoom(fx, V12);
    const stateSets = stateSetsOf(fx, room);
    const flagged = await resolveState({ version: V12, stateSets, events: sourceOf(room.events, { rejected: ['$JRX'] }) });
    const unflagged = await resolveState({ version: V12, stateSets, events: sourceOf(room.events) });
    expect(flagged.has(stateKey('m.room.member', user('charlie')))).toBe(false);
    expect(unflagged.get(stateKey('m.room.member', user('charlie')))).toBe('$JOINC');
  });
});

describe('v1 when no candidate passes', () => {
  it('keeps the last candidate in preference order (lowest depth) rather than dropping the key', async () => {
    // bob's two topics conflict; bob is kicked (unconflicted), so neither passes in R.
    const r = buildRoom(
      {
        events: [
          ...smallRoomEvents().slice(0, 6),
          { id: 'KICK', type: 'm.room.member', state_key: 'bob', sender: 'alice', content: { membership: 'leave' }, prev_events: ['IMC'] },
          { id: 'TB1', type: 'm.room.topic', state_key: '', sender: 'bob', content: { topic: '1' }, prev_events: ['IMC'] },
          { id: 'M', type: 'm.room.message', sender: 'bob', content: {}, prev_events: ['IMC'] },
          { id: 'TB2', type: 'm.room.topic', state_key: '', sender: 'bob', content: { topic: '2' }, prev_events: ['M'] },
        ],
      },
      V1,
    );
    const kick = r.events.get('$KICK') as Pdu;
    const withKick = (s: StateMap): StateMap => new Map(s).set(stateKey('m.room.member', kick.stateKey as string), kick.eventId);
    const out = await resolveState({
      version: V1,
      stateSets: [withKick(r.stateAfter.get('$TB1') as StateMap), withKick(r.stateAfter.get('$TB2') as StateMap)],
      events: sourceOf(r.events),
    });
    expect(out.get(stateKey('m.room.topic', ''))).toBe('$TB1');
  });
});
