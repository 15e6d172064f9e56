/**
 * State resolution benchmark: a room with 10,000 joined members forks into two branches holding 50 conflicting state
 * events between them (power levels, topics, join rules, joins, leaves, kicks, bans), and the branches' states are
 * resolved, for a v2 room (version 10) and a v2.1 room (version 12).
 *
 * Run: node --import tsx/esm bench/state-res.ts [--members N] [--runs N]
 * Prints a table and one JSON line per room version.
 */
import { authStateKeysFor } from '../src/core/auth/auth-events.js';
import { Pdu, stateKey } from '../src/core/event.js';
import type { StateMap } from '../src/core/event.js';
import type { JsonObject } from '../src/core/json.js';
import { roomVersion } from '../src/core/room-versions.js';
import type { RoomVersion } from '../src/core/room-versions.js';
import { resolveState } from '../src/core/state-res/index.js';
import type { EventSource } from '../src/core/state-res/index.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const MEMBERS = arg('--members', 10_000);
const RUNS = arg('--runs', 15);

const SERVER = 'bench.example';
const u = (name: string): string => `@${name}:${SERVER}`;

/** Builds events along one branch of the DAG, keeping the branch's state so auth_events follow the selection. */
class Branch {
  readonly state: StateMap;
  constructor(
    readonly room: Room,
    public tip: string | undefined,
    state: StateMap = new Map(),
  ) {
    this.state = state;
  }

  fork(): Branch {
    return new Branch(this.room, this.tip, new Map(this.state));
  }

  add(type: string, sender: string, content: JsonObject, sk?: string): void {
    const { room } = this;
    const id = `$e${++room.n}`;
    const isCreate = type === 'm.room.create';
    if (isCreate && room.version.roomIdFromCreateEvent) room.roomId = '!' + id.slice(1);
    const probe = new Pdu(id, { type, sender, content, ...(sk === undefined ? {} : { state_key: sk }) });
    const auth: string[] = [];
    for (const [t, k] of authStateKeysFor(probe, room.version)) {
      const a = this.state.get(stateKey(t, k));
      if (a !== undefined && !auth.includes(a)) auth.push(a);
    }
    const json: JsonObject = {
      type,
      sender,
      content,
      origin_server_ts: ++room.ts,
      depth: this.tip ? (room.events.get(this.tip) as Pdu).depth + 1 : 1,
      prev_events: this.tip ? [this.tip] : [],
      auth_events: auth,
    };
    if (sk !== undefined) json.state_key = sk;
    if (!(isCreate && room.version.roomIdFromCreateEvent)) json.room_id = room.roomId;
    room.events.set(id, new Pdu(id, json));
    if (sk !== undefined) this.state.set(stateKey(type, sk), id);
    this.tip = id;
  }
}

interface Room {
  readonly version: RoomVersion;
  readonly events: Map<string, Pdu>;
  roomId: string;
  n: number;
  ts: number;
}

