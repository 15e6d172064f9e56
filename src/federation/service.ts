/**
 * The homeserver's federation: what the network delivers (FederationInbound — requests, gossip, peers coming
 * back) and what our users' actions send out. Built by createHomeserver from the services and the transport
 * (transport.ts); without a transport it still answers requests handed to it, but reaches no one.
 *
 * Spec: shared/matrix-spec/content/server-server-api.md. The parts: server-api.ts (endpoints), resident.ts (what we
 * answer as a room's resident), ingest.ts (checks on receipt and persisting), membership.ts (remote joins,
 * invites, leaves, knocks), sender.ts (gossip and /send queues), edus.ts (typing, receipts, presence, devices,
 * to-device), access.ts (servers in a room, visibility).
 */
import { tooLarge, badJson, invalidParam, unknown, unrecognized } from '../api/errors.js';
import type { Pdu } from '../core/event.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type { ServerIdentity } from '../core/server-key.js';
import { isHearthServerName } from '../core/server-key.js';
import { pduFromJson } from '../core/event-id.js';
import type { AccountsService, UserRecord } from '../services/accounts.js';
import type { ServiceContext } from '../services/context.js';
import type { DirectoryService } from '../services/directory.js';
import type { KeysService } from '../services/keys.js';
import type { RoomsService } from '../services/rooms.js';
import type { SyncService } from '../services/sync.js';
import type { TimelineService } from '../services/timeline.js';
import type { UserRoomRecord } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import { RoomServers } from './access.js';
import { domainOf } from './checks.js';
import { Edus } from './edus.js';
import type { PduOutcome } from './ingest.js';
import { Ingest } from './ingest.js';
import { FederationKeys } from './keys.js';
import { History } from './history.js';
import { FederationDirectory } from './directory.js';
import { FederationHierarchy } from './hierarchy.js';
import type { HierarchyService } from '../services/hierarchy.js';
import { RemoteMembership } from './membership.js';
import type { FederationParts } from './parts.js';
import { relay } from './parts.js';
import { RemoteClient, RemoteError } from './remote.js';
import { Resident } from './resident.js';
import { ServerAcls } from './server-acl.js';
import { FederationSender, MAX_TXN_EDUS, MAX_TXN_PDUS } from './sender.js';
import { traceArrival, traceEach } from './trace.js';
import type { SenderOptions } from './sender.js';
import type { FederationHandlers } from './server-api.js';
import { federationEndpoints, FederationRouter, readAliasWith, readUserWith } from './server-api.js';
import type { FederationInbound, FederationRequest, FederationResponse, FederationTransport } from './transport.js';

export interface FederationComponents {
  ctx: ServiceContext;
  rooms: RoomsService;
  accounts: AccountsService;
  sync: SyncService;
  /** E2EE keys: answered for our users, and asked of other servers for theirs (keys.ts). */
  keys?: KeysService;
  /** /messages asks for history from before a remote join through it (history.ts). */
  timeline?: TimelineService;
  /** The published room directory, served to other servers and fetched from them (directory.ts). */
  directory?: DirectoryService;
  /** Space hierarchies: ours served to other servers, theirs asked for our clients' walks (hierarchy.ts). */
  hierarchy?: HierarchyService;
  /** Absent: nothing can be sent (requests handed to `handleRequest` are still answered). */
  network?: FederationTransport;
}

export type FederationInit = SenderOptions;

export class FederationService implements FederationInbound, FederationHandlers {
  readonly parts: FederationParts;
  readonly ingest: Ingest;
  readonly sender: FederationSender;
  readonly servers: RoomServers;
  readonly acls: ServerAcls;
  readonly resident: Resident;
  readonly membership: RemoteMembership;
  readonly edus: Edus;
  readonly keys?: FederationKeys;
  readonly history: History;
  readonly directory?: FederationDirectory;
  readonly spaces: FederationHierarchy;
  private readonly router: FederationRouter;
  /** Responses of recent transactions by origin and txnId: a retried /send is answered, not processed again. */
  private readonly recentTxns = new Map<string, Promise<JsonObject>>();

