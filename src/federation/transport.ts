/**
 * The seam between federation semantics (src/federation: the spec's Server-Server API — what to send, what to accept)
 * and the network that carries it (src/net: libp2p streams and gossipsub in Node and the browser, or an in-memory
 * network in tests). Nothing here imports a platform or libp2p.
 *
 * Requests carry the spec's federation paths and JSON bodies unchanged
 * (shared/matrix-spec/data/api/server-server/*.yaml), e.g. `PUT /_matrix/federation/v1/send/{txnId}`. The caller's
 * server name is NOT in the request: the receiving transport takes it from the authenticated connection (a Hearth
 * server name is derived from the same ed25519 key as the libp2p peer ID, so Noise authenticates it) and passes it
 * to `FederationInbound.handleRequest` as `origin`. This replaces the spec's X-Matrix Authorization header; event
 * signatures are still verified on every PDU.
 */
import type { JsonObject, JsonValue } from '../core/json.js';

export type FederationMethod = 'GET' | 'PUT' | 'POST' | 'DELETE';

export interface FederationRequest {
  readonly method: FederationMethod;
  /** Path and query, e.g. `/_matrix/federation/v1/state_ids/!r:x?event_id=%24e`. */
  readonly path: string;
  readonly body?: JsonObject;
}

export interface FederationResponse {
  readonly status: number;
  /** The spec's response body, or a Matrix error `{ errcode, error }` when status ≥ 400. */
  readonly body: JsonValue;
}

export interface RequestOptions {
  readonly signal?: AbortSignal;
  /** Default chosen by the transport (a few seconds). */
  readonly timeoutMs?: number;
}

/** Thrown (rejected) by `request` when the destination cannot be reached or does not answer in time. */
export class UnreachableError extends Error {
  constructor(
    readonly destination: string,
    message: string,
  ) {
    super(message);
    this.name = 'UnreachableError';
  }
}

/** What the homeserver uses to talk to other servers. Implemented by src/net (libp2p) and by test networks. */
export interface FederationTransport {
  /** Sends one request to a server by its name and waits for the response. */
  request(destination: string, req: FederationRequest, opts?: RequestOptions): Promise<FederationResponse>;
  /**
   * Fans a message out to every peer subscribed to the room's topic (gossipsub). Best effort: callers still send
   * `/send` transactions to servers that must get it (see `publishTo` for which ones). The message is a JSON object (a transaction body:
   * `{ origin, origin_server_ts, pdus, edus }`).
   */
  publish(roomId: string, message: JsonObject): Promise<void>;
  /**
   * `publish`, resolving with the servers the message was handed to directly (gossipsub's recipients). Callers
   * treat those as delivered and send `/send` transactions only to the room's other servers; a server that then
   * misses it fills the gap with get_missing_events. Rejects when the message could not be published (e.g. over
   * the gossip size limit): callers then send to every server. Optional: without it, callers send to all.
   */
  publishTo?(roomId: string, message: JsonObject): Promise<string[]>;
  /** Start/stop receiving the room's gossip (delivered to `FederationInbound.handleGossip`). */
  subscribe(roomId: string): void;
  unsubscribe(roomId: string): void;
  /** Server names currently connected (for status displays and choosing who to ask). */
  connectedServers(): string[];
}

/** What the network delivers to the homeserver. Implemented by src/federation. */
export interface FederationInbound {
  /** `origin` is the authenticated server name of the peer that sent the request. */
  handleRequest(origin: string, req: FederationRequest): Promise<FederationResponse>;
  /** A gossip message for a room, from the authenticated peer `from` (not necessarily its origin). */
  handleGossip(roomId: string, from: string, message: JsonObject): Promise<void>;
  /** A server connected (e.g. came back online): a chance to send it what it missed. */
  peerConnected?(serverName: string): void;
}