function buildRoom(version: RoomVersion): { stateSets: StateMap[]; events: Map<string, Pdu>; conflicting: number } {
  const room: Room = { version, events: new Map(), roomId: `!bench:${SERVER}`, n: 0, ts: 1_700_000_000_000 };
  const creatorListed = !version.privilegedCreators;
  const users = (extra: Record<string, number>): JsonObject => ({ ...(creatorListed ? { [u('admin')]: 100 } : {}), ...extra });
  const mods: Record<string, number> = { [u('mod0')]: 50, [u('mod1')]: 50, [u('mod2')]: 50 };

  const main = new Branch(room, undefined);
  const createContent: JsonObject = version.implicitRoomCreator ? { room_version: version.id } : { creator: u('admin'), room_version: version.id };
  main.add('m.room.create', u('admin'), createContent, '');
  main.add('m.room.member', u('admin'), { membership: 'join' }, u('admin'));
  main.add('m.room.power_levels', u('admin'), { users: users(mods) }, '');
  main.add('m.room.join_rules', u('admin'), { join_rule: 'public' }, '');
  main.add('m.room.topic', u('admin'), { topic: 'welcome' }, '');
  for (const m of ['mod0', 'mod1', 'mod2']) main.add('m.room.member', u(m), { membership: 'join' }, u(m));
  for (let i = 0; i < MEMBERS; i++) main.add('m.room.member', u(`user${i}`), { membership: 'join' }, u(`user${i}`));

  const forkN = room.n;

  // Branch A (25 conflicting events): the admin demotes mod2 and makes the room invite-only; mods ban and kick.
  const a = main.fork();
  a.add('m.room.power_levels', u('admin'), { users: users({ [u('mod0')]: 50, [u('mod1')]: 50 }) }, '');
  a.add('m.room.join_rules', u('admin'), { join_rule: 'invite' }, '');
  for (let i = 0; i < 3; i++) a.add('m.room.topic', u('mod0'), { topic: `A topic ${i}` }, '');
  for (let i = 0; i < 10; i++) a.add('m.room.member', u('mod0'), { membership: 'ban', reason: 'spam' }, u(`user${i}`));
  for (let i = 10; i < 15; i++) a.add('m.room.member', u('mod1'), { membership: 'leave' }, u(`user${i}`));
  for (let i = 15; i < 20; i++) a.add('m.room.member', u(`user${i}`), { membership: 'leave' }, u(`user${i}`));

  // Branch B (25 conflicting events): mod2, demoted on the other branch, promotes someone, sets topics and bans;
  // new users join; members change their profiles.
  const b = main.fork();
  b.add('m.room.power_levels', u('mod2'), { users: users({ ...mods, [u('user20')]: 50 }) }, '');
  for (let i = 0; i < 3; i++) b.add('m.room.topic', u('mod2'), { topic: `B topic ${i}` }, '');
  for (let i = 0; i < 8; i++) b.add('m.room.member', u('mod2'), { membership: 'ban' }, u(`user${100 + i}`));
  for (let i = 0; i < 8; i++) b.add('m.room.member', u(`new${i}`), { membership: 'join' }, u(`new${i}`));
  for (let i = 0; i < 4; i++) b.add('m.room.member', u(`user${200 + i}`), { membership: 'join', displayname: `U${i}` }, u(`user${200 + i}`));
  b.add('m.room.name', u('mod2'), { name: 'B' }, '');

  // Every event after the fork is a state event at a key the other branch leaves alone or sets differently.
  return { stateSets: [a.state, b.state], events: room.events, conflicting: room.n - forkN };
}

function source(events: Map<string, Pdu>): EventSource & { fetched: number; calls: number } {
  const src = {
    fetched: 0,
    calls: 0,
    async getEvent(id: string) {
      src.calls++;
      src.fetched++;
      return events.get(id);
    },
    async getEvents(ids: string[]) {
      src.calls++;
      src.fetched += ids.length;
      const out = new Map<string, Pdu>();
      for (const id of ids) {
        const e = events.get(id);
        if (e) out.set(id, e);
      }
      return out;
    },
  };
  return src;
}

function percentile(sorted: number[], p: number): number {
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)];
}

for (const id of ['10', '12']) {
  const version = roomVersion(id) as RoomVersion;
  const t0 = performance.now();
  const { stateSets, events, conflicting } = buildRoom(version);
  const buildMs = performance.now() - t0;
  const times: number[] = [];
  let resolved: StateMap = new Map();
  let fetched = 0;
  let calls = 0;
  for (let r = 0; r < RUNS + 1; r++) {
    const src = source(events);
    const start = performance.now();
    resolved = await resolveState({ version, stateSets, events: src });
    const ms = performance.now() - start;
    if (r > 0) times.push(ms); // the first run warms up the JIT
    fetched = src.fetched;
    calls = src.calls;
  }
  times.sort((x, y) => x - y);
  const median = percentile(times, 50);
  const p95 = percentile(times, 95);
  const topic = resolved.get(stateKey('m.room.topic', ''));
  console.log(
    `room v${id} (${version.stateRes}): ${MEMBERS} members, ${events.size} events, ${conflicting} conflicting state events in 2 state sets; ` +
      `built in ${buildMs.toFixed(0)} ms; resolve median ${median.toFixed(1)} ms, p95 ${p95.toFixed(1)} ms over ${RUNS} runs; ` +
      `${fetched} events fetched per run in ${calls} source calls; resolved ${resolved.size} entries, topic ${topic}`,
  );
  console.log(
    JSON.stringify({
      bench: 'state-res',
      room_version: id,
      algorithm: version.stateRes,
      members: MEMBERS,
      conflicting_events: conflicting,
      state_sets: stateSets.length,
      runs: RUNS,
      median_ms: Number(median.toFixed(2)),
      p95_ms: Number(p95.toFixed(2)),
      resolved_entries: resolved.size,
      events_fetched: fetched,
      source_calls: calls,
    }),
  );
}
