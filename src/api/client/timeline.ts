/**
 * Client-Server endpoints for reading a room's history (handlers in src/services/timeline.ts): /messages,
 * /context, /timestamp_to_event, /relations and /threads.
 * Spec: data/api/client-server/{message_pagination,event_context,room_event_by_timestamp,relations,
 * threads_list}.yaml. Query parameters are read here; rooms, events and permissions are the service's business.
 */
import { isValidRoomId } from '../../core/identifiers.js';
import type { Services } from '../../services/index.js';
import type { RelationsOptions } from '../../services/timeline.js';
import { parsePaginationToken, parseRoomEventFilter } from '../../services/timeline.js';
import type { AnyEndpoint } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';
import { invalidParam } from '../errors.js';
import { queryBool, queryEnum, queryInt, queryJson, requireQuery } from '../request.js';

/** Largest page any of these endpoints returns; larger limits are lowered to it (as Synapse's MAX_LIMIT). */
export const MAX_LIMIT = 1000;

const DIRS = ['b', 'f'] as const;

function roomIdParam(roomId: string): string {
  if (!isValidRoomId(roomId)) throw invalidParam('roomId', 'is not a valid room ID');
  return roomId;
}

function tokenParam(query: URLSearchParams, name: string): number | undefined {
  const raw = query.get(name);
  return raw === null || raw === '' ? undefined : parsePaginationToken(raw, name);
}

function limitParam(query: URLSearchParams, fallback: number, min: number): number {
  return Math.min(queryInt(query, 'limit', fallback, { min }), MAX_LIMIT);
}

function relationsOptions(query: URLSearchParams, relType?: string, eventType?: string): RelationsOptions {
  const recurse = query.has('recurse') ? queryBool(query, 'recurse', false) : undefined;
  return {
    relType,
    eventType,
    from: tokenParam(query, 'from'),
    to: tokenParam(query, 'to'),
    // Synapse's default page of relations.
    limit: limitParam(query, 5, 0),
    dir: queryEnum(query, 'dir', DIRS, 'b'),
    recurse,
  };
}

export function timelineEndpoints(s: Services): AnyEndpoint[] {
  const timeline = s.timeline;
  return [
    /** GET /_matrix/client/v3/rooms/{roomId}/messages */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/rooms/{roomId}/messages',
      auth: 'accessToken',
      operationId: 'getRoomEvents',
      handler: ({ principal, params, query }) => {
        const roomId = roomIdParam(params.roomId);
        requireQuery(query, 'dir');
        return timeline.messages(principal, roomId, {
          dir: queryEnum(query, 'dir', DIRS, 'b'),
          from: tokenParam(query, 'from'),
          to: tokenParam(query, 'to'),
          limit: limitParam(query, 10, 0),
          filter: parseRoomEventFilter(queryJson(query, 'filter')),
        });
      },
    }),
    /** GET /_matrix/client/v3/rooms/{roomId}/context/{eventId} */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/rooms/{roomId}/context/{eventId}',
      auth: 'accessToken',
      operationId: 'getEventContext',
      handler: ({ principal, params, query }) =>
        timeline.context(
          principal,
          roomIdParam(params.roomId),
          params.eventId,
          limitParam(query, 10, 0),
          parseRoomEventFilter(queryJson(query, 'filter')),
        ),
    }),
    /** GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v1/rooms/{roomId}/timestamp_to_event',
      auth: 'accessToken',
      operationId: 'getEventByTimestamp',
      handler: ({ principal, params, query }) => {
        const roomId = roomIdParam(params.roomId);
        requireQuery(query, 'ts');
        requireQuery(query, 'dir');
        const ts = queryInt(query, 'ts', 0, { min: 0 });
        return timeline.timestampToEvent(principal, roomId, ts, queryEnum(query, 'dir', DIRS, 'f'));
      },
    }),
    /** GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId} */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v1/rooms/{roomId}/relations/{eventId}',
      auth: 'accessToken',
      operationId: 'getRelatingEvents',
      handler: ({ principal, params, query }) =>
        timeline.relations(principal, roomIdParam(params.roomId), params.eventId, relationsOptions(query)),
    }),
    /** GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType} */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}',
      auth: 'accessToken',
      operationId: 'getRelatingEventsWithRelType',
      handler: ({ principal, params, query }) =>
        timeline.relations(principal, roomIdParam(params.roomId), params.eventId, relationsOptions(query, params.relType)),
    }),
    /** GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType} */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}',
      auth: 'accessToken',
      operationId: 'getRelatingEventsWithRelTypeAndEventType',
      handler: ({ principal, params, query }) =>
        timeline.relations(
          principal,
          roomIdParam(params.roomId),
          params.eventId,
          relationsOptions(query, params.relType, params.eventType),
        ),
    }),
    /** GET /_matrix/client/v1/rooms/{roomId}/threads */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v1/rooms/{roomId}/threads',
      auth: 'accessToken',
      operationId: 'getThreadRoots',
      handler: ({ principal, params, query }) =>
        timeline.threads(principal, roomIdParam(params.roomId), {
          include: queryEnum(query, 'include', ['all', 'participated'] as const, 'all'),
          // threads_list.yaml: "Must be an integer greater than zero"; Synapse's default page is 5.
          limit: limitParam(query, 5, 1),
          from: tokenParam(query, 'from'),
        }),
    }),
  ];
}
