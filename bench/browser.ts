/**
 * `npm run bench:browser` — the in-page homeserver in Chromium, through its service worker (issue 4's benchmark; not
 * part of the tests). Builds the app (or takes `--app DIR`), serves it with `hearth start`, drives headless Chromium
 * with playwright-core; every workload runs inside the page (test/browser/helpers/bench-page.ts).
 *
 *   cold start       navigation → worker installed and controlling → registered → in a new room (fresh profile)
 *   warm start       reload → initial /sync with the room's latest 20 events (the client's first screen), with the
 *                    worker still running, and after it was stopped (what a return after >30 s idle looks like)
 *   send             sequential PUT /send: p50/p95 latency (acknowledged = durable in IndexedDB) and msg/s
 *   arrival          send → the event in a waiting /sync long poll, p50/p95
 *   initial sync     of a room with 1,000 events (timeline limit 10 and 100)
 *   JS shipped       gzipped JS of the page and of the worker
 *   storage          raw IndexedDB write rate through the storage contract in the same page (1 put per durable
 *                    transaction, and 100 per transaction) and persisted events/s as a ratio of it
 *
 * Options: --app DIR (a built app; default: build into dist/bench/app)  --sends N (default 300)  --arrivals N (100)
 *   --cpu-prof FILE  a CPU profile of the service worker during the sequential sends and the arrivals (DevTools
 *                    Profiler domain on the worker's target), written to FILE (open it in DevTools); the heaviest
 *                    functions by self time are printed too (build with HEARTH_SW_MINIFY=0 for readable names)
 *   --quick          one cold start, one warm start of each kind, a 100-event room instead of 1,000 (for comparing
 *                    changes; the 1,000-event rows are then not comparable)
 *   --plain-only     only the run without DevTools (one line and its JSON)
 *   --plain-arg=X    an extra Chromium switch for the run without DevTools (repeatable)
 *
 * Storage: Playwright's contexts (`browser.newContext()`) are off the record, so in every row measured through
 * DevTools IndexedDB lives in memory and a 'strict' commit never reaches the disk. The run without DevTools uses a
 * real profile directory: its rows (and its raw IndexedDB figures) pay the disk, as a user's browser does.
 * Prints a table against the targets of issue 4, then one JSON line. First, the send, GET /versions and arrival
 * workloads also run in a Chromium with no DevTools connection at all (the page reports to a local HTTP endpoint, as
 * test/browser/lifetime.test.ts does): DevTools' network instrumentation costs CPU on every request, and a user's
 * browser has none attached. DevTools keeps the worker alive while
 * attached, so "stopped" cases stop it explicitly (ServiceWorker.stopAllWorkers), as the browser would when idle.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import type { Browser, Page } from 'playwright-core';
import type { Account } from '../test/browser/helpers/bench-page.js';
import { CHROMIUM_ARGS, CHROMIUM_PATH, ensureControlled, launchChromium, startApp, stopServiceWorkers, swStats, useHarness, REPO_ROOT } from '../test/browser/helpers/browser.js';
import { buildHarness } from '../test/browser/helpers/build-harness.js';

const { values: opts } = parseArgs({
  options: {
    app: { type: 'string' },
    sends: { type: 'string', default: '300' },
    arrivals: { type: 'string', default: '100' },
    'cpu-prof': { type: 'string' },
    quick: { type: 'boolean', default: false },
    'plain-arg': { type: 'string', multiple: true, default: [] },
    'plain-only': { type: 'boolean', default: false },
  },
});

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
const median = (xs: number[]) => pct(xs, 50);
const r1 = (x: number) => Math.round(x * 10) / 10;

function gzippedJs(dir: string): { page: number; worker: number } {
  let page = 0;
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.js') && p !== join(dir, 'sw.js')) page += gzipSync(readFileSync(p), { level: 9 }).length;
    }
  };
  walk(dir);
  return { page, worker: gzipSync(readFileSync(join(dir, 'sw.js')), { level: 9 }).length };
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/**
 * Profiles the app's service worker through the browser's DevTools session: attaches to the worker's target and
 * speaks the Profiler domain to it (relayed with Target.sendMessageToTarget, as playwright's CDPSession has no
 * child sessions). `stop()` returns the profile.
 */
