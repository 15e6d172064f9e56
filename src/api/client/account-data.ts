/**
 * Client-Server account data and room tag endpoints (handlers in src/services/account-data.ts).
 * Spec: data/api/client-server/account-data.yaml, tags.yaml.
 */
import type { Services } from '../../services/index.js';
import type { AnyEndpoint } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';

export function accountDataEndpoints(s: Services): AnyEndpoint[] {
  const data = s.accounts.accountData;
  return [
    /** GET /_matrix/client/v3/user/{userId}/account_data/{type} */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/user/{userId}/account_data/{type}',
      auth: 'accessToken',
      operationId: 'getAccountData',
      handler: ({ principal, params }) => data.get(principal, params.userId, undefined, params.type),
    }),
    /** PUT /_matrix/client/v3/user/{userId}/account_data/{type} */
    defineEndpoint({
      method: 'PUT',
      path: '/_matrix/client/v3/user/{userId}/account_data/{type}',
      auth: 'accessToken',
      operationId: 'setAccountData',
      handler: async ({ principal, params, body }) => {
        await data.put(principal, params.userId, undefined, params.type, body);
        return {};
      },
    }),
    /** GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type} */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}',
      auth: 'accessToken',
      operationId: 'getAccountDataPerRoom',
      handler: ({ principal, params }) => data.get(principal, params.userId, params.roomId, params.type),
    }),
    /** PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type} */
    defineEndpoint({
      method: 'PUT',
      path: '/_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}',
      auth: 'accessToken',
      operationId: 'setAccountDataPerRoom',
      handler: async ({ principal, params, body }) => {
        await data.put(principal, params.userId, params.roomId, params.type, body);
        return {};
      },
    }),
    /** GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags',
      auth: 'accessToken',
      operationId: 'getRoomTags',
      handler: ({ principal, params }) => data.getTags(principal, params.userId, params.roomId),
    }),
    /** PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag} */
    defineEndpoint({
      method: 'PUT',
      path: '/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}',
      auth: 'accessToken',
      operationId: 'setRoomTag',
      handler: async ({ principal, params, body }) => {
        await data.setTag(principal, params.userId, params.roomId, params.tag, body);
        return {};
      },
    }),
    /** DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag} */
    defineEndpoint({
      method: 'DELETE',
      path: '/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}',
      auth: 'accessToken',
      operationId: 'deleteRoomTag',
      handler: async ({ principal, params }) => {
        await data.deleteTag(principal, params.userId, params.roomId, params.tag);
        return {};
      },
    }),
  ];
}
