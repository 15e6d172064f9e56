/**
 * bin/hearth.js runs `serve`/`start` in a child Node process with the memory settings V8 and glibc read only at
 * start-up (--max-semi-space-size, --heap-growing-percent, glibc's MALLOC_* tunables), and stands in for it: signals go
 * through, the exit code and a fatal signal come back, and the server does not outlive it. These tests read /proc.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HEARTH_BIN, REPO_ROOT } from '../helpers/serve.js';

interface Started {
  child: ChildProcess;
  /** The pid the ready line names: the process that serves. */
  pid: number;
  url: string;
  dataDir: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: () => string;
}

const started: Started[] = [];

afterEach(async () => {
  for (const s of started.splice(0)) {
    for (const pid of [s.pid, s.child.pid!]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await s.exited;
    rmSync(s.dataDir, { recursive: true, force: true });
  }
});

async function start(
  opts: { nodeArgs?: string[]; env?: Record<string, string | undefined>; detached?: boolean; dataDir?: string } = {},
): Promise<Started> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'hearth-supervisor-'));
  const env: Record<string, string | undefined> = { ...process.env, ...opts.env };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), HEARTH_BIN, 'serve', '--host', '127.0.0.1', '--port', '0', '--data', dataDir], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
    detached: opts.detached ?? false,
  });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once('exit', (code, signal) => done({ code, signal })),
  );
  const ready = await new Promise<{ url: string; pid: number }>((done, fail) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error(`no ready line\n${err}`)), 60_000);
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const line = out.split('\n').find((l) => l.startsWith('ready '));
      if (line) {
        clearTimeout(timer);
        done(JSON.parse(line.slice('ready '.length)));
      }
    });
    void exited.then((e) => fail(new Error(`exited (${e.code ?? e.signal}) before it was ready\n${err}`)));
  });
  const s: Started = { child, pid: ready.pid, url: ready.url, dataDir, exited, stderr: () => err };
  started.push(s);
  return s;
}

function cmdline(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
}

function environ(pid: number): string[] {
  return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
}

function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

async function gone(pid: number, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    if (!existsSync(`/proc/${pid}`)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** The malloc tunables bin/hearth.js sets, unset (so that the test's own environment does not decide). */
const NO_MALLOC_ENV = { MALLOC_ARENA_MAX: undefined, MALLOC_MMAP_THRESHOLD_: undefined, MALLOC_TRIM_THRESHOLD_: undefined };

describe('bin/hearth.js: the server process and its memory settings', () => {
  it('serves from a child started with its V8 heap flags and glibc malloc settings', async () => {
    const s = await start({ env: { HEARTH_REEXEC: undefined, ...NO_MALLOC_ENV } });
    expect(s.pid).not.toBe(s.child.pid);
    expect(parentOf(s.pid)).toBe(s.child.pid);
    expect(cmdline(s.pid)).toEqual(expect.arrayContaining(['--max-semi-space-size=4', '--heap-growing-percent=25']));
    expect(environ(s.pid)).toEqual(
      expect.arrayContaining(['MALLOC_ARENA_MAX=2', 'MALLOC_MMAP_THRESHOLD_=131072', 'MALLOC_TRIM_THRESHOLD_=131072']),
    );
    expect((await fetch(`${s.url}/_matrix/client/versions`)).status).toBe(200);

    // SIGTERM to the process that was started reaches the server, which stops cleanly: exit 0 comes back.
    s.child.kill('SIGTERM');
    expect(await s.exited).toEqual({ code: 0, signal: null });
    expect(await gone(s.pid, 5_000)).toBe(true);
    expect(s.stderr()).toContain('SIGTERM: stopping');
  });

  it('ends with the signal that ended the server', async () => {
    const s = await start();
    process.kill(s.pid, 'SIGKILL');
    expect(await s.exited).toEqual({ code: null, signal: 'SIGKILL' });
  });

  it('does not leave the server running when the supervisor is killed', async () => {
    const s = await start();
    s.child.kill('SIGKILL');
    await s.exited;
    // The server notices (its IPC channel closes) and stops as on SIGTERM, releasing the database.
    expect(await gone(s.pid, 10_000)).toBe(true);
    const again = await start({ dataDir: s.dataDir });
    expect((await fetch(`${again.url}/_matrix/client/versions`)).status).toBe(200);
  });

  it('serves in-process when the settings are given already, or with HEARTH_REEXEC=0', async () => {
    const given = await start({
      nodeArgs: ['--max-semi-space-size=2', '--heap-growing-percent=50'],
      env: { MALLOC_ARENA_MAX: '4', MALLOC_MMAP_THRESHOLD_: '65536', MALLOC_TRIM_THRESHOLD_: '65536' },
    });
    expect(given.pid).toBe(given.child.pid);
    expect(cmdline(given.pid)).toContain('--max-semi-space-size=2');
    expect(environ(given.pid)).toContain('MALLOC_ARENA_MAX=4');

    // One setting missing: a child again, with that one added and the user's others kept.
    const partly = await start({ env: { HEARTH_REEXEC: undefined, ...NO_MALLOC_ENV, MALLOC_ARENA_MAX: '4' } });
    expect(partly.pid).not.toBe(partly.child.pid);
    expect(environ(partly.pid)).toEqual(expect.arrayContaining(['MALLOC_ARENA_MAX=4', 'MALLOC_MMAP_THRESHOLD_=131072']));

    const off = await start({ env: { HEARTH_REEXEC: '0' } });
    expect(off.pid).toBe(off.child.pid);
  });
});
