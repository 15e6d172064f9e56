/**
 * vitest globalSetup of the browser tests (vitest.config.ts, project 'browser'): once per test run, the production
 * build of the app (scripts/build.mjs: page, service worker, precache manifest) and the test-only page harness.
 *
 * Both go into a directory of this run (dist/test/run-<pid>/), not dist/app: another run building at the same time
 * (or `npm run build`) cannot swap files under a server a test is using. Tests get the paths with
 * `inject('hearthAppDir')` / `inject('hearthHarness')` (helpers/browser.ts does it); teardown deletes the directory.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { CHROMIUM_PATH } from './helpers/chromium.js';
import { REPO_ROOT, buildHarness } from './helpers/build-harness.js';

declare module 'vitest' {
  export interface ProvidedContext {
    hearthAppDir: string;
    hearthHarness: string;
  }
}

export default async function setup(project: TestProject): Promise<() => void> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM_PATH} (.ci/run installs it: apt-get install -y chromium)`);
  }
  const runDir = join(REPO_ROOT, 'dist/test', `run-${process.pid}`);
  rmSync(runDir, { recursive: true, force: true });
  mkdirSync(runDir, { recursive: true });
  const appDir = join(runDir, 'app');
  const harness = join(runDir, 'harness.js');
  const t0 = performance.now();
  // HEARTH_TEST_APP_DIR: use an app built elsewhere (e.g. while the client sources are mid-edit); no build here.
  const prebuilt = process.env.HEARTH_TEST_APP_DIR;
  try {
    if (!prebuilt) {
      const r = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts/build.mjs'), '--out', appDir, '--quiet'], {
        cwd: REPO_ROOT,
        encoding: 'utf8',
        // vitest sets NODE_ENV=test, which would make vite build a development bundle.
        env: { ...process.env, NODE_ENV: 'production' },
      });
      if (r.status !== 0) throw new Error(`the app build failed:\n${r.stdout}\n${r.stderr}`);
    }
    await buildHarness(harness);
  } catch (e) {
    rmSync(runDir, { recursive: true, force: true });
    throw e;
  }
  console.log(`[browser tests] app and harness built in ${Math.round(performance.now() - t0)} ms`);
  project.provide('hearthAppDir', prebuilt ?? appDir);
  project.provide('hearthHarness', harness);
  return () => rmSync(runDir, { recursive: true, force: true });
}
