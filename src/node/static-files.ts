/**
 * Serves the built app (dist/app) for `hearth start`: files by path with their content type, `index.html` for
 * navigations (the app is a single page), and `Service-Worker-Allowed: /` so the worker may control the whole origin.
 */
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.wasm': 'application/wasm',
};

export function staticFiles(root: string): (request: Request) => Promise<Response> {
  const base = normalize(root + sep);
  return async (request) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') return new Response('Method Not Allowed', { status: 405 });
    const url = new URL(request.url);
    let rel: string;
    try {
      rel = decodeURIComponent(url.pathname);
    } catch {
      return new Response('Bad Request', { status: 400 });
    }
    let path = normalize(join(base, rel));
    if (!path.startsWith(base)) return new Response('Not Found', { status: 404 });
    let info = await stat(path).catch(() => undefined);
    if (info?.isDirectory()) {
      path = join(path, 'index.html');
      info = await stat(path).catch(() => undefined);
    }
    if (!info?.isFile()) {
      // Unknown paths without an extension are app routes: serve the shell.
      if (extname(rel) !== '') return new Response('Not Found', { status: 404 });
      path = join(base, 'index.html');
      info = await stat(path).catch(() => undefined);
      if (!info?.isFile()) return new Response('Not Found (run `npm run build`)', { status: 404 });
    }
    const body = request.method === 'HEAD' ? null : await readFile(path);
    const headers = new Headers({
      'content-type': TYPES[extname(path)] ?? 'application/octet-stream',
      'content-length': String(info.size),
      'service-worker-allowed': '/',
      // Hashed assets never change; the shell and the worker must revalidate so updates arrive.
      'cache-control': rel.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
    });
    return new Response(body, { headers });
  };
}
