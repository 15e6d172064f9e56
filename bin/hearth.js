#!/usr/bin/env node
// Entry point of `hearth` (npx hearth serve …). Runs the prebuilt bundle dist/node/hearth.js (`npm run build`) while
// none of the files it was built from has changed since; otherwise the TypeScript sources through tsx, polyfills
// first (a clean clone, or sources being edited). The bundle spares tsx's loader thread and compilation: ~40 MB of
// RSS and most of the start-up time. HEARTH_FROM_SOURCE=1 forces the sources; so does --cpu-prof, so that profiles
// name src/ files (unless HEARTH_FROM_SOURCE=0).
//
// Memory: `serve` and `start` run in a child Node process started with SERVER_NODE_FLAGS and SERVER_ENV (V8 reads
// its heap sizes and glibc its malloc settings only when a process starts). This process only passes signals on and
// exits as the child did; the child prints its own pid in the ready line. Flags or variables the user already gave
// (on the command line or in NODE_OPTIONS) win; HEARTH_REEXEC=0 runs everything in this process. What each setting
// buys is measured in bench/README.md.
import { spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * V8 options for the server: a 4 MiB semi-space (young generation ≤ 8 MiB instead of up to 32 MiB; 2 MiB saves ~4 MiB
 * more, sends cost the same, but join, createRoom and /messages ~20–30 % more CPU; 1 MiB costs ~30 % CPU per message
 * in scavenges), and an old generation allowed to grow 25 % past what survived the last full GC before the next one
 * (V8's own factor goes up to 4×: a heap with ~20 MB alive reached 45 MB+).
 */
const SERVER_NODE_FLAGS = ['--max-semi-space-size=4', '--heap-growing-percent=25'];
/**
 * Environment for the server (glibc malloc): at most two arenas, not one per thread that allocates; and fixed mmap
 * and trim thresholds (128 KiB, glibc's starting values). Otherwise freeing one big mmapped block (an 8 MiB scrypt
 * table) raises the mmap threshold to its size and the trim threshold to twice that, so later big buffers come from
 * the heap and freed room at its top stays mapped: ~8 MB of the bench's peak. (One arena: no steady gain at the peak,
 * and /messages paid ~15 % more CPU, bench/README.md.)
 */
const SERVER_ENV = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072', MALLOC_TRIM_THRESHOLD_: '131072' };
/** Signals passed on to the server. SIGINT from a terminal reaches both processes: the server ignores the repeat. */
const FORWARDED = ['SIGTERM', 'SIGINT', 'SIGHUP'];

const argv = process.argv.slice(2);
const serves = (argv.includes('serve') || argv.includes('start')) && !argv.includes('-h') && !argv.includes('--help');
if (serves && process.env.HEARTH_REEXEC !== '0') {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].map((a) => a.split('=')[0]);
  const flags = SERVER_NODE_FLAGS.filter((f) => !given.includes(f.split('=')[0]));
  const env = Object.entries(SERVER_ENV).filter(([k]) => process.env[k] === undefined);
  if (flags.length > 0 || env.length > 0) {
    await superviseServer(flags, Object.fromEntries(env));
  }
}
if (process.env.HEARTH_SUPERVISED === '1') guardAgainstOrphaning();

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Whether dist/node/hearth.js exists and was built after the last change to every input listed beside it. */
function bundleIsFresh() {
  try {
    const { startedAt, inputs } = JSON.parse(readFileSync(join(root, 'dist/node/inputs.json'), 'utf8'));
    // The build began at startedAt: a source saved during the build may be missing from it, hence `>=`.
    if (statSync(join(root, 'dist/node/hearth.js')).mtimeMs < startedAt) return false;
    for (const file of inputs) if (statSync(join(root, file)).mtimeMs >= startedAt) return false;
    return true;
  } catch {
    return false; // no bundle, or an input is gone
  }
}

/**
 * Runs this script again in a child with the extra `flags` and `env`, passes signals on, and ends this process the
 * way the child ended (same exit code, or the same signal). Never returns.
 */
function superviseServer(flags, env) {
  const child = spawn(process.execPath, [...flags, ...process.execArgv, fileURLToPath(import.meta.url), ...argv], {
    // The IPC channel is only there so that the child notices when this process is gone (see guardAgainstOrphaning).
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, ...env, HEARTH_REEXEC: '0', HEARTH_SUPERVISED: '1' },
  });
  const forward = (signal) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  for (const signal of FORWARDED) process.on(signal, forward);
  child.on('error', (e) => {
    process.stderr.write(`hearth: cannot start the server process: ${e.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal === null) process.exit(code ?? 1);
    // Die of the same signal, so that a shell or supervisor sees what the server saw.
    for (const s of FORWARDED) process.removeListener(s, forward);
    process.kill(process.pid, signal);
    setTimeout(() => process.exit(1), 1000).unref();
  });
  return new Promise(() => {});
}

/** In the supervised child: stop cleanly if the supervising process disappears (killed with SIGKILL, say). */
function guardAgainstOrphaning() {
  if (!process.channel) return;
  process.channel.unref();
  process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
}

// HEARTH_FROM_SOURCE=0 keeps a fresh bundle even under --cpu-prof (a profile of the code as shipped, bundle names).
const fromSource =
  process.env.HEARTH_FROM_SOURCE === '1' ||
  (process.env.HEARTH_FROM_SOURCE !== '0' && process.execArgv.some((a) => a.startsWith('--cpu-prof'))) ||
  !bundleIsFresh();
let main;
if (fromSource) {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/node/polyfills.ts');
  ({ main } = await import('../src/node/cli.ts'));
} else {
  ({ main } = await import('../dist/node/hearth.js'));
}
process.exit(await main(process.argv.slice(2)));
