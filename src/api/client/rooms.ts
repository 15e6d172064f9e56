/**
 * Client-Server endpoints of rooms: creation, sending, state, single events, redaction, membership and member
 * lists (handlers in src/services/rooms.ts, create-room.ts, membership.ts).
 * Spec: data/api/client-server/{create_room,room_send,room_state,rooms,redaction,joining,inviting,leaving,kicking,
 * banning,knocking,list_joined_rooms}.yaml.
 *
 * Bodies are validated against the spec's schemas by the router; path parameters are checked here: a room ID that
 * is not one is 400 M_INVALID_PARAM (as Synapse answers).
 */
import { isValidRoomId } from '../../core/identifiers.js';
import type { Services } from '../../services/index.js';
import { parsePaginationToken } from '../../services/timeline.js';
import type { AnyEndpoint } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';
import { invalidParam } from '../errors.js';
import { queryEnum } from '../request.js';

const MEMBERSHIPS = ['join', 'invite', 'knock', 'leave', 'ban'] as const;

/** Servers to join or knock through: the `via` parameters and the older `server_name` ones (joining.yaml). */
function viaServers(query: URLSearchParams): string[] {
  return [...query.getAll('via'), ...query.getAll('server_name')].filter((s) => s !== '');
}

function roomIdParam(roomId: string): string {
  if (!isValidRoomId(roomId)) throw invalidParam('roomId', 'is not a valid room ID');
  return roomId;
}