  constructor(
    private readonly c: FederationComponents,
    init: FederationInit = {},
  ) {
    const { ctx } = c;
    const remote = new RemoteClient(c.network, ctx.serverName);
    this.servers = new RoomServers(ctx.kv);
    this.ingest = new Ingest(ctx, c.rooms, remote);
    this.acls = new ServerAcls(ctx.kv, (roomId) => this.ingest.versionOf(roomId));
    this.sender = new FederationSender(ctx, remote, c.network, init);
    this.parts = {
      ctx,
      rooms: c.rooms,
      accounts: c.accounts,
      sync: c.sync,
      remote,
      ingest: this.ingest,
      sender: this.sender,
      servers: this.servers,
      acls: this.acls,
      transport: c.network,
    };
    this.resident = new Resident(this.parts);
    this.membership = new RemoteMembership(this.parts, this.resident);
    this.edus = new Edus(this.parts);
    if (c.keys) this.keys = new FederationKeys(ctx, c.keys, remote);
    this.history = new History(this.parts);
    if (c.directory) this.directory = new FederationDirectory(ctx, c.directory, remote);
    this.spaces = new FederationHierarchy(ctx, remote);
    this.router = new FederationRouter(federationEndpoints(this), ctx.logger);
    this.ingest.hooks.persisted = (roomId, pdus, stateTypes) => this.afterRemoteEvents(roomId, pdus, stateTypes);
  }

  get serverName(): string {
    return this.c.ctx.serverName;
  }

  get identity(): ServerIdentity {
    return this.c.ctx.identity;
  }

  now(): number {
    return this.c.ctx.clock.now();
  }

  /** Hooks into the services, resumes queued deliveries and gossip subscriptions. */
  async start(): Promise<void> {
    const { rooms } = this.c;
    if (this.c.network) rooms.federation = this.membership;
    rooms.committed.push((events) => this.afterLocalEvents(events));
    if (!this.c.network) return;
    this.c.accounts.profile.remoteProfile = (userId) => this.remoteProfile(userId);
    if (this.keys) this.c.keys?.useRemote(this.keys);
    if (this.c.directory && this.directory) {
      const d = this.directory;
      this.c.directory.remoteDirectory = (server, q) => d.fetch(server, q);
    }
    if (this.c.hierarchy) this.c.hierarchy.remoteHierarchy = (roomId, via, so) => this.spaces.fetch(roomId, via, so);
    if (this.c.timeline) this.c.timeline.fetchHistory = (roomId, limit) => this.history.fetchHistory(roomId, limit);
    await this.sender.start();
    await this.edus.start();
    // Rooms our users are joined to: follow their gossip.
    const roomIds = await this.c.ctx.kv.read(async (tx) => {
      const rows = await tx.range<UserRoomRecord>(STORES.userRooms, {});
      return [...new Set(rows.filter(([, r]) => r.membership === 'join').map(([k]) => String(k[1])))];
    });
    for (const r of roomIds) if ((await this.servers.get(r)).size > 1) this.c.network.subscribe(r);
  }

  stop(): void {
    this.sender.stop();
    this.edus.stop();
  }

  /** GET /query/profile on the user's server (undefined when it says there is no such profile). */
  private async remoteProfile(userId: string): Promise<JsonObject | undefined> {
    try {
      return await this.parts.remote.get(domainOf(userId), `/_matrix/federation/v1/query/profile?user_id=${encodeURIComponent(userId)}`);
    } catch (e) {
      if (e instanceof RemoteError && e.status === 404) return undefined;
      throw unknown(`The profile of ${userId} could not be fetched from its server`, 502);
    }
  }

  // ---- FederationInbound

  handleRequest(origin: string, req: FederationRequest): Promise<FederationResponse> {
    return this.router.handle(origin, req);
  }

  async handleGossip(roomId: string, from: string, message: JsonObject): Promise<void> {
    try {
      if (!isJsonObject(message)) return;
      const origin = typeof message.origin === 'string' && isHearthServerName(message.origin) ? message.origin : from;
      const pdus = Array.isArray(message.pdus) ? message.pdus.slice(0, MAX_TXN_PDUS) : [];
      traceArrival(pdus, 'B gossip in');
      // Gossip relays: PDUs prove themselves by their signatures; EDUs are only believed from their origin.
      for (const pdu of pdus) {
        if (!isJsonObject(pdu) || pdu.room_id !== roomId) continue;
        await this.ingestOne(origin, from, pdu);
      }
      if (origin === from && Array.isArray(message.edus)) {
        await this.edus.receive(origin, await this.acls.filterEdus(origin, message.edus.slice(0, MAX_TXN_EDUS)));
      }
    } catch (e) {
      this.c.ctx.logger.warn('federation: gossip message failed', { roomId, from, error: e });
    }
  }

  peerConnected(serverName: string): void {
    this.sender.peerConnected(serverName);
  }

  // ---- Transactions

