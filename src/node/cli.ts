/**
 * `hearth serve` — the Node peer: the homeserver on LevelDB, served over HTTP to any Matrix client, and federating
 * with other Hearth peers over libp2p (src/node/p2p.ts).
 * `hearth start` — the same, plus the built web app (dist/app) on the same origin; what `npm start` runs.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { multiaddr } from '@multiformats/multiaddr';
import { createAdminApi } from '../api/admin/admin.js';
import type { FederationInbound } from '../federation/transport.js';
import { createHomeserver, loadOrCreateIdentity } from '../homeserver.js';
import { unrecognizedInbound } from '../net/libp2p-transport.js';
import type { HomeserverConfig, Logger } from '../services/context.js';
import { openLevelKv } from '../storage/level-kv.js';
import { HOMESERVER_STORES } from '../storage/schema.js';
import { serveHttp } from './http-host.js';
import { createNodeNetwork } from './p2p.js';
import { staticFiles } from './static-files.js';

const HELP = `Usage: hearth <serve|start> [options]

Commands:
  serve                     Run the homeserver and serve the Matrix Client-Server API over HTTP.
  start                     Like serve, and also serve the built web app (dist/app) on the same origin.

Options:
  --host HOST               Address to listen on (default 127.0.0.1).
  --port PORT               TCP port (default 8008; 0 picks a free one).
  --data DIR                Where the homeserver keeps its database and identity (default ./.hearth-data).
                            The server's name is derived from a key created there on first start: keep DIR to
                            keep your name, accounts and rooms.
  --registration MODE       open | token | closed. Default: open when bound to a loopback address, closed
                            otherwise (so a peer on a network is never open by accident).
  --registration-token T    A token that allows registration in 'token' mode (repeatable).
  --no-guests               Refuse guest registration.
  --public-url URL          The base URL clients should use (for /.well-known/matrix/client); default: the
                            origin each request arrived on.
  --app DIR                 With 'start': the built app to serve (default dist/app).
  --p2p-host HOST           Address the libp2p listeners bind to (default: the --host value). Use 0.0.0.0 to
                            federate with peers on other machines.
  --p2p-port PORT           libp2p TCP port (default 0: a free one). Fix it to be a stable bootstrap peer.
  --p2p-ws-port PORT        libp2p WebSockets port, for browsers (default 0: a free one).
  --bootstrap MULTIADDR     A peer to connect to and stay connected to, /…/p2p/<peer id> (repeatable).
  --no-mdns                 Do not discover peers on the LAN with mDNS (it is off anyway on a loopback address).
  --admin-token TOKEN       The token for the admin API (/_hearth/admin/v1/…). Default: one generated on first
                            start and kept in DIR/admin-token (readable by the owner only).
  --log-level LEVEL         error | warn | info | debug (default info).
  -h, --help                Show this help.

When it accepts requests it prints one line: ready {"url": ..., "serverName": ..., "multiaddrs": [...], "pid": ...}
(multiaddrs: the libp2p addresses other peers can dial, each ending in /p2p/<peer id>; pid: the process that serves).
SIGTERM or SIGINT stops it cleanly.
`;

/**
 * LevelDB's memory, smaller than classic-level's defaults (8 MiB block cache, 4 MiB memtable): the row cache in
 * src/storage/level-kv.ts already keeps the hot rows, and the OS page cache the files. Saves ~10 MB of RSS under
 * `npm run bench` (bench/README.md).
 */
const LEVELDB_MEMORY = { cacheSize: 2 * 1024 * 1024, writeBufferSize: 1024 * 1024 };
/**
 * LevelKv's row cache (src/storage/level-kv.ts): recently written and read rows, which is what sends, /sync and
 * /messages read back. 1 or 2 MiB gave no lower peak RSS under `npm run bench` (bench/README.md, Peak RSS).
 */
const ROW_CACHE = { bytes: 4 * 1024 * 1024, rows: 8192 };

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\./.test(host);
}

function isPeerMultiaddr(s: string): boolean {
  try {
    return multiaddr(s).getComponents().some((c) => c.name === 'p2p');
  } catch {
    return false;
  }
}

