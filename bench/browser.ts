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
 * Prints a table against the targets of issue 4, then one JSON line. DevTools keeps the worker alive while
 * attached, so "stopped" cases stop it explicitly (ServiceWorker.stopAllWorkers), as the browser would when idle.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import type { Page } from 'playwright-core';
import type { Account } from '../test/browser/helpers/bench-page.js';
import { ensureControlled, launchChromium, startApp, stopServiceWorkers, swStats, useHarness, REPO_ROOT } from '../test/browser/helpers/browser.js';
import { buildHarness } from '../test/browser/helpers/build-harness.js';

const { values: opts } = parseArgs({
  options: {
    app: { type: 'string' },
    sends: { type: 'string', default: '300' },
    arrivals: { type: 'string', default: '100' },
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

  const app = await startApp({ appDir });
  const browser = await launchChromium();
  try {
    const ensure = (page: Page) => ensureControlled(page);

    // ---- cold start (three fresh profiles)
    const cold: number[] = [];
    let firstStartup: unknown;
    for (let i = 0; i < 3; i++) {
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
    const s0 = await swStats(page);
    const seq = await page.evaluate(([acc, n]) => globalThis.hearthTest.bench.sequentialSends(acc, n), [a, sends] as const);
    const s1 = await swStats(page);
    // Time inside the homeserver per send; the rest of the latency is the browser's dispatch to and from the worker.
    const inWorkerPerSend = (s1.servingMs - s0.servingMs) / (s1.served - s0.served);
    const v0 = await swStats(page);
    const versions = await page.evaluate(async () => {
      const xs: number[] = [];
      for (let i = 0; i < 100; i++) {
        const t = performance.now();
        await (await fetch('/_matrix/client/versions')).text();
        xs.push(performance.now() - t);
      }
      return xs;
    });
    const v1 = await swStats(page);
    const versionsInWorker = (v1.servingMs - v0.servingMs) / (v1.served - v0.served);
    const arrivals = await page.evaluate(([acc, n]) => globalThis.hearthTest.bench.syncArrival(acc, n), [a, Number(opts.arrivals)] as const);

    // ---- initial sync of a 1,000-event room
    const big: Account = await page.evaluate(() => globalThis.hearthTest.bench.registerAndCreateRoom('big'));
    const fillMs = await page.evaluate((acc) => globalThis.hearthTest.bench.fillRoom(acc, 1000), big);
    const initial10: number[] = [];
    const initial100: number[] = [];
    for (let i = 0; i < 5; i++) {
      initial10.push((await page.evaluate((acc) => globalThis.hearthTest.bench.initialSync(acc, 10), big)).ms);
      initial100.push((await page.evaluate((acc) => globalThis.hearthTest.bench.initialSync(acc, 100), big)).ms);
    }

    // ---- warm start: reload → first screen's data, worker running / stopped
    const warmRunning: number[] = [];
    const warmStopped: number[] = [];
    let stoppedStartup: unknown;
    for (let i = 0; i < 5; i++) {
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
      versionsP50Ms: r1(median(versions)),
      versionsInWorkerMeanMs: Math.round(versionsInWorker * 100) / 100,
      msgPerSec: Math.round(msgPerSec),
      arrivalP50Ms: r1(median(arrivals)),
      arrivalP95Ms: r1(pct(arrivals, 95)),
      fill1000Ms: Math.round(fillMs),
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
      load: loadavg().map(r1),
    };

    const rows: [string, string, string, boolean | undefined][] = [
      ['cold start (load → registered, in a room)', `${result.coldStartMs} ms`, '≤ 2000 ms', result.coldStartMs <= 2000],
      ['warm start (reload → timeline), worker running', `${result.warmStartMs} ms`, '≤ 500 ms', result.warmStartMs <= 500],
      ['warm start, worker stopped first', `${result.warmStartWorkerStoppedMs} ms`, '≤ 500 ms', result.warmStartWorkerStoppedMs <= 500],
      ['sequential send p50 (p95)', `${result.sendP50Ms} ms (${result.sendP95Ms})`, '≤ 5 ms', result.sendP50Ms <= 5],
      ['  of which inside the homeserver (mean)', `${result.sendInWorkerMeanMs} ms`, '', undefined],
      ['GET /versions round trip p50 (in the worker)', `${result.versionsP50Ms} ms (${result.versionsInWorkerMeanMs})`, '', undefined],
      ['sequential sends', `${result.msgPerSec} msg/s`, '≥ 300', result.msgPerSec >= 300],
      ['send → /sync arrival p50 (p95)', `${result.arrivalP50Ms} ms (${result.arrivalP95Ms})`, '≤ 10 ms', result.arrivalP50Ms <= 10],
      ['initial /sync, 1,000-event room, limit 10', `${result.initialSync1000Limit10Ms} ms`, '', undefined],
      ['initial /sync, 1,000-event room, limit 100', `${result.initialSync1000Limit100Ms} ms`, '', undefined],
      ['JS gzipped: page / worker', `${result.jsGzipKiB.page} / ${result.jsGzipKiB.worker} KiB`, '', undefined],
      ['raw IndexedDB: 1 put per durable tx', `${result.rawIdb.singlePutTxPerSec} tx/s`, '', undefined],
      ['raw IndexedDB: 100 puts per tx', `${result.rawIdb.batched100PutsPerSec} puts/s`, '', undefined],
      ['persisted events/s ÷ raw 1-put tx/s', `${result.persistedVsRawSingle}`, '', undefined],
    ];
    const w = Math.max(...rows.map((r) => r[0].length));
    console.log(`\nHearth in Chromium, through the service worker (load ${result.load.join(' ')})`);
    for (const [name, value, target, ok] of rows) {
      console.log(`  ${name.padEnd(w)}  ${value.padEnd(22)} ${target.padEnd(10)} ${ok === undefined ? '' : ok ? 'ok' : 'MISSED'}`);
    }
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
