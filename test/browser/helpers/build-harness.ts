/**
 * Builds the test-only page harness (harness-entry.ts: matrix-js-sdk + the page glue) into one IIFE file that
 * tests inject into the app page (`page.addScriptTag({ path })`, see browser.ts). It never goes
 * into dist/app, so the production app neither ships nor precaches it. End-to-end encryption (the Rust crypto WASM,
 * ~10 MB) is stubbed out: the tests do not use it.
 */
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';
import type { Plugin } from 'vite';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const STUB = '\0hearth-no-rust-crypto';

function noRustCrypto(): Plugin {
  return {
    name: 'hearth-no-rust-crypto',
    enforce: 'pre',
    resolveId(id, importer) {
      if (id === '@matrix-org/matrix-sdk-crypto-wasm') return STUB;
      if (id === './rust-crypto/index.js' && importer?.includes('matrix-js-sdk')) return STUB;
      return undefined;
    },
    load(id) {
      if (id !== STUB) return undefined;
      return 'export async function initRustCrypto() { throw new Error("not in the test harness"); }\nexport default {};';
    },
  };
}

/** Writes the harness to `file` (its directory is created; other files in it are left alone). */
export async function buildHarness(file: string): Promise<void> {
  await build({
    root: REPO_ROOT,
    configFile: false,
    logLevel: 'warn',
    publicDir: false,
    plugins: [noRustCrypto()],
    define: { 'process.env.NODE_ENV': JSON.stringify('production') },
    build: {
      outDir: dirname(file),
      emptyOutDir: false,
      minify: true,
      target: 'es2022',
      lib: {
        entry: join(REPO_ROOT, 'test/browser/helpers/harness-entry.ts'),
        formats: ['iife'],
        name: 'hearthHarness',
        fileName: () => basename(file),
      },
      rolldownOptions: { output: { codeSplitting: false } },
    },
  });
}
