/**
 * GET /.well-known/matrix/client — server discovery: where the Client-Server API is.
 * Spec: shared/matrix-spec/content/client-server-api/_index.md#well-known-uris (data/api/client-server/wellknown.yaml).
 * Served with CORS headers, as the spec asks, like every other response of the router.
 */
import { defineEndpoint } from '../endpoint.js';

export interface WellKnownClientInit {
  /** The homeserver's public base URL (`m.homeserver.base_url`), e.g. `https://matrix.example.org`. */
  readonly homeserverBaseUrl: string;
  /** `m.identity_server.base_url`, if the deployment points clients at one. */
  readonly identityServerBaseUrl?: string;
  /** Extra namespaced keys (e.g. `org.matrix.msc…`), sent as given. */
  readonly extra?: Readonly<Record<string, unknown>>;
}

export function wellKnownClientEndpoint(init: WellKnownClientInit) {
  const doc: Record<string, unknown> = { ...init.extra, 'm.homeserver': { base_url: init.homeserverBaseUrl } };
  if (init.identityServerBaseUrl !== undefined) {
    doc['m.identity_server'] = { base_url: init.identityServerBaseUrl };
  }
  return defineEndpoint({
    method: 'GET',
    path: '/.well-known/matrix/client',
    auth: 'none',
    operationId: 'getWellknown',
    handler() {
      return doc;
    },
  });
}
