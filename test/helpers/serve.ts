/**
 * Runs the real Node peer (`node bin/hearth.js serve`) as a child process for tests and benchmarks:
 * `const peer = await startServe(); … await peer.restart(); … await peer.stop()`.
 *
 * Every peer started here is stopped after the test file (vitest `afterAll`, registered when running under vitest)
 * and killed if this process exits first. Only processes started by this module are ever signalled.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const HEARTH_BIN = join(REPO_ROOT, 'bin', 'hearth.js');

export interface ServeOptions {
  /** Extra command-line options after `serve --host 127.0.0.1 --port 0 --data <dir>`. */
  args?: readonly string[];
  /** Reuse a data directory (default: a new temporary one, deleted when the peer is finally stopped). */
  dataDir?: string;
  /** Extra Node options for the child (e.g. `--cpu-prof`). */
  nodeArgs?: readonly string[];
  /** How long to wait for the ready line (default 30 s: without a fresh bundle, bin/hearth.js compiles the TypeScript through tsx). */
  readyTimeoutMs?: number;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServedPeer {
  /** Base URL of the running process (changes on restart: the port is picked anew). */
  readonly url: string;
  readonly serverName: string;
  /** The libp2p addresses from the ready line, each ending in /p2p/<peer id> (change on restart with port 0). */
  readonly multiaddrs: string[];
  readonly dataDir: string;
  /** Process id of the process that serves (from the ready line: bin/hearth.js may run the server as its child). */
  readonly pid: number;
  /** Everything the current process wrote to stderr so far. */
  stderr(): string;
  /** Sends `signal` and waits for the exit. Resolves at once if the process has already exited. */
  stop(signal?: NodeJS.Signals): Promise<ExitInfo>;
  /** SIGKILL: the crash case. */
  kill9(): Promise<ExitInfo>;
  /** Stops the process if it runs (SIGTERM) and starts a new one on the same data directory and options. */
  restart(): Promise<void>;
  /** Stops the process and deletes the data directory if this helper created it. */
  dispose(): Promise<void>;
}

interface Running {
  child: ChildProcess;
  /** The serving process (the ready line's pid; the child itself when it ran the server in-process). */
  pid: number;
  exited: Promise<ExitInfo>;
  stderr: string[];
  url: string;
  serverName: string;
  multiaddrs: string[];
}

const live = new Set<ServedPeer>();

async function disposeAll(): Promise<void> {
  await Promise.allSettled([...live].map((p) => p.dispose()));
}

