/**
 * `npm run bench:federation` — federation over libp2p (issue 5's benchmark). Not part of the tests.
 *
 * Part 1: raw libp2p request round trips on the link, one long-lived stream per peer.
 *   raw-tcp     bench process ↔ a `hearth serve` process over TCP (the Node↔Node link)
 *   raw-ws      the same over WebSockets (the link browsers use to reach a Node peer)
 *   raw-inproc  two nodes in the bench process over TCP (no second process: isolates scheduling between processes)
 * Part 2: Hearth's send → remote /sync arrival, Node↔Node over TCP.
 *   sync-tcp    two `hearth serve` processes (B bootstrapped to A); alice on A sends, one message at a time; bob's
 *               /sync long poll on B returns it. Measured from before the PUT /send to A until B's /sync response
 *               holding the event is parsed (both ends in the bench process, one clock). Reported with the raw-tcp
 *               round trip of the same run (a Node process ↔ a `hearth serve` process over loopback TCP: the same
 *               kind of link; the two serve processes' own link cannot be timed from outside) and the ratio
 *               (target ≤ 3×). Run raw-tcp with it (the default) for the ratio.
 * Still to come: a remote join of a large room, and a 20-peer mesh.
 *
 * Options: --only raw-tcp,raw-ws,raw-inproc,sync-tcp   --rounds N (default 2000)   --warmup N (default 200)
 *          --fresh N (fresh-connection first requests, default 20)   --sync-rounds N (default 300)
 *          --cpu-prof-dir DIR (sync-tcp: V8 CPU profiles of both serve processes)
 *          --trace (sync-tcp: time of each stage of the event's way, from the peers' HEARTH_FEDERATION_TRACE marks)
 * Prints a table, then one JSON line.
 */
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import type { Stats } from './http-workload.js';
import type { RoundTrips } from './federation-raw.js';
import { benchNode, measureRoundTrips, startP2pServe } from './federation-raw.js';
import { measureSendToSync } from './federation-sync.js';

const { values: opts } = parseArgs({
  options: {
    only: { type: 'string' },
    rounds: { type: 'string', default: '2000' },
    warmup: { type: 'string', default: '200' },
    fresh: { type: 'string', default: '20' },
    'sync-rounds': { type: 'string', default: '300' },
    trace: { type: 'boolean', default: false },
    'cpu-prof-dir': { type: 'string' },
  },
});
const PARTS = ['raw-tcp', 'raw-ws', 'raw-inproc', 'sync-tcp'] as const;
type Part = (typeof PARTS)[number];
const only = new Set((opts.only ?? PARTS.join(',')).split(',').map((s) => s.trim()));
for (const p of only) {
  if (!PARTS.includes(p as Part)) {
    console.error(`--only takes ${PARTS.join(', ')}; not '${p}'`);
    process.exit(2);
  }
}
const ROUNDS = Number(opts.rounds);
const WARMUP = Number(opts.warmup);
const FRESH = Number(opts.fresh);
const SYNC_ROUNDS = Number(opts['sync-rounds']);

const rows: Array<{ name: string; value: string; target?: string; pass?: boolean }> = [];
const json: Record<string, unknown> = { rounds: ROUNDS };
let failed = false;

const ms = (x: number) => `${x.toFixed(3)} ms`;
const pct = (s: Stats) => `p50 ${ms(s.p50)}, p95 ${ms(s.p95)} (n=${s.n})`;

function report(key: string, label: string, r: RoundTrips): void {
  rows.push({ name: `${label}: request round trip`, value: pct(r.sequential) });
  rows.push({ name: `${label}: dial + first request`, value: pct(r.firstRequest) });
  json[key] = { p50_ms: r.sequential.p50, p95_ms: r.sequential.p95, p99_ms: r.sequential.p99, first_request_p50_ms: r.firstRequest.p50 };
}

async function measure(name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    failed = true;
    rows.push({ name, value: `ERROR: ${(e as Error).message.split('\n')[0]}` });
    console.error(e);
  }
}

