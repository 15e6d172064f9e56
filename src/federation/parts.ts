/**
 * The components the federation modules share (the js-libp2p "components" shape: each module takes what it uses),
 * and small helpers used by several of them.
 */
import type { Pdu } from '../core/event.js';
import type { JsonObject } from '../core/json.js';
import type { AccountsService } from '../services/accounts.js';
import type { ServiceContext } from '../services/context.js';
import type { RoomsService } from '../services/rooms.js';
import type { SyncService } from '../services/sync.js';
import type { RoomServers } from './access.js';
import type { Ingest } from './ingest.js';
import type { RemoteClient } from './remote.js';
import type { FederationSender } from './sender.js';
import type { ServerAcls } from './server-acl.js';
import type { FederationTransport } from './transport.js';

export interface FederationParts {
  readonly ctx: ServiceContext;
  readonly rooms: RoomsService;
  readonly accounts: AccountsService;
  readonly sync: SyncService;
  readonly remote: RemoteClient;
  readonly ingest: Ingest;
  readonly sender: FederationSender;
  readonly servers: RoomServers;
  /** Rooms' server ACLs (server-acl.ts). */
  readonly acls: ServerAcls;
  readonly transport?: FederationTransport;
}

/** An event's JSON as it goes over the wire: our local `unsigned` additions stay home. */
export function wireJson(json: JsonObject): JsonObject {
  if (json.unsigned === undefined) return json;
  const { unsigned: _u, ...rest } = json;
  return rest;
}

/**
 * Sends events of a room to the other servers in it (gossip on the room's topic, /send to those it missed). `also`
 * adds servers that must get them although they are not joined (a kicked or banned user's server).
 */
export async function relay(
  parts: FederationParts,
  roomId: string,
  pdus: readonly Pdu[],
  opts: { except?: readonly string[]; also?: readonly string[] } = {},
): Promise<void> {
  if (pdus.length === 0 || !parts.remote.available) return;
  const servers = new Set(await parts.servers.get(roomId));
  for (const s of opts.also ?? []) servers.add(s);
  servers.delete(parts.ctx.serverName);
  for (const s of opts.except ?? []) servers.delete(s);
  if (servers.size === 0) return;
  const items = pdus.map((p) => ({ eventId: p.eventId, json: wireJson(p.json) }));
  parts.sender.fanOut(roomId, servers, items);
}
