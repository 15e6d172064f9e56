/**
 * Client-Server filter endpoints (handlers in src/services/filters.ts).
 * Spec: data/api/client-server/filter.yaml.
 */
import type { Services } from '../../services/index.js';
import type { AnyEndpoint } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';

export function filterEndpoints(s: Services): AnyEndpoint[] {
  const filters = s.accounts.filters;
  return [
    /** POST /_matrix/client/v3/user/{userId}/filter */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/user/{userId}/filter',
      auth: 'accessToken',
      operationId: 'defineFilter',
      handler: async ({ principal, params, body }) => ({
        filter_id: await filters.create(principal, params.userId, body),
      }),
    }),
    /** GET /_matrix/client/v3/user/{userId}/filter/{filterId} */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/user/{userId}/filter/{filterId}',
      auth: 'accessToken',
      operationId: 'getFilter',
      handler: ({ principal, params }) => filters.get(principal, params.userId, params.filterId),
    }),
  ];
}
