/**
 * CORS for browser clients. Spec: shared/matrix-spec/content/client-server-api/_index.md#web-browser-clients —
 * servers answer OPTIONS on every endpoint without running the endpoint's logic, and send these headers on all
 * responses. The .well-known files SHOULD carry them too (#well-known-uris).
 */

/** The headers the spec recommends, verbatim. */
export const CORS_HEADERS: Readonly<Record<string, string>> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, POST, PUT, DELETE, OPTIONS',
  'Access-Control-Allow-Headers': 'X-Requested-With, Content-Type, Authorization',
};

/** Paths whose OPTIONS requests are answered as CORS preflights. */
export function isCorsPath(pathname: string): boolean {
  return pathname.startsWith('/_matrix/') || pathname.startsWith('/.well-known/matrix/');
}

/** The answer to an OPTIONS request: no endpoint logic, no auth, just the CORS headers. */
export function preflightResponse(): Response {
  return new Response(null, { status: 204, headers: CORS_HEADERS });
}

/**
 * Adds the CORS headers to a response. Responses with immutable headers (from `fetch()` or `Response.redirect()`)
 * are copied first.
 */
export function withCors(res: Response): Response {
  try {
    for (const [k, v] of Object.entries(CORS_HEADERS)) res.headers.set(k, v);
    return res;
  } catch {
    const headers = new Headers(res.headers);
    for (const [k, v] of Object.entries(CORS_HEADERS)) headers.set(k, v);
    return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
  }
}