if (process.env.VITEST) {
  const { afterAll } = await import('vitest');
  afterAll(disposeAll, 60_000);
}
// Last resort if the test runner dies: never leave a server running.
process.once('exit', () => {
  for (const p of live) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/**
 * Runs the CLI with `argv` to completion (for --help and bad options): exit code, stdout and stderr.
 */
export function runCli(argv: readonly string[], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [HEARTH_BIN, ...argv], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`hearth ${argv.join(' ')} did not exit within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('error', fail);
    // 'close' (not 'exit'): it comes after the pipes have been drained.
    child.on('close', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

function launch(dataDir: string, opts: ServeOptions): Promise<Running> {
  const argv = [
    ...(opts.nodeArgs ?? []),
    HEARTH_BIN,
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--data',
    dataDir,
    ...(opts.args ?? []),
  ];
  const child = spawn(process.execPath, argv, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (s: string) => stderr.push(s));
  const exited = new Promise<ExitInfo>((done) => child.once('exit', (code, signal) => done({ code, signal })));
  const timeoutMs = opts.readyTimeoutMs ?? 30_000;

  return new Promise<Running>((done, fail) => {
    let buffered = '';
    let ready = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`hearth serve printed no ready line within ${timeoutMs} ms\n${stderr.join('')}`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      fail(e);
    });
    void exited.then((info) => {
      if (ready) return;
      clearTimeout(timer);
      fail(new Error(`hearth serve exited (${info.code ?? info.signal}) before it was ready\n${stderr.join('')}`));
    });
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      if (ready) return;
      buffered += s;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (!line.startsWith('ready ')) continue;
        ready = true;
        clearTimeout(timer);
        try {
          const info = JSON.parse(line.slice('ready '.length)) as { url: string; serverName: string; multiaddrs?: string[]; pid?: number };
          const pid = info.pid ?? child.pid!;
          done({ child, pid, exited, stderr, url: info.url, serverName: info.serverName, multiaddrs: info.multiaddrs ?? [] });
        } catch (e) {
          child.kill('SIGKILL');
          fail(new Error(`unparseable ready line: ${line} (${(e as Error).message})`));
        }
        return;
      }
    });
  });
}

/** Starts `hearth serve` on loopback with a free port and waits until it prints its ready line. */
export async function startServe(opts: ServeOptions = {}): Promise<ServedPeer> {
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'hearth-serve-'));
  let running: Running;
  try {
    running = await launch(dataDir, opts);
  } catch (e) {
    if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }

  const halt = async (signal: NodeJS.Signals): Promise<ExitInfo> => {
    const r = running;
    if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill(signal);
    return r.exited;
  };

  const peer: ServedPeer = {
    get url() {
      return running.url;
    },
    get serverName() {
      return running.serverName;
    },
    get multiaddrs() {
      return running.multiaddrs;
    },
    dataDir,
    get pid() {
      return running.pid;
    },
    stderr: () => running.stderr.join(''),
    stop: (signal = 'SIGTERM') => halt(signal),
    // The serving process, so that it really crashes (bin/hearth.js then ends of the same signal).
    kill9: async () => {
      const r = running;
      if (r.child.exitCode === null && r.child.signalCode === null) process.kill(r.pid, 'SIGKILL');
      return r.exited;
    },
    async restart() {
      await halt('SIGTERM');
      running = await launch(dataDir, opts);
    },
    async dispose() {
      live.delete(peer);
      const r = running;
      if (r.child.exitCode === null && r.child.signalCode === null) {
        r.child.kill('SIGTERM');
        // A server that does not stop in time is killed rather than left behind.
        const timer = setTimeout(() => r.child.kill('SIGKILL'), 10_000);
        await r.exited;
        clearTimeout(timer);
      }
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
  live.add(peer);
  return peer;
}

export interface HttpResult<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

/** One request to the peer over HTTP. Objects are sent as JSON; strings as they are. */
export async function http<T = any>(
  peer: { url: string },
  method: string,
  path: string,
  body?: unknown,
  token?: string,
  headers: Record<string, string> = {},
): Promise<HttpResult<T>> {
  const h: Record<string, string> = { ...headers };
  if (token !== undefined) h.authorization = `Bearer ${token}`;
  let payload: string | undefined;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    h['content-type'] ??= 'application/json';
  }
  const res = await fetch(peer.url + path, { method, headers: h, body: payload });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: parsed as T, headers: res.headers };
}

export interface Account {
  userId: string;
  accessToken: string;
  deviceId: string;
  password: string;
}

/**
 * Registers a user through the whole user-interactive auth dance: asks for the flows, then completes the first flow
 * whose stages it can do (m.login.dummy; m.login.registration_token with `registrationToken`).
 */
export async function registerUser(
  peer: { url: string },
  username: string,
  opts: { password?: string; registrationToken?: string } = {},
): Promise<Account> {
  const password = opts.password ?? `pw-${username}-secret`;
  const base = { username, password, initial_device_display_name: 'test' };
  const first = await http(peer, 'POST', '/_matrix/client/v3/register', base);
  if (first.status === 200) return toAccount(first.body, password);
  if (first.status !== 401) throw new Error(`register ${username}: ${first.status} ${JSON.stringify(first.body)}`);
  const session = first.body.session as string;
  const flows = first.body.flows as { stages: string[] }[];
  const doable = (s: string) => s === 'm.login.dummy' || (s === 'm.login.registration_token' && opts.registrationToken !== undefined);
  const flow = flows.find((f) => f.stages.every(doable));
  if (!flow) throw new Error(`register ${username}: no flow this helper can complete in ${JSON.stringify(flows)}`);
  let last = first;
  for (const stage of flow.stages) {
    const auth: Record<string, unknown> = { type: stage, session };
    if (stage === 'm.login.registration_token') auth.token = opts.registrationToken;
    last = await http(peer, 'POST', '/_matrix/client/v3/register', { ...base, auth });
    if (last.status === 200) break;
    if (last.status !== 401 || last.body.errcode !== undefined) {
      throw new Error(`register ${username} (${stage}): ${last.status} ${JSON.stringify(last.body)}`);
    }
  }
  if (last.status !== 200) throw new Error(`register ${username}: ${last.status} ${JSON.stringify(last.body)}`);
  return toAccount(last.body, password);
}

function toAccount(body: any, password: string): Account {
  return { userId: body.user_id, accessToken: body.access_token, deviceId: body.device_id, password };
}

/** Logs in with a password: a fresh access token. */
export async function loginUser(peer: { url: string }, userId: string, password: string): Promise<Account> {
  const res = await http(peer, 'POST', '/_matrix/client/v3/login', {
    type: 'm.login.password',
    identifier: { type: 'm.id.user', user: userId },
    password,
  });
  if (res.status !== 200) throw new Error(`login ${userId}: ${res.status} ${JSON.stringify(res.body)}`);
  return toAccount(res.body, password);
}

/** Throws with the response when the status is not the expected one; returns the body. */
export function expectStatus<T = any>(res: HttpResult<T>, status: number, what: string): T {
  if (res.status !== status) throw new Error(`${what}: expected ${status}, got ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}