  /** PUT /send/{txnId}: PDUs one by one (per-PDU results), then EDUs. */
  async sendTransaction(origin: string, txnId: string, body: JsonObject): Promise<JsonObject> {
    const { pdus, edus } = body;
    if (body.origin !== undefined && body.origin !== origin) throw invalidParam('origin', 'does not match the sending server');
    if (!Array.isArray(pdus)) throw badJson("'pdus' must be an array");
    if (edus !== undefined && !Array.isArray(edus)) throw badJson("'edus' must be an array");
    if (pdus.length > MAX_TXN_PDUS) throw tooLarge(`A transaction carries at most ${MAX_TXN_PDUS} PDUs`);
    if ((edus ?? []).length > MAX_TXN_EDUS) throw tooLarge(`A transaction carries at most ${MAX_TXN_EDUS} EDUs`);
    traceArrival(pdus, 'B /send in');
    const key = `${origin}\u0000${txnId}`;
    const seen = this.recentTxns.get(key);
    if (seen) return seen;
    const work = this.processTransaction(origin, pdus, (edus ?? []) as JsonValue[]);
    if (this.recentTxns.size > 1000) this.recentTxns.clear();
    this.recentTxns.set(key, work);
    work.catch(() => this.recentTxns.delete(key));
    return work;
  }

  private async processTransaction(origin: string, pdus: readonly JsonValue[], edus: readonly JsonValue[]): Promise<JsonObject> {
    const results: JsonObject = {};
    for (const pdu of pdus) {
      const out = await this.ingestOne(origin, origin, pdu);
      if (out.eventId !== undefined) results[out.eventId] = out.status === 'dropped' || out.status === 'rejected' ? { error: out.reason ?? out.status } : {};
    }
    await this.edus.receive(origin, await this.acls.filterEdus(origin, edus));
    return { pdus: results };
  }

  /** One PDU from a transaction or gossip; `from` is the peer to ask about what it lacks when `origin` fails. */
  private async ingestOne(origin: string, from: string, pdu: JsonValue): Promise<PduOutcome> {
    const denied = await this.deniedBy(origin, from, pdu);
    if (denied) return denied;
    const out = await this.ingest.receive(origin, pdu);
    if (out.status === 'dropped' && from !== origin && out.eventId === undefined) return this.ingest.receive(from, pdu);
    return out;
  }

  /**
   * A PDU of a room whose server ACL denies the sending server (for gossip: the relaying peer or the origin it
   * names) is ignored, with an error under its event ID in the transaction's results.
   */
  private async deniedBy(origin: string, from: string, pdu: JsonValue): Promise<PduOutcome | undefined> {
    if (!isJsonObject(pdu) || typeof pdu.room_id !== 'string') return undefined;
    const roomId = pdu.room_id;
    const server = !(await this.acls.allows(roomId, origin)) ? origin : from !== origin && !(await this.acls.allows(roomId, from)) ? from : undefined;
    if (server === undefined) return undefined;
    const version = await this.ingest.versionOf(roomId);
    const id = version ? pduFromJson(pdu, version) : undefined;
    return { eventId: id?.ok ? id.pdu.eventId : undefined, status: 'dropped', reason: `${server} is denied by the room's server ACL` };
  }

  // ---- After events are stored

  /** Our users' new events: to every other server in the room (and the target's, for kicks and bans). */
  private afterLocalEvents(events: readonly Pdu[]): void {
    if (events.length === 0) return;
    traceEach(events.map((e) => e.eventId), 'A committed');
    const roomId = events[0].roomId;
    const also: string[] = [];
    let memberChange = false;
    for (const e of events) {
      if (e.type === 'm.room.server_acl') this.acls.invalidate(roomId);
      if (e.type !== 'm.room.member') continue;
      memberChange = true;
      const target = e.stateKey ?? '';
      if (e.membership === 'leave' || e.membership === 'ban') also.push(domainOf(target));
      this.servers.noteMembership(roomId, target, e.membership);
    }
    if (!this.c.network) return;
    void (async () => {
      await relay(this.parts, roomId, events, { also });
      if (memberChange) await this.updateSubscription(roomId);
    })().catch((e) => this.c.ctx.logger.error('federation: sending events failed', e));
  }

  private afterRemoteEvents(roomId: string, pdus: readonly Pdu[], stateTypes: ReadonlySet<string>): void {
    // The ACL is re-read only when the current state's ACL changed (the event, or a state resolution).
    if (stateTypes.has('m.room.server_acl')) this.acls.invalidate(roomId);
    if (!pdus.some((p) => p.type === 'm.room.member') && !stateTypes.has('m.room.member')) return;
    // Re-read rather than patch: a remote member event may have come with a state resolution.
    this.servers.invalidate(roomId);
    void this.updateSubscription(roomId).catch((e) => this.c.ctx.logger.warn('federation: subscription update failed', e));
  }

