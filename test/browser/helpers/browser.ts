/**
 * Browser test helpers: real Chromium (Debian's, driven by playwright-core) against the built app served by a real
 * Node peer (`hearth start`). The page's `/_matrix` requests are answered by the service worker's homeserver.
 *
 * ```ts
 * const app = await startApp();               // hearth start --app <built app> on 127.0.0.1:<free port>
 * const browser = await launchChromium();
 * const page = await openHomeserverPage(await browser.newContext(), app.url);
 * const r = await api(page, 'GET', '/_matrix/client/versions');
 * ```
 *
 * Under vitest, everything started here is stopped after the test file (afterAll), and the app directory is the one
 * test/browser/global-setup.ts built for this run. Only processes started here are ever signalled.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';
import type { HostStats } from '../../../sw/homeserver-host.js';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from './chromium.js';
import type { HearthTestGlobal } from './harness-entry.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export { CHROMIUM_ARGS, CHROMIUM_PATH };

declare global {
  // The test harness (harness-entry.ts) once injected into a page.
  var hearthTest: HearthTestGlobal;
}

const browsers = new Set<Browser>();
const apps = new Set<RunningApp>();

if (process.env.VITEST) {
  const { afterAll } = await import('vitest');
  afterAll(async () => {
    await Promise.allSettled([...browsers].map((b) => b.close()));
    await Promise.allSettled([...apps].map((a) => a.stop()));
  }, 60_000);
}
process.once('exit', () => {
  for (const a of apps) a.kill();
});

async function provided(key: 'hearthAppDir' | 'hearthHarness'): Promise<string | undefined> {
  if (!process.env.VITEST) return undefined;
  const { inject } = await import('vitest');
  return inject(key);
}

/** Launches headless Chromium (closed after the test file under vitest). */
export async function launchChromium(opts: { args?: readonly string[] } = {}): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [...CHROMIUM_ARGS, ...(opts.args ?? [])],
  });
  browsers.add(browser);
  browser.once('disconnected', () => browsers.delete(browser));
  return browser;
}

export interface RunningApp {
  /** `http://127.0.0.1:<port>`: the app, and the Node peer's own homeserver behind it. */
  readonly url: string;
  /** The Node peer's server name (the service worker's homeserver has another one). */
  readonly serverName: string;
  readonly appDir: string;
  stderr(): string;
  stop(): Promise<void>;
  /** SIGKILL, synchronously (process exit). */
  kill(): void;
}

/**
 * Serves the built app with a spawned `hearth start --app <dir>` on 127.0.0.1 and a free port, on a fresh data
 * directory. `appDir` defaults to this test run's build (global-setup.ts), or dist/app outside vitest.
 */