if (only.has('raw-tcp') || only.has('raw-ws')) {
  const served = await startP2pServe();
  const near = await benchNode();
  try {
    const tcp = served.multiaddrs.find((a) => /\/tcp\/\d+\/p2p\//.test(a) && !a.includes('/ws'))!;
    const ws = served.multiaddrs.find((a) => a.includes('/ws/'))!;
    if (only.has('raw-tcp')) await measure('raw TCP', async () => report('raw_tcp', 'TCP Node↔Node (2 processes)', await measureRoundTrips(near, served.serverName, tcp, ROUNDS, WARMUP, FRESH)));
    if (only.has('raw-ws')) {
      await measure('raw WebSockets', async () => report('raw_ws', 'WebSockets Node↔Node (2 processes)', await measureRoundTrips(near, served.serverName, ws, ROUNDS, WARMUP, FRESH)));
    }
  } finally {
    await near.stop();
    const code = await served.stop();
    if (code !== 0) {
      failed = true;
      rows.push({ name: 'hearth serve exit on SIGTERM', value: `exit code ${code}` });
    }
  }
}

if (only.has('raw-inproc')) {
  const [a, b] = await Promise.all([benchNode(), benchNode()]);
  try {
    const addr = b.multiaddrs().find((x) => /\/tcp\/\d+\/p2p\//.test(x) && !x.includes('/ws'))!;
    await measure('raw in-process', async () => report('raw_inproc', 'TCP, two nodes in one process', await measureRoundTrips(a, b.transport.serverName, addr, ROUNDS, WARMUP, FRESH)));
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
}

if (only.has('sync-tcp')) {
  await measure('send → remote /sync', async () => {
    const r = await measureSendToSync(SYNC_ROUNDS, Math.min(20, SYNC_ROUNDS), { trace: opts.trace, cpuProfDir: opts['cpu-prof-dir'] });
    rows.push({ name: 'TCP Node↔Node: send on A → /sync on B', value: pct(r.arrival) });
    rows.push({ name: '  of which PUT /send on A answered', value: pct(r.sendAnswered) });
    const cpu = (x?: number) => (x === undefined ? 'n/a' : `${x.toFixed(2)} ms`);
    rows.push({ name: '  server CPU ms/op (A sends, B receives)', value: `A ${cpu(r.cpuMsPerOp.a)}, B ${cpu(r.cpuMsPerOp.b)}` });
    for (const s of r.stages ?? []) rows.push({ name: `  stage: ${s.stage}`, value: `since PUT ${pct(s.sinceSend)}` });
    if (r.stages) json.sync_stages = Object.fromEntries(r.stages.map((s) => [s.stage, { p50_ms: s.sinceSend.p50, p95_ms: s.sinceSend.p95 }]));
    const sync: Record<string, unknown> = {
      p50_ms: r.arrival.p50,
      p95_ms: r.arrival.p95,
      p99_ms: r.arrival.p99,
      send_p50_ms: r.sendAnswered.p50,
      cpu_ms_per_op_a: r.cpuMsPerOp.a,
      cpu_ms_per_op_b: r.cpuMsPerOp.b,
    };
    const raw = json.raw_tcp as { p50_ms: number; p95_ms: number } | undefined;
    if (raw) {
      const ratio50 = r.arrival.p50 / raw.p50_ms;
      const ratio95 = r.arrival.p95 / raw.p95_ms;
      const pass = ratio50 <= 3;
      if (!pass) failed = true;
      rows.push({ name: 'ratio to the raw TCP round trip (target p50 ≤ 3×)', value: `p50 ${ratio50.toFixed(1)}×, p95 ${ratio95.toFixed(1)}× ${pass ? 'PASS' : 'FAIL'}` });
      sync.ratio_p50 = ratio50;
      sync.ratio_p95 = ratio95;
    }
    json.sync_tcp = sync;
  });
}

const load = loadavg().map((x) => x.toFixed(2)).join(' ');
console.log(`\nmachine: ${cpus().length} CPUs, load average ${load} (1/5/15 min) at the end of the run`);
const w0 = Math.max(6, ...rows.map((r) => r.name.length));
const w1 = Math.max(6, ...rows.map((r) => r.value.length));
console.log('');
console.log(`${'metric'.padEnd(w0)} | ${'result'.padEnd(w1)}`);
console.log(`${'-'.repeat(w0)}-+-${'-'.repeat(w1)}`);
for (const r of rows) console.log(`${r.name.padEnd(w0)} | ${r.value.padEnd(w1)}`);
console.log('');
json.load_average = loadavg();
console.log(JSON.stringify(json));
process.exit(failed ? 1 : 0);