async function profileServiceWorker(browser: Browser, origin: string): Promise<{ stop(): Promise<CpuProfile> }> {
  const session = await browser.newBrowserCDPSession();
  const { targetInfos } = await session.send('Target.getTargets');
  const sw = targetInfos.find((t) => t.type === 'service_worker' && t.url.startsWith(origin));
  if (!sw) throw new Error('no service worker target to profile');
  const { sessionId } = await session.send('Target.attachToTarget', { targetId: sw.targetId, flatten: false });
  let nextId = 0;
  const waiting = new Map<number, { resolve: (r: any) => void; reject: (e: Error) => void }>();
  session.on('Target.receivedMessageFromTarget', (e) => {
    if (e.sessionId !== sessionId) return;
    const msg = JSON.parse(e.message) as { id?: number; result?: unknown; error?: { message: string } };
    const w = msg.id === undefined ? undefined : waiting.get(msg.id);
    if (!w) return;
    waiting.delete(msg.id!);
    if (msg.error) w.reject(new Error(msg.error.message));
    else w.resolve(msg.result);
  });
  const send = (method: string, params: object = {}): Promise<any> =>
    new Promise((resolve, reject) => {
      const id = ++nextId;
      waiting.set(id, { resolve, reject });
      session.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) }).catch(reject);
    });
  await send('Profiler.enable');
  await send('Profiler.setSamplingInterval', { interval: 200 });
  await send('Profiler.start');
  return {
    async stop() {
      const { profile } = (await send('Profiler.stop')) as { profile: CpuProfile };
      await session.detach().catch(() => undefined);
      return profile;
    },
  };
}

/**
 * CPU time (user + system, ms) of Chromium so far: every process below this one whose name says chrom, with their
 * children (Linux /proc; undefined elsewhere). Steadier than latencies on a busy machine.
 */
function chromiumCpuMs(): number | undefined {
  const byKind = chromiumCpuByKind();
  return byKind && [...byKind.values()].reduce((a, b) => a + b, 0);
}

/** Chromium's CPU time (ms) by process kind: 'browser', 'renderer', 'utility:<service>', 'gpu-process', …. */
function chromiumCpuByKind(): Map<string, number> | undefined {
  try {
    const children = new Map<number, number[]>();
    const cpu = new Map<number, number>();
    const names = new Map<number, string>();
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      } catch {
        continue; // exited meanwhile
      }
      const close = stat.lastIndexOf(')');
      const fields = stat.slice(close + 2).split(' ');
      const pid = Number(d);
      const ppid = Number(fields[1]);
      names.set(pid, stat.slice(stat.indexOf('(') + 1, close));
      // utime + stime, in clock ticks (100 per second on Linux)
      cpu.set(pid, (Number(fields[11]) + Number(fields[12])) * 10);
      children.set(ppid, [...(children.get(ppid) ?? []), pid]);
    }
    const out = new Map<string, number>();
    const walk = (pid: number): void => {
      let kind = 'browser';
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        const type = /--type=([\w-]+)/.exec(cmd)?.[1];
        const sub = /--utility-sub-type=([\w.]+)/.exec(cmd)?.[1];
        if (type) kind = sub ? `${type}:${sub.split('.').slice(-2).join('.')}` : type;
      } catch {
        // exited meanwhile
      }
      out.set(kind, (out.get(kind) ?? 0) + (cpu.get(pid) ?? 0));
      for (const c of children.get(pid) ?? []) walk(c);
    };
    for (const pid of children.get(process.pid) ?? []) if (/chrom/i.test(names.get(pid) ?? '')) walk(pid);
    return out;
  } catch {
    return undefined;
  }
}

/** The functions with the most self time, and the idle share, as printable lines. */
function summariseProfile(profile: CpuProfile, top = 25): string[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    total += dt;
    const f = byId.get(id)!.callFrame;
    const file = f.url.split('/').pop() ?? '';
    const name = `${f.functionName || '(anonymous)'} ${file}:${f.lineNumber + 1}`;
    self.set(name, (self.get(name) ?? 0) + dt);
  });
  const idle = [...self].filter(([n]) => n.startsWith('(idle)')).reduce((a, [, v]) => a + v, 0);
  const lines = [`worker profile: ${r1(total / 1000)} ms sampled, ${r1(((total - idle) / total) * 100)}% busy; self time:`];
  for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    lines.push(`  ${(us / 1000).toFixed(1).padStart(8)} ms  ${r1((us / total) * 100).toString().padStart(5)}%  ${name}`);
  }
  return lines;
}