export async function startApp(opts: { appDir?: string; readyTimeoutMs?: number } = {}): Promise<RunningApp> {
  const appDir = opts.appDir ?? (await provided('hearthAppDir')) ?? join(REPO_ROOT, 'dist/app');
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-app-'));
  const child: ChildProcess = spawn(
    process.execPath,
    [join(REPO_ROOT, 'bin/hearth.js'), 'start', '--host', '127.0.0.1', '--port', '0', '--data', dataDir, '--app', appDir, '--log-level', 'warn'],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const stderr: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (s: string) => stderr.push(s));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const alive = () => child.exitCode === null && child.signalCode === null;
  const timeoutMs = opts.readyTimeoutMs ?? 60_000;
  let info: { url: string; serverName: string };
  try {
    info = await new Promise((done, fail) => {
      let out = '';
      const timer = setTimeout(() => fail(new Error(`hearth start was not ready within ${timeoutMs} ms\n${stderr.join('')}`)), timeoutMs);
      void exited.then(() => {
        clearTimeout(timer);
        fail(new Error(`hearth start exited before it was ready\n${stderr.join('')}`));
      });
      child.stdout!.setEncoding('utf8').on('data', (s: string) => {
        out += s;
        const line = out.split('\n').find((l) => l.startsWith('ready '));
        if (!line) return;
        clearTimeout(timer);
        done(JSON.parse(line.slice('ready '.length)) as { url: string; serverName: string });
      });
    });
  } catch (e) {
    if (alive()) child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  const app: RunningApp = {
    url: info.url,
    serverName: info.serverName,
    appDir,
    stderr: () => stderr.join(''),
    async stop() {
      apps.delete(app);
      if (alive()) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => alive() && child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
    kill() {
      if (alive()) child.kill('SIGKILL');
    },
  };
  apps.add(app);
  return app;
}

let harnessPath: string | undefined;

/** Outside vitest (benchmarks): where the harness was built (build-harness.ts `buildHarness`). */
export function useHarness(path: string): void {
  harnessPath = path;
}

/** Injects the test harness (matrix-js-sdk + page glue as `globalThis.hearthTest`) into the page, once per load. */
export async function injectHarness(page: Page): Promise<void> {
  if (await page.evaluate(() => typeof globalThis.hearthTest === 'object')) return;
  const path = harnessPath ?? (await provided('hearthHarness'));
  if (!path) throw new Error('no test harness: run under vitest (global-setup.ts builds it) or call useHarness()');
  await page.addScriptTag({ path });
}

/**
 * Opens `url` in a new page of `context`, injects the harness and waits until the homeserver's service worker
 * controls the page (src/browser/register-sw.ts `ensureHomeserver`).
 */
export async function openHomeserverPage(context: BrowserContext, url: string): Promise<Page> {
  const page = await context.newPage();
  // HEARTH_BROWSER_LOG=1: the page's console (js-sdk warnings, errors) in the test output.
  if (process.env.HEARTH_BROWSER_LOG) page.on('console', (m) => console.log(`[page ${m.type()}] ${m.text()}`));
  await page.goto(url);
  await ensureControlled(page);
  return page;
}

/** Injects the harness (if needed) and waits for the service worker to control `page`. */
export async function ensureControlled(page: Page): Promise<void> {
  await injectHarness(page);
  await page.evaluate(() => globalThis.hearthTest.ensureHomeserver());
}

export interface ApiResult<T = any> {
  status: number;
  body: T;
}

/** One Client-Server request made by the page itself (so through its service worker). */
export async function api<T = any>(page: Page, method: string, path: string, body?: unknown, token?: string): Promise<ApiResult<T>> {
  return page.evaluate(
    async ({ method, path, body, token }) => {
      const headers: Record<string, string> = {};
      if (body !== undefined) headers['content-type'] = 'application/json';
      if (token) headers.authorization = `Bearer ${token}`;
      const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      return { status: res.status, body: parsed as any };
    },
    { method, path, body, token },
  );
}

/** Registers a user through the page's homeserver; returns its ID and access token. */
export async function registerUser(page: Page, username: string, password = 'correct horse battery'): Promise<{ userId: string; token: string; deviceId: string }> {
  const r = await api(page, 'POST', '/_matrix/client/v3/register', {
    username,
    password,
    auth: { type: 'm.login.dummy' },
  });
  if (r.status !== 200) throw new Error(`register ${username}: ${r.status} ${JSON.stringify(r.body)}`);
  return { userId: r.body.user_id, token: r.body.access_token, deviceId: r.body.device_id };
}

/** The service worker's own report (sw/homeserver-host.ts `HostStats`), asked through a message port. */
export async function swStats(page: Page): Promise<HostStats> {
  return page.evaluate(
    () =>
      new Promise<HostStats>((resolve, reject) => {
        const sw = navigator.serviceWorker.controller;
        if (!sw) return reject(new Error('the page is not controlled by a service worker'));
        const ch = new MessageChannel();
        ch.port1.onmessage = (e) => resolve(e.data as HostStats);
        sw.postMessage({ type: 'hearth:stats' }, [ch.port2]);
      }),
  );
}

/** A DevTools session on `page` (closed after use by the caller). */
export function cdp(page: Page): Promise<CDPSession> {
  return page.context().newCDPSession(page);
}

/**
 * Stops every service worker of the browser through the DevTools protocol, as the browser does to an idle worker:
 * the next event starts it again from scratch.
 */
export async function stopServiceWorkers(page: Page): Promise<void> {
  const session = await cdp(page);
  try {
    await session.send('ServiceWorker.enable');
    await session.send('ServiceWorker.stopAllWorkers');
  } finally {
    await session.detach().catch(() => undefined);
  }
}