export function roomEndpoints(s: Services): AnyEndpoint[] {
  const rooms = s.rooms;
  const m = rooms.membership;
  return [
    /** POST /_matrix/client/v3/createRoom */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/createRoom',
      auth: 'accessToken',
      operationId: 'createRoom',
      handler: ({ principal, body }) => rooms.createRoom(principal, body),
    }),
    /** PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId} */
    defineEndpoint({
      method: 'PUT',
      path: '/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}',
      auth: 'accessToken',
      operationId: 'sendMessage',
      handler: async ({ principal, params, body }) => ({
        event_id: await rooms.sendMessage(principal, roomIdParam(params.roomId), params.eventType, params.txnId, body),
      }),
    }),
    /** PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey} */
    defineEndpoint({
      method: 'PUT',
      path: '/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}',
      auth: 'accessToken',
      operationId: 'setRoomStateWithKey',
      handler: async ({ principal, params, body }) => ({
        event_id: await rooms.setState(principal, roomIdParam(params.roomId), params.eventType, params.stateKey, body),
      }),
    }),
    /** GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey} */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}',
      auth: 'accessToken',
      operationId: 'getRoomStateWithKey',
      handler: ({ principal, params, query }) =>
        rooms.getStateEvent(
          principal,
          roomIdParam(params.roomId),
          params.eventType,
          params.stateKey,
          queryEnum(query, 'format', ['content', 'event'] as const, 'content'),
        ),
    }),
    /** GET /_matrix/client/v3/rooms/{roomId}/state */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/rooms/{roomId}/state',
      auth: 'accessToken',
      operationId: 'getRoomState',
      // The spec's answer is a bare JSON array.
      handler: async ({ principal, params }) => rooms.getState(principal, roomIdParam(params.roomId)),
    }),
    /** GET /_matrix/client/v3/rooms/{roomId}/event/{eventId} */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/rooms/{roomId}/event/{eventId}',
      auth: 'accessToken',
      operationId: 'getOneRoomEvent',
      handler: ({ principal, params }) => rooms.getRoomEvent(principal, roomIdParam(params.roomId), params.eventId),
    }),
    /** PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId} */
    defineEndpoint({
      method: 'PUT',
      path: '/_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}',
      auth: 'accessToken',
      operationId: 'redactEvent',
      handler: async ({ principal, params, body }) => ({
        event_id: await rooms.redactEvent(principal, roomIdParam(params.roomId), params.eventId, params.txnId, body),
      }),
    }),
    /** GET /_matrix/client/v3/rooms/{roomId}/members */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/rooms/{roomId}/members',
      auth: 'accessToken',
      operationId: 'getMembersByRoom',
      handler: async ({ principal, params, query }) => {
        const at = query.get('at');
        return {
          chunk: await rooms.getMembers(principal, roomIdParam(params.roomId), {
            at: at === null ? undefined : parsePaginationToken(at, 'at'),
            membership: queryEnum(query, 'membership', MEMBERSHIPS),
            notMembership: queryEnum(query, 'not_membership', MEMBERSHIPS),
          }),
        };
      },
    }),
    /** GET /_matrix/client/v3/rooms/{roomId}/joined_members */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/rooms/{roomId}/joined_members',
      auth: 'accessToken',
      operationId: 'getJoinedMembersByRoom',
      handler: async ({ principal, params }) => ({
        joined: await rooms.getJoinedMembers(principal, roomIdParam(params.roomId)),
      }),
    }),
    /** GET /_matrix/client/v3/joined_rooms */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/joined_rooms',
      auth: 'accessToken',
      operationId: 'getJoinedRooms',
      handler: async ({ principal }) => ({ joined_rooms: await rooms.joinedRooms(principal) }),
    }),
    /** POST /_matrix/client/v3/join/{roomIdOrAlias} */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/join/{roomIdOrAlias}',
      auth: 'accessToken',
      operationId: 'joinRoom',
      handler: async ({ principal, params, body, query }) => ({
        room_id: await m.join(principal, params.roomIdOrAlias, body, viaServers(query)),
      }),
    }),
    /** POST /_matrix/client/v3/rooms/{roomId}/join */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/rooms/{roomId}/join',
      auth: 'accessToken',
      operationId: 'joinRoomById',
      handler: async ({ principal, params, body }) => ({
        room_id: await m.join(principal, roomIdParam(params.roomId), body),
      }),
    }),
    /** POST /_matrix/client/v3/knock/{roomIdOrAlias} */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/knock/{roomIdOrAlias}',
      auth: 'accessToken',
      operationId: 'knockRoom',
      handler: async ({ principal, params, body, query }) => ({
        room_id: await m.knock(principal, params.roomIdOrAlias, body, viaServers(query)),
      }),
    }),
    /** POST /_matrix/client/v3/rooms/{roomId}/invite */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/rooms/{roomId}/invite',
      auth: 'accessToken',
      operationId: 'inviteUser',
      handler: async ({ principal, params, body }) => {
        await m.invite(principal, roomIdParam(params.roomId), body);
        return {};
      },
    }),
    /** POST /_matrix/client/v3/rooms/{roomId}/leave */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/rooms/{roomId}/leave',
      auth: 'accessToken',
      operationId: 'leaveRoom',
      handler: async ({ principal, params, body }) => {
        await m.leave(principal, roomIdParam(params.roomId), body);
        return {};
      },
    }),
    /** POST /_matrix/client/v3/rooms/{roomId}/forget */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/rooms/{roomId}/forget',
      auth: 'accessToken',
      operationId: 'forgetRoom',
      handler: async ({ principal, params }) => {
        await m.forget(principal, roomIdParam(params.roomId));
        return {};
      },
    }),
    /** POST /_matrix/client/v3/rooms/{roomId}/kick */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/rooms/{roomId}/kick',
      auth: 'accessToken',
      operationId: 'kick',
      handler: async ({ principal, params, body }) => {
        await m.kick(principal, roomIdParam(params.roomId), body);
        return {};
      },
    }),
    /** POST /_matrix/client/v3/rooms/{roomId}/ban */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/rooms/{roomId}/ban',
      auth: 'accessToken',
      operationId: 'ban',
      handler: async ({ principal, params, body }) => {
        await m.ban(principal, roomIdParam(params.roomId), body);
        return {};
      },
    }),
    /** POST /_matrix/client/v3/rooms/{roomId}/unban */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/rooms/{roomId}/unban',
      auth: 'accessToken',
      operationId: 'unban',
      handler: async ({ principal, params, body }) => {
        await m.unban(principal, roomIdParam(params.roomId), body);
        return {};
      },
    }),
  ];
}
