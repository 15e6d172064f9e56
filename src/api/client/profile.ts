/**
 * Client-Server profile endpoints (handlers in src/services/profile.ts).
 * Spec: data/api/client-server/profile.yaml. `/profile/{userId}/displayname` and `/avatar_url` are the
 * `{keyName}` endpoints since v1.16, so one set of handlers serves the defined and the custom fields.
 */
import type { Services } from '../../services/index.js';
import type { AnyEndpoint } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';

export function profileEndpoints(s: Services): AnyEndpoint[] {
  const profile = s.accounts.profile;
  return [
    /** GET /_matrix/client/v3/profile/{userId} */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/profile/{userId}',
      auth: 'none',
      operationId: 'getUserProfile',
      handler: ({ params }) => profile.getProfile(params.userId),
    }),
    /** GET /_matrix/client/v3/profile/{userId}/{keyName} */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/profile/{userId}/{keyName}',
      auth: 'none',
      operationId: 'getProfileField',
      handler: ({ params }) => profile.getField(params.userId, params.keyName),
    }),
    /** PUT /_matrix/client/v3/profile/{userId}/{keyName} */
    defineEndpoint({
      method: 'PUT',
      path: '/_matrix/client/v3/profile/{userId}/{keyName}',
      auth: 'accessToken',
      operationId: 'setProfileField',
      // The schema's minProperties would answer `{}` with M_INVALID_PARAM; the spec wants M_MISSING_PARAM for a
      // body without the key, which the service checks (the router still insists on a JSON object).
      validateBody: null,
      handler: async ({ principal, params, body }) => {
        await profile.setField(principal, params.userId, params.keyName, body);
        return {};
      },
    }),
    /** DELETE /_matrix/client/v3/profile/{userId}/{keyName} */
    defineEndpoint({
      method: 'DELETE',
      path: '/_matrix/client/v3/profile/{userId}/{keyName}',
      auth: 'accessToken',
      operationId: 'deleteProfileField',
      handler: async ({ principal, params }) => {
        await profile.deleteField(principal, params.userId, params.keyName);
        return {};
      },
    }),
  ];
}
