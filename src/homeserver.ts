/**
 * The homeserver: one object with `fetch(request) → Response`, built from injected components (storage, clock,
 * logger). The service worker, the Node HTTP host and libp2p stream handlers all call this same `fetch` — or its
 * plain-data form `handle` (router.ts), which the Node host uses to skip building WHATWG Request/Response objects.
 * Nothing here imports a platform: the host opens the storage backend and passes it in.
 */
import { generateSeed } from './core/crypto/ed25519.js';
import type { ServerIdentity } from './core/server-key.js';
import { serverIdentityFromSeed } from './core/server-key.js';
import { accountEndpoints } from './api/client/accounts.js';
import { aliasEndpoints } from './api/client/aliases.js';
import { directoryEndpoints } from './api/client/directory.js';
import { timelineEndpoints } from './api/client/timeline.js';
import { accountDataEndpoints } from './api/client/account-data.js';
import { capabilitiesEndpoint } from './api/client/capabilities.js';
import { filterEndpoints } from './api/client/filters.js';
import { profileEndpoints } from './api/client/profile.js';
import { roomEndpoints } from './api/client/rooms.js';
import { syncEndpoints } from './api/client/sync.js';
import { ephemeralEndpoints } from './api/client/ephemeral.js';
import { presenceEndpoints } from './api/client/presence.js';
import { toDeviceEndpoints } from './api/client/to-device.js';
import { pushRulesEndpoints } from './api/client/push-rules.js';
import { keysEndpoints } from './api/client/keys.js';
import { hierarchyEndpoints } from './api/client/hierarchy.js';
import { versionsEndpoint } from './api/client/versions.js';
import { wellKnownClientEndpoint } from './api/client/well-known.js';
import type { AnyEndpoint } from './api/endpoint.js';
import { defineEndpoint } from './api/endpoint.js';
import { createRouter } from './api/router.js';
import type { PlainRequest, PlainResponse } from './api/router.js';
import type { Kv } from './storage/kv.js';
import { HOMESERVER_MIGRATIONS, STORES } from './storage/schema.js';
import { runMigrations } from './storage/migrations.js';
import { AccountsService } from './services/accounts.js';
import type { Clock, HomeserverConfig, Logger, ServiceContext } from './services/context.js';
import { DEFAULT_CONFIG, silentLogger, systemClock } from './services/context.js';
import type { Services } from './services/index.js';
import { Notifier } from './services/notifier.js';
import { RoomsService } from './services/rooms.js';
import { SyncService } from './services/sync.js';
import { PushRulesService } from './services/push-rules.js';
import { AliasesService } from './services/aliases.js';
import { DirectoryService } from './services/directory.js';
import { TimelineService } from './services/timeline.js';
import { KeysService } from './services/keys.js';
import { HierarchyService } from './services/hierarchy.js';
import { FederationService } from './federation/service.js';
import type { FederationInit } from './federation/service.js';
import { serverKeyEndpoint } from './federation/server-api.js';
import type { FederationTransport } from './federation/transport.js';

/** The Client-Server API versions Hearth speaks. */
export const SUPPORTED_VERSIONS = ['v1.11', 'v1.12', 'v1.13', 'v1.14', 'v1.15', 'v1.16', 'v1.17', 'v1.18', 'v1.19'];

export interface HomeserverComponents {
  /** Opened with HOMESERVER_STORES (src/storage/schema.ts). */
  kv: Kv;
  clock?: Clock;
  logger?: Logger;
  /** How this server reaches other servers (src/net, or a test network); absent: no federation. */
  network?: FederationTransport;
  /** Federation tuning (retry delays …), mostly for tests. */
  federationOptions?: FederationInit;
}

export interface Homeserver {
  readonly serverName: string;
  readonly identity: ServerIdentity;
  readonly services: Services;
  /** What the network delivers to this server (FederationInbound: requests with their origin, gossip, peers). */
  readonly federation: FederationService;
  /** Every endpoint `fetch` serves (for tests that sweep them all). */
  readonly endpoints: readonly AnyEndpoint[];
  fetch(request: Request): Promise<Response>;
  /** `fetch` over plain data: the same routing and answers, without WHATWG Request/Response objects. */
  handle(request: PlainRequest): Promise<PlainResponse>;
  /** Stops background work; the host closes the storage. */
  stop(): Promise<void>;
}

