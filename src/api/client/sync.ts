/**
 * Client-Server endpoints of the sync feature: GET /sync.
 * Spec: shared/matrix-spec/data/api/client-server/sync.yaml; token formats in src/services/sync.ts.
 */
import type { Services } from '../../services/index.js';
import { PRESENCE_STATES } from '../../services/presence.js';
import { parseSyncToken } from '../../services/sync.js';
import type { AnyEndpoint } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';
import { invalidParam } from '../errors.js';
import { queryBool, queryEnum, queryInt } from '../request.js';

export function syncEndpoints(s: Services): AnyEndpoint[] {
  return [
    /** GET /_matrix/client/v3/sync */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/sync',
      auth: 'accessToken',
      operationId: 'sync',
      handler(ctx) {
        const { principal, query } = ctx;
        const sinceRaw = query.get('since');
        let since;
        if (sinceRaw !== null && sinceRaw !== '') {
          since = parseSyncToken(sinceRaw);
          if (!since) throw invalidParam('since', 'is not a valid sync token');
        }
        const request = {
          since,
          timeout: queryInt(query, 'timeout', 0, { min: 0 }),
          fullState: queryBool(query, 'full_state', false),
          setPresence: queryEnum(query, 'set_presence', PRESENCE_STATES, 'online'),
          filter: query.get('filter') ?? undefined,
          useStateAfter: queryBool(query, 'use_state_after', false),
        };
        // The signal only when the sync waits: reading it makes the host's AbortController (http-host.ts).
        return s.sync.sync(principal, request, () => ctx.signal);
      },
    }),
  ];
}

