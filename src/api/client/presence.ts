/**
 * Client-Server endpoints of the presence feature.
 * Spec: shared/matrix-spec/data/api/client-server/presence.yaml.
 */
import type { PresenceService, PresenceState } from '../../services/presence.js';
import type { AnyEndpoint } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';

export function presenceEndpoints(s: { presence: PresenceService }): AnyEndpoint[] {
  return [
    /** PUT /_matrix/client/v3/presence/{userId}/status */
    defineEndpoint({
      method: 'PUT',
      path: '/_matrix/client/v3/presence/{userId}/status',
      auth: 'accessToken',
      operationId: 'setPresence',
      async handler({ principal, params, body }) {
        // The body validator has checked `presence` against the spec's enum and `status_msg` is a string.
        const statusMsg = typeof body.status_msg === 'string' ? body.status_msg : undefined;
        await s.presence.setPresence(principal.userId, params.userId, body.presence as PresenceState, statusMsg);
        return {};
      },
    }),
    /** GET /_matrix/client/v3/presence/{userId}/status */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/presence/{userId}/status',
      auth: 'accessToken',
      operationId: 'getPresence',
      handler: ({ principal, params }) => s.presence.getPresence(principal.userId, params.userId),
    }),
  ];
}