interface PlainRun {
  sendP50Ms: number;
  sendP95Ms: number;
  msgPerSec: number;
  /** Mean ms inside the homeserver per send (the worker's own count). */
  sendInWorkerMeanMs: number;
  /** `document.visibilityState` (and focus) of the page in that Chromium. */
  pageVisibility: string;
  /** Raw IndexedDB write transactions (1 put, durable) per second in that Chromium's on-disk profile. */
  rawSingleTxPerSec: number;
  /** The same with 8 puts per transaction (what one send writes). */
  rawEightPutTxPerSec: number;
  versionsP50Ms: number;
  /** A message to the worker answered on a reply port (no fetch): the floor of any page ↔ worker round trip. */
  messageP50Ms: number;
  arrivalP50Ms: number;
  arrivalP95Ms: number;
  /** Chromium CPU (all processes) per operation. */
  sendCpuMs?: number;
  versionsCpuMs?: number;
  messageCpuMs?: number;
  arrivalCpuMs?: number;
  /** The same sends and arrivals with the client on the message transport (src/browser/sw-fetch.ts). */
  byMessage: {
    sendP50Ms: number;
    sendP95Ms: number;
    msgPerSec: number;
    sendInWorkerMeanMs: number;
    arrivalP50Ms: number;
    arrivalP95Ms: number;
    sendCpuMs?: number;
    arrivalCpuMs?: number;
  };
}

/**
 * The send, /versions and arrival workloads in a Chromium started without any DevTools connection: a copy of the app
 * with a page that runs them and reports each phase's end to a local endpoint, which reads Chromium's CPU time
 * before answering.
 */
