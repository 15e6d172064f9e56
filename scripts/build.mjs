#!/usr/bin/env node
/**
 * Production build of the web app (`npm run build`): dist/app is everything `hearth start` and the service worker
 * serve.
 *
 * 1. vite builds the page (index.html → src/client) into dist/app (vite.config.ts);
 * 2. vite builds the service worker (sw/sw.ts, the in-page homeserver) as one ES module (into a scratch directory);
 * 3. workbox-build's injectManifest writes dist/app/sw.js with the precache manifest (every file of dist/app with
 *    its revision) in place of `self.__WB_MANIFEST`.
 *
 * Prints the gzipped size of the JS shipped for the page and for the worker.
 * `node scripts/build.mjs [--out DIR] [--quiet]`.
 */
import { readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'vite';
import { injectManifest } from 'workbox-build';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_OUT = join(root, 'dist/app');

/** Builds the app into `outDir` (default dist/app; the browser tests build into their own directory). */
export async function buildApp({ outDir = DEFAULT_OUT, quiet = false } = {}) {
  const appDir = resolve(outDir);
  const swBuildDir = `${appDir}.sw-build`;
  const logLevel = quiet ? 'warn' : 'info';
  const t0 = performance.now();
  await build({ root, configFile: join(root, 'vite.config.ts'), logLevel, build: { outDir: appDir, emptyOutDir: true } });
  await build({
    root,
    configFile: false,
    logLevel,
    publicDir: false,
    define: { 'process.env.NODE_ENV': JSON.stringify('production') },
    build: {
      outDir: swBuildDir,
      emptyOutDir: true,
      sourcemap: true,
      target: 'es2022',
      minify: true,
      rolldownOptions: {
        input: join(root, 'sw/sw.ts'),
        output: { format: 'es', entryFileNames: 'sw.js', codeSplitting: false },
      },
    },
  });
  const { count, size, warnings } = await injectManifest({
    swSrc: join(swBuildDir, 'sw.js'),
    swDest: join(appDir, 'sw.js'),
    globDirectory: appDir,
    globPatterns: ['**/*.{html,js,css,svg,png,ico,webmanifest,woff2,json}'],
    globIgnores: ['sw.js', '**/*.map'],
    // Vite puts a content hash in every asset name: no need to revision those again.
    dontCacheBustURLsMatching: /^assets\//,
  });
  rmSync(swBuildDir, { recursive: true, force: true });
  for (const w of warnings) console.warn(`workbox: ${w}`);
  const sizes = jsSizes(appDir);
  if (!quiet) {
    console.log(
      `app built in ${Math.round(performance.now() - t0)} ms: precache ${count} files (${(size / 1024).toFixed(1)} KiB); ` +
        `JS gzipped: page ${(sizes.page / 1024).toFixed(1)} KiB, worker ${(sizes.worker / 1024).toFixed(1)} KiB`,
    );
  }
  return sizes;
}

/** Gzipped bytes of the JS the page loads (everything under assets/) and of the worker (sw.js). */
export function jsSizes(dir = DEFAULT_OUT) {
  const gz = (file) => gzipSync(readFileSync(file), { level: 9 }).length;
  let page = 0;
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.js') && p !== join(dir, 'sw.js')) page += gz(p);
    }
  };
  walk(dir);
  return { page, worker: gz(join(dir, 'sw.js')) };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--out');
  const outDir = i > 0 ? process.argv[i + 1] : undefined;
  buildApp({ outDir, quiet: process.argv.includes('--quiet') }).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