/** Loads the server's identity from storage, creating it on first start. */
export async function loadOrCreateIdentity(kv: Kv): Promise<ServerIdentity> {
  const stored = await kv.read((tx) => tx.get<{ seed: Uint8Array }>(STORES.server, ['identity']));
  if (stored) return serverIdentityFromSeed(stored.seed);
  const seed = generateSeed();
  // Two starts racing on a fresh database: the first write wins and both use it.
  const kept = await kv.write(async (tx) => {
    const again = await tx.get<{ seed: Uint8Array }>(STORES.server, ['identity']);
    if (again) return again.seed;
    await tx.put(STORES.server, ['identity'], { seed });
    return seed;
  });
  return serverIdentityFromSeed(kept);
}

export async function createHomeserver(
  components: HomeserverComponents,
  config: Partial<HomeserverConfig> = {},
): Promise<Homeserver> {
  // Every host gets the same schema: migrations run once (each step in its own transaction), before anything reads.
  await runMigrations(components.kv, HOMESERVER_MIGRATIONS);
  const identity = await loadOrCreateIdentity(components.kv);
  const ctx: ServiceContext = {
    kv: components.kv,
    identity,
    serverName: identity.serverName,
    clock: components.clock ?? systemClock,
    logger: components.logger ?? silentLogger,
    notifier: new Notifier(),
    config: { ...DEFAULT_CONFIG, ...config },
  };
  const accounts = new AccountsService(ctx);
  const rooms = new RoomsService(ctx, { accounts });
  const pushRules = new PushRulesService(ctx);
  const sync = new SyncService(ctx, { rooms, accounts, pushRules });
  const timeline = new TimelineService(ctx);
  const aliases = new AliasesService(ctx);
  const directory = new DirectoryService(ctx);
  const keys = new KeysService(ctx, { accounts });
  const hierarchy = new HierarchyService(ctx);
  const services: Services = { ctx, accounts, rooms, sync, timeline, aliases, directory, keys };
  const federation = new FederationService({ ctx, rooms, accounts, sync, keys, timeline, directory, hierarchy, network: components.network }, components.federationOptions);
  await federation.start();

  const endpoints: AnyEndpoint[] = [
    versionsEndpoint({ versions: SUPPORTED_VERSIONS }),
    ctx.config.publicBaseUrl !== undefined
      ? wellKnownClientEndpoint({ homeserverBaseUrl: ctx.config.publicBaseUrl })
      : defineEndpoint({
          method: 'GET',
          path: '/.well-known/matrix/client',
          auth: 'none',
          operationId: 'getWellknown',
          // With no configured public URL, the origin the client reached us on is the answer.
          handler: ({ url }) => ({ 'm.homeserver': { base_url: url.origin } }),
        }),
    ...accountEndpoints(services),
    ...profileEndpoints(services),
    ...accountDataEndpoints(services),
    ...filterEndpoints(services),
    capabilitiesEndpoint(),
    ...roomEndpoints(services),
    ...syncEndpoints(services),
    ...timelineEndpoints(services),
    ...aliasEndpoints(services),
    ...directoryEndpoints(services),
    ...ephemeralEndpoints(sync),
    ...presenceEndpoints(sync),
    ...toDeviceEndpoints(sync),
    ...pushRulesEndpoints(pushRules),
    ...keysEndpoints(services),
    ...hierarchyEndpoints(hierarchy),
    serverKeyEndpoint(identity, () => ctx.clock.now()),
  ];
  const router = createRouter(
    {
      authenticate: (token) => accounts.authenticate(token),
      logger: ctx.logger,
    },
    { endpoints },
  );
  return {
    serverName: identity.serverName,
    identity,
    services,
    federation,
    endpoints: router.endpoints,
    fetch: (request) => router.fetch(request),
    handle: (request) => router.handle(request),
    async stop() {
      federation.stop();
      sync.stop();
    },
  };
}