async function runWithoutDevtools(appDir: string, harness: string, sends: number, arrivals: number, extraArgs: readonly string[]): Promise<PlainRun> {
  const dir = mkdtempSync(join(tmpdir(), 'hearth-bench-plain-'));
  const copy = join(dir, 'app');
  cpSync(appDir, copy, { recursive: true });
  copyFileSync(harness, join(copy, 'bench-harness.js'));
  const marks = new Map<string, number | undefined>();
  let finish!: (r: { error?: string; [k: string]: unknown }) => void;
  const finished = new Promise<{ error?: string; [k: string]: unknown }>((r) => (finish = r));
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (x: string) => (body += x));
    req.on('end', () => {
      try {
        const msg = JSON.parse(body) as { mark?: string; done?: Record<string, unknown> & { error?: string } };
        if (msg.mark) marks.set(msg.mark, chromiumCpuMs());
        if (msg.done) finish(msg.done);
      } catch {
        // not ours
      }
      res.writeHead(204, { 'access-control-allow-origin': '*' }).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const reportUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  writeFileSync(
    join(copy, 'bench-plain.js'),
    `
const post = (data) => fetch(${JSON.stringify(reportUrl)}, { method: 'POST', body: JSON.stringify(data) });
// The worker's own count of requests served and ms spent inside the homeserver (sw/homeserver-host.ts stats()).
const stats = () => new Promise((resolve) => {
  const ch = new MessageChannel();
  ch.port1.onmessage = (e) => resolve(e.data);
  navigator.serviceWorker.controller.postMessage({ type: 'hearth:stats' }, [ch.port2]);
});
const inWorker = (a, b) => (b.servingMs - a.servingMs) / (b.served - a.served);
(async () => {
  try {
    const b = hearthTest.bench;
    await hearthTest.ensureHomeserver();
    const a = await b.registerAndCreateRoom('plain');
    await b.sequentialSends(a, 20);
    await post({ mark: 'send0' });
    const st0 = await stats();
    const seq = await b.sequentialSends(a, ${sends});
    const st1 = await stats();
    await post({ mark: 'send1' });
    const versions = [];
    for (let i = 0; i < 100; i++) {
      const t = performance.now();
      await (await fetch('/_matrix/client/versions')).text();
      versions.push(performance.now() - t);
    }
    await post({ mark: 'versions1' });
    // The same round trip as a message to the worker with a reply port (hearth:stats), for comparison.
    const messages = [];
    for (let i = 0; i < 100; i++) {
      const t = performance.now();
      await new Promise((resolve) => {
        const ch = new MessageChannel();
        ch.port1.onmessage = resolve;
        navigator.serviceWorker.controller.postMessage({ type: 'hearth:stats' }, [ch.port2]);
      });
      messages.push(performance.now() - t);
    }
    await post({ mark: 'messages1' });
    const arrivals = await b.syncArrival(a, ${arrivals});
    await post({ mark: 'arrivals1' });
    b.useTransport('message');
    const mt0 = await stats();
    const mseq = await b.sequentialSends(a, ${sends});
    const mt1 = await stats();
    await post({ mark: 'msend1' });
    const marrivals = await b.syncArrival(a, ${arrivals});
    await post({ mark: 'marrivals1' });
    b.useTransport('fetch');
    // Raw IndexedDB in this profile (on disk, unlike Playwright's contexts: see runWithoutDevtools).
    const { openIdbKv, measureRawBatchedWrites } = hearthTest.probe;
    const probeKv = await openIdbKv({ name: 'hearth-bench-probe', stores: [] });
    const rawSingle = (await measureRawBatchedWrites(probeKv, { batches: 200, batchSize: 1 })).transactionsPerSecond;
    // A send's shape: one durable transaction of 8 puts.
    const rawEight = (await measureRawBatchedWrites(probeKv, { batches: 200, batchSize: 8 })).transactionsPerSecond;
    await probeKv.close();
    await post({ done: { seq, versions, messages, arrivals, mseq, marrivals, sendInWorker: inWorker(st0, st1), msendInWorker: inWorker(mt0, mt1), visibility: document.visibilityState + (document.hasFocus() ? ', focused' : ', not focused'), rawSingle, rawEight } });
  } catch (e) {
    await post({ done: { error: String((e && e.stack) || e) } });
  }
})();
`,
  );
  writeFileSync(
    join(copy, 'bench-plain.html'),
    '<!doctype html><meta charset="utf-8"><title>bench</title><script src="/bench-harness.js"></script><script src="/bench-plain.js"></script>',
  );
  const app = await startApp({ appDir: copy });
  const profile = join(dir, 'profile');
  const chromium = spawn(CHROMIUM_PATH, ['--headless', ...CHROMIUM_ARGS, ...extraArgs, `--user-data-dir=${profile}`, `${app.url}/bench-plain.html`], {
    stdio: 'ignore',
  });
  try {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = (await Promise.race([
      finished,
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('the plain Chromium run did not finish')), 300_000))),
    ])) as {
      error?: string;
      seq: { latencies: number[]; totalMs: number };
      versions: number[];
      messages: number[];
      arrivals: number[];
      mseq: { latencies: number[]; totalMs: number };
      marrivals: number[];
      sendInWorker: number;
      msendInWorker: number;
      visibility: string;
      rawSingle: number;
      rawEight: number;
    };
    clearTimeout(timer);
    if (r.error) throw new Error(`plain Chromium run: ${r.error}`);
    const per = (a: string, b: string, n: number) => {
      const x = marks.get(a);
      const y = marks.get(b);
      return x === undefined || y === undefined ? undefined : Math.round(((y - x) / n) * 100) / 100;
    };
    return {
      sendP50Ms: r1(median(r.seq.latencies)),
      sendP95Ms: r1(pct(r.seq.latencies, 95)),
      msgPerSec: Math.round((sends / r.seq.totalMs) * 1000),
      sendInWorkerMeanMs: r1(r.sendInWorker),
      pageVisibility: r.visibility,
      rawSingleTxPerSec: Math.round(r.rawSingle),
      rawEightPutTxPerSec: Math.round(r.rawEight),
      versionsP50Ms: r1(median(r.versions)),
      messageP50Ms: r1(median(r.messages)),
      arrivalP50Ms: r1(median(r.arrivals)),
      arrivalP95Ms: r1(pct(r.arrivals, 95)),
      sendCpuMs: per('send0', 'send1', sends),
      versionsCpuMs: per('send1', 'versions1', 100),
      messageCpuMs: per('versions1', 'messages1', 100),
      arrivalCpuMs: per('messages1', 'arrivals1', arrivals),
      byMessage: {
        sendP50Ms: r1(median(r.mseq.latencies)),
        sendP95Ms: r1(pct(r.mseq.latencies, 95)),
        msgPerSec: Math.round((sends / r.mseq.totalMs) * 1000),
        sendInWorkerMeanMs: r1(r.msendInWorker),
        arrivalP50Ms: r1(median(r.marrivals)),
        arrivalP95Ms: r1(pct(r.marrivals, 95)),
        sendCpuMs: per('arrivals1', 'msend1', sends),
        arrivalCpuMs: per('msend1', 'marrivals1', arrivals),
      },
    };
  } finally {
    if (chromium.exitCode === null && chromium.signalCode === null) {
      const gone = new Promise((r) => chromium.once('exit', r));
      chromium.kill('SIGTERM');
      const t = setTimeout(() => chromium.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(t);
    }
    await new Promise((r) => server.close(r));
    await app.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const appDir = opts.app ? resolve(opts.app) : join(REPO_ROOT, 'dist/bench/app');
  if (!opts.app) {
    const b = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts/build.mjs'), '--out', appDir, '--quiet'], {
      stdio: 'inherit',
      env: { ...process.env, NODE_ENV: 'production' },
    });
    if (b.status !== 0) throw new Error('build failed');
  }
  const harness = join(REPO_ROOT, 'dist/bench/harness.js');
  await buildHarness(harness);
  useHarness(harness);

  const plain = await runWithoutDevtools(appDir, harness, Number(opts.sends), Number(opts.arrivals), opts['plain-arg'] ?? []);
  if (opts['plain-only']) {
    const pm = plain.byMessage;
    console.log(
      `without DevTools (load ${loadavg().map(r1).join(' ')}; page ${plain.pageVisibility}): fetch send p50 ${plain.sendP50Ms} ms, ${plain.msgPerSec} msg/s, in worker ${plain.sendInWorkerMeanMs} ms, ` +
        `CPU ${plain.sendCpuMs} ms; raw IndexedDB ${plain.rawSingleTxPerSec} tx/s (8 puts: ${plain.rawEightPutTxPerSec}); message send p50 ${pm.sendP50Ms} ms, ${pm.msgPerSec} msg/s, in worker ${pm.sendInWorkerMeanMs} ms, CPU ${pm.sendCpuMs} ms`,
    );
    console.log(JSON.stringify(plain));
    return;
  }
  const app = await startApp({ appDir });
  const browser = await launchChromium();
  try {
    const ensure = (page: Page) => ensureControlled(page);

    // ---- cold start (three fresh profiles)
    const cold: number[] = [];
    let firstStartup: unknown;
    const quick = opts.quick;
    for (let i = 0; i < (quick ? 1 : 3); i++) {
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      await page.goto(app.url);
      await ensure(page);
      const ms = await page.evaluate(async (u) => {
        await globalThis.hearthTest.bench.registerAndCreateRoom(u);
        return performance.now();
      }, `cold${i}`);
      cold.push(ms);
      if (i === 0) firstStartup = (await swStats(page)).startup;
      await ctx.close();
    }

    // ---- one profile for the rest
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(app.url);
    await ensure(page);
    const a: Account = await page.evaluate(() => globalThis.hearthTest.bench.registerAndCreateRoom('bench'));

    await page.evaluate((acc) => globalThis.hearthTest.bench.sequentialSends(acc, 20), a); // warm-up
    const sends = Number(opts.sends);
    const profiler = opts['cpu-prof'] ? await profileServiceWorker(browser, app.url) : undefined;
    const s0 = await swStats(page);
    const k0 = chromiumCpuByKind();
    const c0 = chromiumCpuMs();
    const seq = await page.evaluate(([acc, n]) => globalThis.hearthTest.bench.sequentialSends(acc, n), [a, sends] as const);
    const c1 = chromiumCpuMs();
    const k1 = chromiumCpuByKind();
    const s1 = await swStats(page);
    // Time inside the homeserver per send; the rest of the latency is the browser's dispatch to and from the worker.
    const inWorkerPerSend = (s1.servingMs - s0.servingMs) / (s1.served - s0.served);
    const v0 = await swStats(page);
    const vc0 = chromiumCpuByKind();
    const versions = await page.evaluate(async () => {
      const xs: number[] = [];
      for (let i = 0; i < 100; i++) {
        const t = performance.now();
        await (await fetch('/_matrix/client/versions')).text();
        xs.push(performance.now() - t);
      }
      return xs;
    });
    const vc1 = chromiumCpuByKind();
    const v1 = await swStats(page);
    const versionsInWorker = (v1.servingMs - v0.servingMs) / (v1.served - v0.served);
    const c2 = chromiumCpuMs();
    const arrivals = await page.evaluate(([acc, n]) => globalThis.hearthTest.bench.syncArrival(acc, n), [a, Number(opts.arrivals)] as const);
    const c3 = chromiumCpuMs();
    const cpuPer = (from: number | undefined, to: number | undefined, n: number) =>
      from === undefined || to === undefined ? undefined : Math.round(((to - from) / n) * 100) / 100;
    // The same with the client on the message transport (src/browser/sw-fetch.ts).
    const mseq = await page.evaluate(([acc, n]) => {
      globalThis.hearthTest.bench.useTransport('message');
      return globalThis.hearthTest.bench.sequentialSends(acc, n);
    }, [a, sends] as const);
    const marrivals = await page.evaluate(([acc, n]) => globalThis.hearthTest.bench.syncArrival(acc, n), [a, Number(opts.arrivals)] as const);
    await page.evaluate(() => globalThis.hearthTest.bench.useTransport('fetch'));
    const profileLines: string[] = [];
    if (profiler) {
      const profile = await profiler.stop();
      writeFileSync(opts['cpu-prof']!, JSON.stringify(profile));
      profileLines.push(...summariseProfile(profile), `  (profile written to ${opts['cpu-prof']})`);
    }

    // ---- initial sync of a 1,000-event room
    const big: Account = await page.evaluate(() => globalThis.hearthTest.bench.registerAndCreateRoom('big'));
    // Filled by 8 concurrent senders over the message transport (the app's): their writes share commits.
    const fillCount = quick ? 100 : 1000;
    const fillMs = await page.evaluate(async ([acc, n]) => {
      globalThis.hearthTest.bench.useTransport('message');
      try {
        return await globalThis.hearthTest.bench.fillRoom(acc, n);
      } finally {
        globalThis.hearthTest.bench.useTransport('fetch');
      }
    }, [big, fillCount] as const);
    const initial10: number[] = [];
    const initial100: number[] = [];
    for (let i = 0; i < (quick ? 1 : 5); i++) {
      initial10.push((await page.evaluate((acc) => globalThis.hearthTest.bench.initialSync(acc, 10), big)).ms);
      initial100.push((await page.evaluate((acc) => globalThis.hearthTest.bench.initialSync(acc, 100), big)).ms);
    }

    // ---- warm start: reload → first screen's data, worker running / stopped
    const warmRunning: number[] = [];
    const warmStopped: number[] = [];
    let stoppedStartup: unknown;
    for (let i = 0; i < (quick ? 1 : 5); i++) {
      for (const stopped of [false, true]) {
        if (stopped) await stopServiceWorkers(page);
        await page.reload();
        await ensure(page);
        const r = await page.evaluate((acc) => globalThis.hearthTest.bench.timelineAfterReload(acc), a);
        if (r.events === 0) throw new Error('no timeline after reload');
        (stopped ? warmStopped : warmRunning).push(r.sinceNavigation);
        if (stopped && i === 0) stoppedStartup = (await swStats(page)).startup;
      }
    }

    // ---- raw storage in the same page (a scratch database)
    const raw = await page.evaluate(async () => {
      const { openIdbKv, measureRawBatchedWrites, measureConcurrentWrites } = globalThis.hearthTest.probe;
      const kv = await openIdbKv({ name: 'hearth-bench-probe', stores: [] });
      const single = await measureRawBatchedWrites(kv, { batches: 200, batchSize: 1 });
      const batched = await measureRawBatchedWrites(kv, { batches: 40, batchSize: 100 });
      const concurrent = await measureConcurrentWrites(kv, { writers: 8, transactionsPerWriter: 50 });
      await kv.close();
      return { single, batched, concurrent };
    });
    const js = gzippedJs(appDir);

    const msgPerSec = (sends / seq.totalMs) * 1000;
    const result = {
      coldStartMs: r1(median(cold)),
      coldStartAllMs: cold.map(r1),
      warmStartMs: r1(median(warmRunning)),
      warmStartWorkerStoppedMs: r1(median(warmStopped)),
      sendP50Ms: r1(median(seq.latencies)),
      sendP95Ms: r1(pct(seq.latencies, 95)),
      sendInWorkerMeanMs: r1(inWorkerPerSend),
      sendChromiumCpuMs: cpuPer(c0, c1, sends),
      sendChromiumCpuByKindMs: k0 && k1 ? Object.fromEntries([...k1].map(([k, v]) => [k, cpuPer(k0.get(k) ?? 0, v, sends)])) : undefined,
      arrivalChromiumCpuMs: cpuPer(c2, c3, Number(opts.arrivals)),
      versionsChromiumCpuByKindMs: vc0 && vc1 ? Object.fromEntries([...vc1].map(([k, v]) => [k, cpuPer(vc0.get(k) ?? 0, v, 100)])) : undefined,
      versionsP50Ms: r1(median(versions)),
      versionsInWorkerMeanMs: Math.round(versionsInWorker * 100) / 100,
      msgPerSec: Math.round(msgPerSec),
      arrivalP50Ms: r1(median(arrivals)),
      arrivalP95Ms: r1(pct(arrivals, 95)),
      fill1000Ms: Math.round(fillMs),
      concurrentMsgPerSec: Math.round((fillCount / fillMs) * 1000),
      initialSync1000Limit10Ms: r1(median(initial10)),
      initialSync1000Limit100Ms: r1(median(initial100)),
      jsGzipKiB: { page: r1(js.page / 1024), worker: r1(js.worker / 1024) },
      workerStartupFirst: firstStartup,
      workerStartupAfterStop: stoppedStartup,
      rawIdb: {
        singlePutTxPerSec: Math.round(raw.single.transactionsPerSecond),
        batched100PutsPerSec: Math.round(raw.batched.putsPerSecond),
        concurrent8TxPerSec: Math.round(raw.concurrent.transactionsPerSecond),
      },
      persistedVsRawSingle: r1(msgPerSec / raw.single.transactionsPerSecond),
      persistedVsRawBatched: Math.round((msgPerSec / raw.batched.putsPerSecond) * 1000) / 1000,
      byMessage: {
        sendP50Ms: r1(median(mseq.latencies)),
        sendP95Ms: r1(pct(mseq.latencies, 95)),
        msgPerSec: Math.round((sends / mseq.totalMs) * 1000),
        arrivalP50Ms: r1(median(marrivals)),
        arrivalP95Ms: r1(pct(marrivals, 95)),
      },
      withoutDevtools: plain,
      load: loadavg().map(r1),
    };

    const rows: [string, string, string, boolean | undefined][] = [
      ['cold start (load → registered, in a room)', `${result.coldStartMs} ms`, '≤ 2000 ms', result.coldStartMs <= 2000],
      ['warm start (reload → timeline), worker running', `${result.warmStartMs} ms`, '≤ 500 ms', result.warmStartMs <= 500],
      ['warm start, worker stopped first', `${result.warmStartWorkerStoppedMs} ms`, '≤ 500 ms', result.warmStartWorkerStoppedMs <= 500],
      ['sequential send p50 (p95)', `${result.sendP50Ms} ms (${result.sendP95Ms})`, '≤ 5 ms', result.sendP50Ms <= 5],
      ['  of which inside the homeserver (mean)', `${result.sendInWorkerMeanMs} ms`, '', undefined],
      ['  Chromium CPU per send (all processes)', `${result.sendChromiumCpuMs} ms`, '', undefined],
      ['GET /versions round trip p50 (in the worker)', `${result.versionsP50Ms} ms (${result.versionsInWorkerMeanMs})`, '', undefined],
      ['sequential sends', `${result.msgPerSec} msg/s`, '≥ 300', result.msgPerSec >= 300],
      ['send → /sync arrival p50 (p95)', `${result.arrivalP50Ms} ms (${result.arrivalP95Ms})`, '≤ 10 ms', result.arrivalP50Ms <= 10],
      ['  Chromium CPU per arrival (send + sync)', `${result.arrivalChromiumCpuMs} ms`, '', undefined],
      ['message transport: send p50 (p95)', `${result.byMessage.sendP50Ms} ms (${result.byMessage.sendP95Ms})`, '≤ 5 ms', result.byMessage.sendP50Ms <= 5],
      ['message transport: sequential sends', `${result.byMessage.msgPerSec} msg/s`, '≥ 300', result.byMessage.msgPerSec >= 300],
      ['message transport: arrival p50 (p95)', `${result.byMessage.arrivalP50Ms} ms (${result.byMessage.arrivalP95Ms})`, '≤ 10 ms', result.byMessage.arrivalP50Ms <= 10],
      ['message transport: 8 concurrent senders', `${result.concurrentMsgPerSec} msg/s`, '', undefined],
      ['initial /sync, 1,000-event room, limit 10', `${result.initialSync1000Limit10Ms} ms`, '', undefined],
      ['initial /sync, 1,000-event room, limit 100', `${result.initialSync1000Limit100Ms} ms`, '', undefined],
      ['JS gzipped: page / worker', `${result.jsGzipKiB.page} / ${result.jsGzipKiB.worker} KiB`, '', undefined],
      ['raw IndexedDB (in memory): 1 put per tx', `${result.rawIdb.singlePutTxPerSec} tx/s`, '', undefined],
      ['raw IndexedDB (in memory): 100 puts per tx', `${result.rawIdb.batched100PutsPerSec} puts/s`, '', undefined],
      ['persisted events/s ÷ raw 1-put tx/s', `${result.persistedVsRawSingle}`, '', undefined],
    ];
    const w = Math.max(...rows.map((r) => r[0].length));
    console.log(`\nHearth in Chromium, through the service worker (load ${result.load.join(' ')})`);
    for (const [name, value, target, ok] of rows) {
      console.log(`  ${name.padEnd(w)}  ${value.padEnd(22)} ${target.padEnd(10)} ${ok === undefined ? '' : ok ? 'ok' : 'MISSED'}`);
    }
    console.log(
      `  without DevTools attached (page ${plain.pageVisibility}${opts['plain-arg']?.length ? `; ${opts['plain-arg'].join(' ')}` : ''}): send p50 ${plain.sendP50Ms} ms (p95 ${plain.sendP95Ms}), ${plain.msgPerSec} msg/s, in the worker ${plain.sendInWorkerMeanMs} ms, ` +
        `arrival p50 ${plain.arrivalP50Ms} ms (p95 ${plain.arrivalP95Ms}), /versions p50 ${plain.versionsP50Ms} ms, ` +
        `message round trip p50 ${plain.messageP50Ms} ms, raw IndexedDB 1 put per durable tx ${plain.rawSingleTxPerSec} tx/s, 8 puts ${plain.rawEightPutTxPerSec} tx/s; Chromium CPU per send ${plain.sendCpuMs} ms, per /versions ` +
        `${plain.versionsCpuMs} ms, per message ${plain.messageCpuMs} ms, per arrival ${plain.arrivalCpuMs} ms`,
    );
    const pm = plain.byMessage;
    console.log(
      `  without DevTools, message transport: send p50 ${pm.sendP50Ms} ms (p95 ${pm.sendP95Ms}), ${pm.msgPerSec} msg/s, in the worker ${pm.sendInWorkerMeanMs} ms, ` +
        `arrival p50 ${pm.arrivalP50Ms} ms (p95 ${pm.arrivalP95Ms}); Chromium CPU per send ${pm.sendCpuMs} ms, per arrival ${pm.arrivalCpuMs} ms`,
    );
    console.log(`  Chromium CPU per send by process: ${JSON.stringify(result.sendChromiumCpuByKindMs)}`);
    console.log(`  Chromium CPU per GET /versions by process: ${JSON.stringify(result.versionsChromiumCpuByKindMs)}`);
    for (const line of profileLines) console.log(line);
    console.log(`  worker start-up: first ${JSON.stringify(result.workerStartupFirst)}; after a stop ${JSON.stringify(result.workerStartupAfterStop)}`);
    console.log(JSON.stringify(result));
  } finally {
    await browser.close();
    await app.stop();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
