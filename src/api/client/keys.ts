/**
 * Client-Server endpoints of end-to-end encryption: key upload, query, claim and changes, cross-signing, and
 * server-side key backups.
 * Spec: shared/matrix-spec/data/api/client-server/keys.yaml, cross_signing.yaml, key_backup.yaml;
 * content/client-server-api/modules/end_to_end_encryption.md.
 *
 * Guests may upload, query and claim keys (they can be in encrypted rooms); cross-signing and key backups need a
 * full account, as in Synapse.
 */
import type { JsonObject } from '../../core/json.js';
import type { KeysService } from '../../services/keys.js';
import { parseSyncToken } from '../../services/sync.js';
import type { AnyEndpoint, Principal } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';
import { guestAccessForbidden, invalidParam } from '../errors.js';
import { requireQuery } from '../request.js';

const V3 = '/_matrix/client/v3';

function fullAccount(principal: Principal): string {
  if (principal.isGuest) throw guestAccessForbidden();
  return principal.userId;
}

function syncPosition(query: URLSearchParams, name: string): number {
  const t = parseSyncToken(requireQuery(query, name));
  if (!t) throw invalidParam(name, 'is not a sync token');
  return t.pos;
}

export function keysEndpoints(s: { keys: KeysService }): AnyEndpoint[] {
  const { keys } = s;
  return [
    /** POST /_matrix/client/v3/keys/upload */
    defineEndpoint({
      method: 'POST',
      path: `${V3}/keys/upload`,
      auth: 'accessToken',
      operationId: 'uploadKeys',
      handler: ({ principal, body }) => keys.upload(principal, body),
    }),
    /** POST /_matrix/client/v3/keys/query */
    defineEndpoint({
      method: 'POST',
      path: `${V3}/keys/query`,
      auth: 'accessToken',
      operationId: 'queryKeys',
      handler: ({ principal, body, signal }) => keys.query(principal, body, signal),
    }),
    /** POST /_matrix/client/v3/keys/claim */
    defineEndpoint({
      method: 'POST',
      path: `${V3}/keys/claim`,
      auth: 'accessToken',
      operationId: 'claimKeys',
      handler: ({ body, signal }) => keys.claim(body, signal),
    }),
    /** GET /_matrix/client/v3/keys/changes?from=…&to=… */
    defineEndpoint({
      method: 'GET',
      path: `${V3}/keys/changes`,
      auth: 'accessToken',
      operationId: 'getKeysChanges',
      handler: ({ principal, query }) => keys.changes(principal.userId, syncPosition(query, 'from'), syncPosition(query, 'to')),
    }),
    /** POST /_matrix/client/v3/keys/device_signing/upload */
    defineEndpoint({
      method: 'POST',
      path: `${V3}/keys/device_signing/upload`,
      auth: 'accessToken',
      operationId: 'uploadCrossSigningKeys',
      handler: ({ principal, body }) => keys.uploadCrossSigningKeys(principal, body),
    }),
    /** POST /_matrix/client/v3/keys/signatures/upload */
    defineEndpoint({
      method: 'POST',
      path: `${V3}/keys/signatures/upload`,
      auth: 'accessToken',
      operationId: 'uploadCrossSigningSignatures',
      handler: ({ principal, body }) => {
        fullAccount(principal);
        return keys.uploadSignatures(principal, body);
      },
    }),

    // ---- Key backup: versions

    /** POST /_matrix/client/v3/room_keys/version */
    defineEndpoint({
      method: 'POST',
      path: `${V3}/room_keys/version`,
      auth: 'accessToken',
      operationId: 'postRoomKeysVersion',
      handler: ({ principal, body }) => keys.createBackup(fullAccount(principal), body),
    }),
    /** GET /_matrix/client/v3/room_keys/version */
    defineEndpoint({
      method: 'GET',
      path: `${V3}/room_keys/version`,
      auth: 'accessToken',
      operationId: 'getRoomKeysVersionCurrent',
      handler: ({ principal }) => keys.getBackup(fullAccount(principal), undefined),
    }),
    /** GET /_matrix/client/v3/room_keys/version/{version} */
    defineEndpoint({
      method: 'GET',
      path: `${V3}/room_keys/version/{version}`,
      auth: 'accessToken',
      operationId: 'getRoomKeysVersion',
      handler: ({ principal, params }) => keys.getBackup(fullAccount(principal), params.version),
    }),
    /** PUT /_matrix/client/v3/room_keys/version/{version} */
    defineEndpoint({
      method: 'PUT',
      path: `${V3}/room_keys/version/{version}`,
      auth: 'accessToken',
      operationId: 'putRoomKeysVersion',
      async handler({ principal, params, body }) {
        await keys.updateBackup(fullAccount(principal), params.version, body);
        return {};
      },
    }),
    /** DELETE /_matrix/client/v3/room_keys/version/{version} */
    defineEndpoint({
      method: 'DELETE',
      path: `${V3}/room_keys/version/{version}`,
      auth: 'accessToken',
      operationId: 'deleteRoomKeysVersion',
      async handler({ principal, params }) {
        await keys.deleteBackup(fullAccount(principal), params.version);
        return {};
      },
    }),

    // ---- Key backup: keys (every variant takes ?version=)

    /** PUT /_matrix/client/v3/room_keys/keys */
    defineEndpoint({
      method: 'PUT',
      path: `${V3}/room_keys/keys`,
      auth: 'accessToken',
      operationId: 'putRoomKeys',
      handler: ({ principal, query, body }) =>
        keys.putBackupKeys(fullAccount(principal), requireQuery(query, 'version'), body.rooms as JsonObject),
    }),
    /** GET /_matrix/client/v3/room_keys/keys */
    defineEndpoint({
      method: 'GET',
      path: `${V3}/room_keys/keys`,
      auth: 'accessToken',
      operationId: 'getRoomKeys',
      handler: ({ principal, query }) => keys.getBackupKeys(fullAccount(principal), requireQuery(query, 'version')),
    }),
    /** DELETE /_matrix/client/v3/room_keys/keys */
    defineEndpoint({
      method: 'DELETE',
      path: `${V3}/room_keys/keys`,
      auth: 'accessToken',
      operationId: 'deleteRoomKeys',
      handler: ({ principal, query }) => keys.deleteBackupKeys(fullAccount(principal), requireQuery(query, 'version')),
    }),
    /** PUT /_matrix/client/v3/room_keys/keys/{roomId} */
    defineEndpoint({
      method: 'PUT',
      path: `${V3}/room_keys/keys/{roomId}`,
      auth: 'accessToken',
      operationId: 'putRoomKeysByRoomId',
      handler: ({ principal, params, query, body }) =>
        keys.putBackupKeys(fullAccount(principal), requireQuery(query, 'version'), { [params.roomId]: body }),
    }),
    /** GET /_matrix/client/v3/room_keys/keys/{roomId} */
    defineEndpoint({
      method: 'GET',
      path: `${V3}/room_keys/keys/{roomId}`,
      auth: 'accessToken',
      operationId: 'getRoomKeysByRoomId',
      handler: ({ principal, params, query }) =>
        keys.getBackupKeys(fullAccount(principal), requireQuery(query, 'version'), params.roomId),
    }),
    /** DELETE /_matrix/client/v3/room_keys/keys/{roomId} */
    defineEndpoint({
      method: 'DELETE',
      path: `${V3}/room_keys/keys/{roomId}`,
      auth: 'accessToken',
      operationId: 'deleteRoomKeysByRoomId',
      handler: ({ principal, params, query }) =>
        keys.deleteBackupKeys(fullAccount(principal), requireQuery(query, 'version'), params.roomId),
    }),
    /** PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId} */
    defineEndpoint({
      method: 'PUT',
      path: `${V3}/room_keys/keys/{roomId}/{sessionId}`,
      auth: 'accessToken',
      operationId: 'putRoomKeyBySessionId',
      handler: ({ principal, params, query, body }) =>
        keys.putBackupKeys(fullAccount(principal), requireQuery(query, 'version'), {
          [params.roomId]: { sessions: { [params.sessionId]: body } },
        }),
    }),
    /** GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId} */
    defineEndpoint({
      method: 'GET',
      path: `${V3}/room_keys/keys/{roomId}/{sessionId}`,
      auth: 'accessToken',
      operationId: 'getRoomKeyBySessionId',
      handler: ({ principal, params, query }) =>
        keys.getBackupKeys(fullAccount(principal), requireQuery(query, 'version'), params.roomId, params.sessionId),
    }),
    /** DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId} */
    defineEndpoint({
      method: 'DELETE',
      path: `${V3}/room_keys/keys/{roomId}/{sessionId}`,
      auth: 'accessToken',
      operationId: 'deleteRoomKeyBySessionId',
      handler: ({ principal, params, query }) =>
        keys.deleteBackupKeys(fullAccount(principal), requireQuery(query, 'version'), params.roomId, params.sessionId),
    }),
  ];
}