  /** Follow a room's gossip while one of our users is joined and other servers are in it. */
  private async updateSubscription(roomId: string): Promise<void> {
    const net = this.c.network;
    if (!net) return;
    const servers = await this.servers.get(roomId);
    if (servers.has(this.serverName) && servers.size > 1) net.subscribe(roomId);
    else if (!servers.has(this.serverName)) net.unsubscribe(roomId);
  }

  // ---- FederationHandlers (resident side)

  async makeMembership(origin: string, roomId: string, userId: string, m: 'join' | 'leave' | 'knock', versions: readonly string[] | undefined) {
    await this.acls.require(roomId, origin);
    return this.resident.makeMembership(origin, roomId, userId, m, versions);
  }

  async sendJoin(origin: string, roomId: string, eventId: string, body: JsonObject): Promise<JsonObject> {
    await this.acls.require(roomId, origin);
    const { pdu, record, version } = await this.resident.sendMembership(origin, roomId, eventId, body, 'join');
    return this.resident.joinResponse(roomId, pdu, record, version);
  }

  async sendLeave(origin: string, roomId: string, eventId: string, body: JsonObject): Promise<JsonObject> {
    await this.acls.require(roomId, origin);
    await this.resident.sendMembership(origin, roomId, eventId, body, 'leave');
    return {};
  }

  async sendKnock(origin: string, roomId: string, eventId: string, body: JsonObject): Promise<JsonObject> {
    await this.acls.require(roomId, origin);
    await this.resident.sendMembership(origin, roomId, eventId, body, 'knock');
    return this.resident.knockResponse(roomId);
  }

  async invite(origin: string, roomId: string, eventId: string, body: JsonObject): Promise<JsonObject> {
    await this.acls.require(roomId, origin);
    return this.resident.receiveInvite(origin, roomId, eventId, body);
  }

  getEvent(origin: string, eventId: string) {
    return this.resident.getEvent(origin, eventId);
  }
  async getState(origin: string, roomId: string, eventId: string | null) {
    await this.acls.require(roomId, origin);
    return this.resident.getState(origin, roomId, eventId);
  }
  async getStateIds(origin: string, roomId: string, eventId: string | null) {
    await this.acls.require(roomId, origin);
    return this.resident.getStateIds(origin, roomId, eventId);
  }
  async getEventAuth(origin: string, roomId: string, eventId: string) {
    await this.acls.require(roomId, origin);
    return this.resident.getEventAuth(origin, roomId, eventId);
  }
  async backfill(origin: string, roomId: string, from: readonly string[], limit: string | null) {
    await this.acls.require(roomId, origin);
    return this.resident.backfill(origin, roomId, from, limit);
  }
  async getMissingEvents(origin: string, roomId: string, body: JsonObject) {
    await this.acls.require(roomId, origin);
    return this.resident.getMissingEvents(origin, roomId, body);
  }
  readUser(userId: string): Promise<UserRecord | undefined> {
    return readUserWith(this.c.ctx.kv, userId);
  }
  readAlias(alias: string) {
    return readAliasWith(this.c.ctx.kv, alias, (r) => this.servers.get(r), this.serverName);
  }

  userDevices(userId: string): Promise<JsonObject> {
    return this.requireKeys().devicesOf(userId);
  }
  queryUserKeys(body: JsonObject): Promise<JsonObject> {
    return this.requireKeys().queryLocal(body);
  }
  claimUserKeys(body: JsonObject): Promise<JsonObject> {
    return this.requireKeys().claimLocal(body);
  }
  publicRoomsGet(query: URLSearchParams): Promise<JsonObject> {
    return this.requireDirectory().serveGet(query);
  }
  publicRoomsPost(body: JsonObject): Promise<JsonObject> {
    return this.requireDirectory().servePost(body);
  }
  async hierarchy(origin: string, roomId: string, suggestedOnly: boolean): Promise<JsonObject> {
    await this.acls.require(roomId, origin);
    return this.spaces.serve(origin, roomId, suggestedOnly);
  }
  private requireDirectory(): FederationDirectory {
    if (!this.directory) throw unrecognized('This server does not publish a room directory');
    return this.directory;
  }
  private requireKeys(): FederationKeys {
    if (!this.keys) throw unrecognized('This server does not serve encryption keys');
    return this.keys;
  }

  /** For status displays and tests: what waits to be sent. */
  status() {
    return { queues: this.sender.status(), connected: this.c.network?.connectedServers() ?? [] };
  }
}

