#!/usr/bin/env node
// Entry point of `hearth` (npx hearth serve …). Runs the prebuilt bundle dist/node/hearth.js (`npm run build`) while
// none of the files it was built from has changed since; otherwise the TypeScript sources through tsx, polyfills
// first (a clean clone, or sources being edited). The bundle spares tsx's loader thread and compilation: ~40 MB of
// RSS and most of the start-up time. HEARTH_FROM_SOURCE=1 forces the sources; so does --cpu-prof, so that profiles
// name src/ files.
import { readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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

const fromSource =
  process.env.HEARTH_FROM_SOURCE === '1' || process.execArgv.some((a) => a.startsWith('--cpu-prof')) || !bundleIsFresh();
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
