/**
 * Client-Server published room directory endpoints (handlers in src/services/directory.ts).
 * Spec: data/api/client-server/list_public_rooms.yaml.
 */
import type { Services } from '../../services/index.js';
import type { AnyEndpoint } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';
import { queryInt } from '../request.js';

export function directoryEndpoints(s: Services): AnyEndpoint[] {
  const directory = s.directory;
  return [
    /** GET /_matrix/client/v3/directory/list/room/{roomId} */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/directory/list/room/{roomId}',
      auth: 'none',
      operationId: 'getRoomVisibilityOnDirectory',
      handler: ({ params }) => directory.getVisibility(params.roomId),
    }),
    /** PUT /_matrix/client/v3/directory/list/room/{roomId} */
    defineEndpoint({
      method: 'PUT',
      path: '/_matrix/client/v3/directory/list/room/{roomId}',
      auth: 'accessToken',
      operationId: 'setRoomVisibilityOnDirectory',
      handler: async ({ principal, params, body }) => {
        // The validator allows only 'public' and 'private'; absent means public (list_public_rooms.yaml).
        const visibility = body.visibility === 'private' ? 'private' : 'public';
        await directory.setVisibility(principal, params.roomId, visibility);
        return {};
      },
    }),
    /** GET /_matrix/client/v3/publicRooms */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/publicRooms',
      auth: 'none',
      operationId: 'getPublicRooms',
      handler: ({ query }) =>
        directory.publicRooms({
          server: query.get('server') ?? undefined,
          limit: queryInt(query, 'limit', undefined, { min: 0 }),
          since: query.get('since') ?? undefined,
        }),
    }),
    /** POST /_matrix/client/v3/publicRooms */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/publicRooms',
      auth: 'accessToken',
      operationId: 'queryPublicRooms',
      handler: ({ query, body }) =>
        directory.publicRooms({
          server: query.get('server') ?? undefined,
          limit: typeof body.limit === 'number' ? body.limit : undefined,
          since: typeof body.since === 'string' ? body.since : undefined,
          filter: body.filter,
          includeAllNetworks: body.include_all_networks === true,
          thirdPartyInstanceId: typeof body.third_party_instance_id === 'string' ? body.third_party_instance_id : undefined,
        }),
    }),
  ];
}
