import { defineConfig } from 'vite';

// The app shell (index.html → src/client). The service worker (sw/) becomes a second input with the in-page
// homeserver (issue 4).
export default defineConfig({
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: { outDir: 'dist/app', emptyOutDir: true, sourcemap: true },
  server: { headers: { 'Service-Worker-Allowed': '/' } },
});
