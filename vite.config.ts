import { defineConfig } from 'vite';
import type { Plugin } from 'vite';

/**
 * The page (index.html → src/client). `npm run build` (scripts/build.mjs) runs this, then builds the service worker
 * (sw/sw.ts) as a second bundle emitted at /sw.js with the workbox precache manifest injected.
 *
 * `npm run dev`: the dev server answers /sw.js with the module sw/sw.ts (transformed on the fly), with
 * `Service-Worker-Allowed: /`; without a precache manifest the shell comes from the dev server (no offline in dev).
 */

/** Dev server: /sw.js is sw/sw.ts, so the page registers the same URL in dev and in production. */
function devServiceWorker(): Plugin {
  return {
    name: 'hearth-dev-sw',
    apply: 'serve',
    configureServer(server) {
      server.middlewares.use((req, _res, next) => {
        if (req.url === '/sw.js' || req.url?.startsWith('/sw.js?')) req.url = '/sw/sw.ts';
        next();
      });
    },
  };
}

/** Adds the PWA head tags (manifest, icons, theme colour) to index.html unless it has them already. */
function pwaHead(): Plugin {
  return {
    name: 'hearth-pwa-head',
    transformIndexHtml(html) {
      const tags = [];
      if (!html.includes('rel="manifest"')) {
        tags.push({ tag: 'link', attrs: { rel: 'manifest', href: '/manifest.webmanifest' }, injectTo: 'head' as const });
      }
      if (!html.includes('rel="icon"')) {
        tags.push({ tag: 'link', attrs: { rel: 'icon', href: '/icons/icon.svg', type: 'image/svg+xml' }, injectTo: 'head' as const });
      }
      if (!html.includes('rel="apple-touch-icon"')) {
        tags.push({ tag: 'link', attrs: { rel: 'apple-touch-icon', href: '/icons/icon-192.png' }, injectTo: 'head' as const });
      }
      if (!html.includes('name="theme-color"')) {
        tags.push({ tag: 'meta', attrs: { name: 'theme-color', content: '#c2410c' }, injectTo: 'head' as const });
      }
      return tags;
    },
  };
}

export default defineConfig({
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  plugins: [pwaHead(), devServiceWorker()],
  build: { outDir: 'dist/app', emptyOutDir: true, sourcemap: true, target: 'es2022' },
  server: { headers: { 'Service-Worker-Allowed': '/' } },
  // The worker's dependencies are not reachable from index.html: list it so the dev server pre-bundles them too.
  optimizeDeps: { entries: ['index.html', 'sw/sw.ts'] },
});
