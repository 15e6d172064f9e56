/**
 * The messages between the service worker's homeserver (sw/network-bridge.ts) and the tab that runs the libp2p node
 * (the "network host": leader.ts). The worker cannot run the node itself (no WebRTC in workers, and it is stopped
 * when idle: shared/PLATFORM-NOTES.md), so the federation transport it uses forwards to the leader tab.
 *
 * Setup, on the worker's global message event (`navigator.serviceWorker.controller.postMessage`):
 * - `hearth:network-hello` with one transferred MessagePort: the leader offers its dedicated port. The worker answers
 *   on that port with `identity` (seed, server name, rooms to follow) once its homeserver is up.
 * - `hearth:network-keepalive` (every ~10 s, which keeps the worker alive) with a reply port: the worker answers
 *   `{ attached }`; false means the worker restarted and lost the port, so the leader says hello again.
 * The worker asks window clients for a leader with `hearth:network-wanted` when it has none and must send.
 *
 * Everything else travels on the dedicated port, never through `fetch`: a page's `/_matrix` requests cannot inject
 * federation traffic, and `origin` on inbound requests is the server name the leader took from the Noise-
 * authenticated libp2p connection.
 */
import type { JsonObject } from '../../core/json.js';
import type { FederationRequest, FederationResponse } from '../../federation/transport.js';

export const HELLO = 'hearth:network-hello';
export const KEEPALIVE = 'hearth:network-keepalive';
export const WANTED = 'hearth:network-wanted';

/** How often the leader pings the worker: Chromium stops an idle worker ~30 s after its last event. */
export const KEEPALIVE_MS = 10_000;

export interface SerializedError {
  name: string;
  message: string;
}

/** Worker → leader, on the dedicated port. */
export type ToLeader =
  | { t: 'identity'; seed: Uint8Array; serverName: string; rooms: string[] }
  | { t: 'request'; id: number; destination: string; req: FederationRequest; timeoutMs?: number }
  /** Answered by a `response` with `reached`: the servers gossipsub handed the message to (see below). */
  | { t: 'publish'; id: number; roomId: string; message: JsonObject }
  | { t: 'subscribe'; roomId: string }
  | { t: 'unsubscribe'; roomId: string }
  | { t: 'wanted-servers'; id: number; servers: string[] }
  | { t: 'inbound-response'; id: number; res: FederationResponse };

/**
 * Leader → worker, on the dedicated port. A `publish` is answered by a `response` carrying `reached` (the server names
 * gossipsub sent it to directly: FederationTransport.publishTo). Leaders from before `reached` existed answer without
 * it; the worker then treats the publish as reaching nobody for sure, and the sender uses `/send` for everyone.
 */
export type ToWorker =
  | { t: 'response'; id: number; res?: FederationResponse; reached?: string[]; error?: SerializedError }
  | { t: 'inbound'; id: number; origin: string; req: FederationRequest }
  | { t: 'gossip'; roomId: string; from: string; message: JsonObject }
  | { t: 'peer-connected'; serverName: string }
  | { t: 'servers'; servers: string[] }
  | { t: 'wanted'; id: number };

/** One connected peer as the status area shows it. */
export interface PeerStatus {
  /** The Hearth server name, or the peer ID for peers that are not Hearth servers. */
  id: string;
  serverName?: string;
  /** websockets, webrtc, relayed (through a circuit relay), tcp. */
  transport: string;
  remoteAddr: string;
}

/** What the leader broadcasts to every tab (BroadcastChannel {@link STATUS_CHANNEL}). */
export interface NetworkStatusMessage {
  type: 'status';
  serverName?: string;
  peers: PeerStatus[];
}

export const STATUS_CHANNEL = 'hearth-network-status';
