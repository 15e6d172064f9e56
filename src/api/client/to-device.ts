/**
 * Client-Server endpoints of send-to-device messaging.
 * Spec: shared/matrix-spec/data/api/client-server/to_device.yaml.
 */
import type { JsonObject } from '../../core/json.js';
import type { ToDeviceService } from '../../services/to-device.js';
import type { AnyEndpoint } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';

export function toDeviceEndpoints(s: { toDevice: ToDeviceService }): AnyEndpoint[] {
  return [
    /** PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId} */
    defineEndpoint({
      method: 'PUT',
      path: '/_matrix/client/v3/sendToDevice/{eventType}/{txnId}',
      auth: 'accessToken',
      operationId: 'sendToDevice',
      async handler({ principal, params, body }) {
        // The body validator has checked that `messages` is an object.
        await s.toDevice.send(principal.userId, principal.deviceId, params.eventType, params.txnId, body.messages as JsonObject);
        return {};
      },
    }),
  ];
}
