#!/usr/bin/env node
/**
 * Production build (`npm run build`): dist/app is everything `hearth start` and the service worker serve, and
 * dist/node is the Node peer as one prebuilt ES module, which bin/hearth.js runs instead of the TypeScript sources.
 *
 * 1. vite builds the page (index.html → src/client) into dist/app (vite.config.ts);
 * 2. vite builds the service worker (sw/sw.ts, the in-page homeserver) as one ES module (into a scratch directory);
 * 3. workbox-build's injectManifest writes dist/app/sw.js with the precache manifest (every file of dist/app with
 *    its revision) in place of `self.__WB_MANIFEST`;
 * 4. esbuild bundles src/node/cli.ts (polyfills first) into dist/node/hearth.js (see buildNode).
 *
 * Prints the gzipped size of the JS shipped for the page and for the worker.
 * `node scripts/build.mjs [--out DIR] [--quiet] [--app-only | --node-only]` (with --out: the app only).
 */
import { readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const DEFAULT_OUT = join(root, 'dist/app');

/** Builds the app into `outDir` (default dist/app; the browser tests build into their own directory). */
export async function buildApp({ outDir = DEFAULT_OUT, quiet = false } = {}) {
  // Imported here, not at the top: `--node-only` (run before every `npm run bench`) needs neither.
  const { build } = await import('vite');
  const { injectManifest } = await import('workbox-build');
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
      // HEARTH_SW_MINIFY=0: readable function names in CPU profiles of the worker (bench/browser.ts --cpu-prof).
      minify: process.env.HEARTH_SW_MINIFY !== '0',
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

export const NODE_BUNDLE = join(root, 'dist/node/hearth.js');
/** What the bundle was built from (bin/hearth.js runs it only while none of these changed since the build began). */
export const NODE_BUNDLE_INPUTS = join(root, 'dist/node/inputs.json');

/**
 * libp2p's peer store sorts multiaddrs, protocol IDs and metadata keys with `String.prototype.localeCompare`, only to
 * get a stable order of ASCII strings. The first call makes V8 open ICU's root collator: ~2.5 MiB of RSS (collation
 * tables in the node binary's read-only data, and their heap) in a server that never collates text. In the Node
 * bundle those comparisons compare UTF-16 code units instead (a total order as well; the order only matters inside
 * this peer's own store). A warning when a listed file has a `localeCompare` left that the rewrite did not match
 * (a libp2p upgrade changed it): the bundle still works, it only pays the 2.5 MiB again.
 */
const LOCALE_COMPARE_FILES = /node_modules[\\/]@libp2p[\\/](peer-store|peer-record)[\\/]dist[\\/].*\.js$/;
/** `A.localeCompare(B)` where A and B are names, property chains and no-argument calls (`a.multiaddr.toString()`). */
const LOCALE_COMPARE_CALL = /([\w$]+(?:\.[\w$]+(?:\(\))?)*)\.localeCompare\(([\w$]+(?:\.[\w$]+(?:\(\))?)*)\)/g;
const codeUnitCompare = {
  name: 'hearth-code-unit-compare',
  setup(build) {
    build.onLoad({ filter: LOCALE_COMPARE_FILES }, async (args) => {
      const source = readFileSync(args.path, 'utf8');
      if (!source.includes('localeCompare')) return undefined;
      const contents = source.replace(LOCALE_COMPARE_CALL, '__hearthCompare($1, $2)');
      const warnings = contents.includes('.localeCompare(')
        ? [{ text: `localeCompare left in ${relative(root, args.path)} (ICU's collator gets loaded)` }]
        : [];
      const helper = 'const __hearthCompare = (a, b) => (a < b ? -1 : a > b ? 1 : 0);\n';
      return { contents: helper + contents, loader: 'js', warnings };
    });
  },
};

/**
 * Bundles the Node peer into dist/node/hearth.js: one file instead of the ~600 modules Node would otherwise load
 * through tsx, whose loader thread and TypeScript compilation cost ~40 MB of RSS and most of the start-up time.
 * classic-level stays external (its native addon is found relative to its own package). esbuild comes with tsx (a
 * dependency already). Written to a temporary name and renamed, so a concurrent start never reads half a file.
 */
export async function buildNode({ quiet = false } = {}) {
  const { build: esbuild } = await import('esbuild');
  const startedAt = Date.now();
  const result = await esbuild({
    stdin: {
      // The polyfills must run before any other module (libp2p calls Promise.withResolvers on Node 20).
      contents: "import './src/node/polyfills.ts';\nexport { main } from './src/node/cli.ts';\n",
      resolveDir: root,
      sourcefile: 'hearth-node-entry.js',
      loader: 'js',
    },
    absWorkingDir: root,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile: NODE_BUNDLE,
    external: ['classic-level'],
    plugins: [codeUnitCompare],
    // CommonJS dependencies (ws, …) call require() for Node built-ins, which an ES module has not got.
    banner: { js: "import { createRequire as __hearthRequire } from 'node:module';\nconst require = __hearthRequire(import.meta.url);" },
    legalComments: 'none',
    // Whitespace and syntax only (names stay, for stack traces): the source V8 keeps is ~6 MB smaller in RSS.
    // `node --enable-source-maps bin/hearth.js` maps stack traces back to src/ through hearth.js.map.
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: 'linked',
    metafile: true,
    write: false,
    logLevel: quiet ? 'error' : 'warning',
  });
  const out = result.outputFiles.find((f) => f.path === NODE_BUNDLE);
  const map = result.outputFiles.find((f) => f.path === `${NODE_BUNDLE}.map`);
  const inputs = Object.keys(result.metafile.inputs)
    .filter((p) => !p.startsWith('node_modules/') && p !== 'hearth-node-entry.js')
    .map((p) => relative(root, resolve(root, p)));
  // An `npm install` rewrites node_modules/.package-lock.json: the bundled dependencies may have changed.
  inputs.push('package.json', 'node_modules/.package-lock.json');
  mkdirSync(dirname(NODE_BUNDLE), { recursive: true });
  writeFileSync(`${NODE_BUNDLE}.map.${process.pid}.tmp`, map.contents);
  renameSync(`${NODE_BUNDLE}.map.${process.pid}.tmp`, `${NODE_BUNDLE}.map`);
  const tmp = `${NODE_BUNDLE}.${process.pid}.tmp`;
  writeFileSync(tmp, out.contents);
  renameSync(tmp, NODE_BUNDLE);
  const tmpInputs = `${NODE_BUNDLE_INPUTS}.${process.pid}.tmp`;
  writeFileSync(tmpInputs, JSON.stringify({ startedAt, inputs }));
  renameSync(tmpInputs, NODE_BUNDLE_INPUTS);
  if (!quiet) {
    console.log(`node peer bundled in ${Date.now() - startedAt} ms: dist/node/hearth.js (${(out.contents.length / 1024).toFixed(0)} KiB)`);
  }
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
  const quiet = process.argv.includes('--quiet');
  const app = !process.argv.includes('--node-only');
  const node = !process.argv.includes('--app-only') && outDir === undefined;
  (async () => {
    if (app) await buildApp({ outDir, quiet });
    if (node) await buildNode({ quiet });
  })().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
