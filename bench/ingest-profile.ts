/**
 * In-process profile of the federation receive path (server B of bench/federation-sync.ts, without libp2p, HTTP or
 * the other server's CPU): A (in memory) and B (LevelKv in a temp dir, as `hearth serve`) share a room over the
 * in-memory test network; then messages signed by A, each on the previous one, are handed to B as gossip
 * (`federation.handleGossip`), one at a time. Prints B's CPU ms per received message (process.cpuUsage: main thread
 * plus LevelDB's threads; A is idle meanwhile) and wall ms per message.
 *
 * --cpu-prof FILE writes a V8 CPU profile of the measured messages only (node:inspector), not of the setup.
 *
 *   node --import tsx/esm bench/ingest-profile.ts [--messages 2000] [--warmup 200] [--cpu-prof FILE]
 * Under tsx every closure pays esbuild's `__name` helper; for profiles that match production bundle it first:
 *   npx esbuild bench/ingest-profile.ts --bundle --platform=node --format=esm --external:classic-level \
 *     --outfile=dist/ingest-profile.mjs "--banner:js=import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);"
 */
import '../src/node/polyfills.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildEvent } from '../src/core/build-event.js';
import { roomVersion } from '../src/core/room-versions.js';
import { openLevelKv } from '../src/storage/level-kv.js';
import type { RoomRecord } from '../src/storage/records.js';
import { HOMESERVER_STORES } from '../src/storage/schema.js';
import { newFederation } from '../test/helpers/federation.js';
import { call } from '../test/helpers/homeserver.js';
import { enc, newPublicRoom } from '../test/helpers/rooms.js';
import { newUser } from '../test/helpers/users.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '2000' },
    warmup: { type: 'string', default: '200' },
    'cpu-prof': { type: 'string' },
  },
});
const messages = Number(values.messages);
const warmup = Number(values.warmup);

const dir = await mkdtemp(join(tmpdir(), 'hearth-ingest-profile-'));
const fed = await newFederation(1);
const [a] = fed.servers;
const b = await fed.add(await openLevelKv({ name: join(dir, 'db'), stores: HOMESERVER_STORES }));
try {
  const alice = await newUser(a, 'alice');
  const bob = await newUser(b, 'bob');
  const room = await newPublicRoom(a, alice);
  const joined = await call(b, 'POST', `/_matrix/client/v3/join/${enc(room)}?via=${enc(a.serverName)}`, {}, bob.accessToken);
  if (joined.status !== 200) throw new Error(`bob could not join: ${JSON.stringify(joined.body)}`);
  await fed.settle();

  // B's head: messages from alice go on it, each on the one before.
  const head = await b.services.ctx.kv.read(async (tx) => {
    const ext = (await tx.range('forward_extremities', { prefix: [room] })).map(([k]) => String(k[1]));
    const rec = (await tx.get<RoomRecord>('rooms', [room]))!;
    const state = new Map<string, string>();
    for (const [k, id] of await tx.range<string>('current_state', { prefix: [room] })) state.set(`${k[1]}|${k[2]}`, id);
    return { ext, rec, state };
  });
  const version = roomVersion(head.rec.version)!;
  const auth = [head.state.get('m.room.power_levels|')!, head.state.get(`m.room.member|${alice.userId}`)!];
  let prev = head.ext;
  let depth = head.rec.maxDepth + 1;
  const events = [];
  for (let i = 0; i < warmup + messages; i++) {
    const ev = await buildEvent(
      {
        room_id: room,
        sender: alice.userId,
        type: 'm.room.message',
        content: { msgtype: 'm.text', body: `message ${i}` },
        prev_events: prev,
        auth_events: auth,
        depth: depth++,
        origin_server_ts: Date.now(),
      },
      version,
      a.serverName,
      a.identity.key,
    );
    prev = [ev.eventId];
    // As it arrives: a fresh object parsed from the wire.
    events.push(JSON.stringify(ev.json));
  }

  const receive = async (json: string) => {
    await b.federation.handleGossip(room, a.serverName, { origin: a.serverName, pdus: [JSON.parse(json)] });
  };
  for (const json of events.slice(0, warmup)) await receive(json);

  let session: Session | undefined;
  if (values['cpu-prof']) {
    session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
  }
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (const json of events.slice(warmup)) await receive(json);
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  if (session) {
    const { profile } = await session.post('Profiler.stop');
    await writeFile(values['cpu-prof']!, JSON.stringify(profile));
    session.disconnect();
  }

  const last = await b.services.ctx.kv.read((tx) => tx.range<boolean>('forward_extremities', { prefix: [room] }));
  if (last.length !== 1 || String(last[0][0][1]) !== prev[0]) throw new Error('B did not accept every message');
  const ms = (x: number) => (x / messages).toFixed(3);
  console.log(`${messages} received messages: B CPU ${ms((cpu.user + cpu.system) / 1000)} ms/msg (user ${ms(cpu.user / 1000)}), wall ${ms(wall)} ms/msg`);
} finally {
  await fed.stop();
  await b.services.ctx.kv.close();
  await rm(dir, { recursive: true, force: true });
}
