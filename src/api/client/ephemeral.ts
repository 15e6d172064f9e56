/**
 * Client-Server endpoints of the ephemeral-room-data feature: typing, receipts, read markers.
 * Spec: shared/matrix-spec/data/api/client-server/typing.yaml, receipts.yaml, read_markers.yaml.
 */
import type { EphemeralService } from '../../services/ephemeral.js';
import type { AnyEndpoint } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';

export function ephemeralEndpoints(s: { ephemeral: EphemeralService }): AnyEndpoint[] {
  return [
    /** PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId} */
    defineEndpoint({
      method: 'PUT',
      path: '/_matrix/client/v3/rooms/{roomId}/typing/{userId}',
      auth: 'accessToken',
      operationId: 'setTyping',
      async handler({ principal, params, body }) {
        const timeout = typeof body.timeout === 'number' ? body.timeout : undefined;
        await s.ephemeral.setTyping(principal.userId, params.userId, params.roomId, body.typing === true, timeout);
        return {};
      },
    }),
    /** POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId} */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}',
      auth: 'accessToken',
      operationId: 'postReceipt',
      async handler({ principal, params, body }) {
        await s.ephemeral.postReceipt(principal.userId, params.roomId, params.receiptType, params.eventId, body);
        return {};
      },
    }),
    /** POST /_matrix/client/v3/rooms/{roomId}/read_markers */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/rooms/{roomId}/read_markers',
      auth: 'accessToken',
      operationId: 'setReadMarker',
      async handler({ principal, params, body }) {
        await s.ephemeral.setReadMarkers(principal.userId, params.roomId, body);
        return {};
      },
    }),
  ];
}
