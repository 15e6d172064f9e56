/**
 * GET /_matrix/client/versions — the spec versions this server implements, and its unstable features.
 * Spec: shared/matrix-spec/content/client-server-api/_index.md#api-versions (data/api/client-server/versions.yaml).
 * Authentication is optional (v1.10): with a valid token the answer may list features enabled for that user.
 */
import type { Principal } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';

export interface VersionsInit {
  /** e.g. `['v1.11', …, 'v1.19']`; `v1.0` must never be listed (the spec's "Legacy versioning"). */
  readonly versions: readonly string[];
  /** Namespaced unstable features; a function may answer per user (undefined when unauthenticated). */
  readonly unstableFeatures?:
    | Readonly<Record<string, boolean>>
    | ((principal: Principal | undefined) => Readonly<Record<string, boolean>>);
}

export function versionsEndpoint(init: VersionsInit) {
  if (init.versions.includes('v1.0')) throw new Error("'v1.0' must not be advertised (spec: Legacy versioning)");
  const versions = [...init.versions];
  return defineEndpoint({
    method: 'GET',
    path: '/_matrix/client/versions',
    auth: 'optionalAccessToken',
    operationId: 'getVersions',
    handler({ principal }) {
      const f = init.unstableFeatures;
      const unstable_features = typeof f === 'function' ? f(principal) : (f ?? {});
      return { versions, unstable_features };
    },
  });
}