function makeLogger(level: string): Logger {
  const order = ['error', 'warn', 'info', 'debug'];
  const max = Math.max(0, order.indexOf(level));
  const at = (l: string) => (msg: string, data?: unknown) => {
    if (order.indexOf(l) > max) return;
    const line = data === undefined ? msg : `${msg} ${data instanceof Error ? (data.stack ?? data.message) : JSON.stringify(data)}`;
    process.stderr.write(`[hearth] ${l}: ${line}\n`);
  };
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}

/** The admin token kept in the data directory (created on first start, owner-only permissions). */
async function loadOrCreateAdminToken(dataDir: string): Promise<string> {
  const file = join(dataDir, 'admin-token');
  try {
    const kept = (await readFile(file, 'utf8')).trim();
    if (kept.length >= 16) return kept;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const token = randomBytes(32).toString('base64url');
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  // The mode above is masked by the umask and ignored for an existing file: set it outright.
  await chmod(file, 0o600);
  return token;
}

/** Where browsers learn this peer's libp2p addresses (src/browser/p2p/network-host.ts): public, no token. */
const BOOTSTRAP_PATH = '/_hearth/bootstrap';

function bootstrapResponse(request: Request, multiaddrs: string[]): Response {
  const headers = { 'content-type': 'application/json', 'access-control-allow-origin': '*', 'cache-control': 'no-store' };
  if (request.method === 'OPTIONS') return new Response(null, { status: 204, headers: { ...headers, 'access-control-allow-methods': 'GET' } });
  if (request.method !== 'GET') {
    return new Response(JSON.stringify({ errcode: 'M_UNRECOGNIZED', error: 'Method not allowed' }), { status: 405, headers });
  }
  return new Response(JSON.stringify({ multiaddrs }), { status: 200, headers });
}

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'string', default: '8008' },
        data: { type: 'string', default: '.hearth-data' },
        registration: { type: 'string' },
        'registration-token': { type: 'string', multiple: true },
        'no-guests': { type: 'boolean', default: false },
        'public-url': { type: 'string' },
        app: { type: 'string' },
        'p2p-host': { type: 'string' },
        'p2p-port': { type: 'string', default: '0' },
        'p2p-ws-port': { type: 'string', default: '0' },
        bootstrap: { type: 'string', multiple: true },
        'no-mdns': { type: 'boolean', default: false },
        'admin-token': { type: 'string' },
        'log-level': { type: 'string', default: 'info' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const command = positionals[0];
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(HELP);
    return values.help || command === 'help' ? 0 : 2;
  }
  if (command !== 'serve' && command !== 'start') {
    process.stderr.write(`unknown command '${command}'\n\n${HELP}`);
    return 2;
  }
  const ports: Record<string, number> = {};
  for (const flag of ['port', 'p2p-port', 'p2p-ws-port'] as const) {
    const n = Number(values[flag]);
    if (!/^\d+$/.test(values[flag]) || n > 65535) {
      process.stderr.write(`--${flag} must be a port number, not '${values[flag]}'\n`);
      return 2;
    }
    ports[flag] = n;
  }
  const port = ports.port;
  const p2pHost = values['p2p-host'] ?? values.host;
  for (const addr of values.bootstrap ?? []) {
    if (!isPeerMultiaddr(addr)) {
      process.stderr.write(`--bootstrap needs a multiaddr ending in /p2p/<peer id>, not '${addr}'\n`);
      return 2;
    }
  }
  const registration = (values.registration ?? (isLoopback(values.host) ? 'open' : 'closed')) as HomeserverConfig['registration'];
  if (!['open', 'token', 'closed'].includes(registration)) {
    process.stderr.write(`--registration must be open, token or closed\n`);
    return 2;
  }
  const tokens = values['registration-token'] ?? [];
  if (registration === 'token' && tokens.length === 0) {
    process.stderr.write(`--registration token needs at least one --registration-token\n`);
    return 2;
  }
  const logger = makeLogger(values['log-level']);
  if (values['admin-token'] !== undefined && !/^[\x21-\x7e]{16,}$/.test(values['admin-token'])) {
    process.stderr.write(`--admin-token must be at least 16 printable characters without spaces\n`);
    return 2;
  }

  const dataDir = resolve(values.data);
  await mkdir(dataDir, { recursive: true });
  const adminToken = values['admin-token'] ?? (await loadOrCreateAdminToken(dataDir));
  const kv = await openLevelKv({ name: join(dataDir, 'db'), stores: HOMESERVER_STORES, leveldb: LEVELDB_MEMORY, rowCache: ROW_CACHE });
  // The network is built first (the homeserver sends through it) and started once the homeserver can answer.
  const identity = await loadOrCreateIdentity(kv);
  let network;
  try {
    network = await createNodeNetwork({
      seed: identity.key.seed,
      kv,
      logger,
      host: p2pHost,
      tcpPort: ports['p2p-port'],
      wsPort: ports['p2p-ws-port'],
      bootstrap: values.bootstrap ?? [],
      // mDNS only finds peers on other machines, which a loopback listener cannot talk to.
      mdns: !values['no-mdns'] && !isLoopback(p2pHost),
    });
  } catch (e) {
    await kv.close();
    process.stderr.write(`cannot set up the libp2p node: ${(e as Error).message}\n`);
    return 2;
  }
  // A variable, not a literal: `network` is a homeserver component once federation lands.
  const components = { kv, logger, network: network.transport };
  const hs = await createHomeserver(
    components,
    {
      registration,
      registrationTokens: tokens,
      allowGuests: !values['no-guests'],
      ...(values['public-url'] !== undefined ? { publicBaseUrl: values['public-url'] } : {}),
    },
  );

  network.transport.setInbound((hs as { federation?: FederationInbound }).federation ?? unrecognizedInbound);
  try {
    await network.start();
  } catch (e) {
    // E.g. a p2p port already in use.
    process.stderr.write(`cannot start the libp2p node: ${(e as Error).message}\n`);
    await network.stop().catch(() => {});
    await hs.stop().catch(() => {});
    await kv.close();
    return 1;
  }

  const admin = createAdminApi({
    kv,
    adminToken,
    isUserToken: (token) => hs.services.accounts.authenticate(token).then(() => true),
    networkStatus: () => ({ ...network.transport.status(), servers: network.transport.connectedServers() }),
    sendQueues: () => hs.federation.sender.status(),
    logger,
  });
  const serveMatrix = (request: Request) => {
    const url = new URL(request.url);
    if (url.pathname === BOOTSTRAP_PATH) return Promise.resolve(bootstrapResponse(request, network.multiaddrs()));
    return admin.handles(url) ? admin.fetch(request) : hs.fetch(request);
  };
  let fetch = serveMatrix;
  if (command === 'start') {
    const here = dirname(fileURLToPath(import.meta.url));
    const app = staticFiles(resolve(values.app ?? join(here, '..', '..', 'dist', 'app')));
    fetch = (request) => {
      const path = new URL(request.url).pathname;
      return path.startsWith('/_matrix/') || path.startsWith('/.well-known/') || path.startsWith('/_hearth/')
        ? serveMatrix(request)
        : app(request);
    };
  }
  // The Matrix paths go to the homeserver as plain data (no WHATWG Request/Response per call); the rest to `fetch`.
  const host = await serveHttp({ host: values.host, port, fetch, handle: hs.handle, handlePaths: ['/_matrix/', '/.well-known/'], logger });
  // pid: the process that serves (bin/hearth.js may have started it as a child, see there), for tools that watch it.
  const ready = { url: host.url, serverName: hs.serverName, multiaddrs: network.multiaddrs(), pid: process.pid };
  process.stdout.write(`ready ${JSON.stringify(ready)}\n`);
  if (command === 'start') process.stdout.write(`Hearth is running: open ${host.url}/ in your browser\n`);

  await new Promise<void>((done) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info(`${signal}: stopping`);
      await host.close().catch((e: unknown) => logger.error('closing http', e));
      await hs.stop().catch((e: unknown) => logger.error('stopping homeserver', e));
      await network.stop().catch((e: unknown) => logger.error('stopping libp2p', e));
      await kv.close().catch((e: unknown) => logger.error('closing storage', e));
      done();
    };
    // `on`, not `once`: a repeat while stopping is ignored rather than killing the process halfway (Ctrl-C in a
    // terminal reaches bin/hearth.js too, which passes it on: the server gets it twice).
    process.on('SIGTERM', () => void stop('SIGTERM'));
    process.on('SIGINT', () => void stop('SIGINT'));
  });
  return 0;
}

// Run when executed directly (bin/hearth.js or `node --import tsx/esm src/node/cli.ts`).
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`hearth: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
