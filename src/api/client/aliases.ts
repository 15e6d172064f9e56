/**
 * Client-Server room alias endpoints (handlers in src/services/aliases.ts).
 * Spec: data/api/client-server/directory.yaml (#room-aliases in the Client-Server API).
 */
import type { Services } from '../../services/index.js';
import type { AnyEndpoint } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';

export function aliasEndpoints(s: Services): AnyEndpoint[] {
  const aliases = s.aliases;
  return [
    /** GET /_matrix/client/v3/directory/room/{roomAlias} */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/directory/room/{roomAlias}',
      auth: 'none',
      operationId: 'getRoomIdByAlias',
      handler: ({ params }) => aliases.resolve(params.roomAlias),
    }),
    /** PUT /_matrix/client/v3/directory/room/{roomAlias} */
    defineEndpoint({
      method: 'PUT',
      path: '/_matrix/client/v3/directory/room/{roomAlias}',
      auth: 'accessToken',
      operationId: 'setRoomAlias',
      handler: async ({ principal, params, body }) => {
        // The body validator has checked that room_id is a string starting with '!'.
        await aliases.create(principal, params.roomAlias, body.room_id as string);
        return {};
      },
    }),
    /** DELETE /_matrix/client/v3/directory/room/{roomAlias} */
    defineEndpoint({
      method: 'DELETE',
      path: '/_matrix/client/v3/directory/room/{roomAlias}',
      auth: 'accessToken',
      operationId: 'deleteRoomAlias',
      handler: async ({ principal, params }) => {
        await aliases.delete(principal, params.roomAlias);
        return {};
      },
    }),
    /** GET /_matrix/client/v3/rooms/{roomId}/aliases */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/rooms/{roomId}/aliases',
      auth: 'accessToken',
      operationId: 'getLocalAliases',
      handler: async ({ principal, params }) => ({ aliases: await aliases.localAliases(principal, params.roomId) }),
    }),
  ];
}
