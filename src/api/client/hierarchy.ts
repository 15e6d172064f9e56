/**
 * The space hierarchy endpoint (handler in src/services/hierarchy.ts).
 * Spec: data/api/client-server/space_hierarchy.yaml; content/client-server-api/modules/spaces.md.
 */
import type { HierarchyService } from '../../services/hierarchy.js';
import type { AnyEndpoint } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';
import { queryBool, queryInt } from '../request.js';

export function hierarchyEndpoints(hierarchy: HierarchyService): AnyEndpoint[] {
  return [
    /** GET /_matrix/client/v1/rooms/{roomId}/hierarchy */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v1/rooms/{roomId}/hierarchy',
      auth: 'accessToken',
      operationId: 'getSpaceHierarchy',
      handler: ({ principal, params, query }) =>
        hierarchy.hierarchy(principal, {
          roomId: params.roomId,
          // Out of range values are refused here; large ones are capped by the service.
          limit: queryInt(query, 'limit', undefined, { min: 1 }),
          maxDepth: queryInt(query, 'max_depth', undefined, { min: 0 }),
          suggestedOnly: queryBool(query, 'suggested_only', false),
          from: query.get('from') ?? undefined,
        }),
    }),
  ];
}
