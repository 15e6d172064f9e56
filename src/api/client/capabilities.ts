/**
 * GET /_matrix/client/v3/capabilities — what this server lets clients do.
 * Spec: shared/matrix-spec/content/client-server-api/_index.md#capabilities-negotiation,
 * data/api/client-server/capabilities.yaml.
 */
import { DEFAULT_ROOM_VERSION, ROOM_VERSIONS } from '../../core/room-versions.js';
import type { AnyEndpoint } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';

/** Every room version this server implements is stable (the spec defines 1–12 as stable). */
function roomVersions(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const id of ROOM_VERSIONS.keys()) out[id] = 'stable';
  return out;
}

export function capabilitiesEndpoint(): AnyEndpoint {
  const capabilities = {
    'm.change_password': { enabled: true },
    'm.room_versions': { default: DEFAULT_ROOM_VERSION, available: roomVersions() },
    'm.set_displayname': { enabled: true },
    'm.set_avatar_url': { enabled: true },
    'm.3pid_changes': { enabled: false },
    'm.get_login_token': { enabled: false },
    // v1.16: any profile field may be set (guests only their display name, which the endpoint enforces).
    'm.profile_fields': { enabled: true },
  };
  return defineEndpoint({
    method: 'GET',
    path: '/_matrix/client/v3/capabilities',
    auth: 'accessToken',
    operationId: 'getCapabilities',
    handler: () => ({ capabilities }),
  });
}
