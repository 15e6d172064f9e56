/**
 * `hearth serve` — the Node peer: the homeserver on LevelDB, served over HTTP to any Matrix client.
 * `hearth start` — the same, plus the built web app (dist/app) on the same origin; what `npm start` runs.
 */
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createHomeserver } from '../homeserver.js';
import type { HomeserverConfig, Logger } from '../services/context.js';
import { openLevelKv } from '../storage/level-kv.js';
import { HOMESERVER_STORES } from '../storage/schema.js';
import { serveHttp } from './http-host.js';
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
  --log-level LEVEL         error | warn | info | debug (default info).
  -h, --help                Show this help.

When it accepts requests it prints one line: ready {"url": ..., "serverName": ...}
SIGTERM or SIGINT stops it cleanly.
`;

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\./.test(host);
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
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`--port must be a port number, not '${values.port}'\n`);
    return 2;
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

  const dataDir = resolve(values.data);
  await mkdir(dataDir, { recursive: true });
  const kv = await openLevelKv({ name: join(dataDir, 'db'), stores: HOMESERVER_STORES });
  const hs = await createHomeserver(
    { kv, logger },
    {
      registration,
      registrationTokens: tokens,
      allowGuests: !values['no-guests'],
      ...(values['public-url'] !== undefined ? { publicBaseUrl: values['public-url'] } : {}),
    },
  );

  let fetch = (request: Request) => hs.fetch(request);
  if (command === 'start') {
    const here = dirname(fileURLToPath(import.meta.url));
    const app = staticFiles(resolve(values.app ?? join(here, '..', '..', 'dist', 'app')));
    fetch = (request) => {
      const path = new URL(request.url).pathname;
      return path.startsWith('/_matrix/') || path.startsWith('/.well-known/') ? hs.fetch(request) : app(request);
    };
  }
  const host = await serveHttp({ host: values.host, port, fetch, logger });
  process.stdout.write(`ready ${JSON.stringify({ url: host.url, serverName: hs.serverName })}\n`);
  if (command === 'start') process.stdout.write(`Hearth is running: open ${host.url}/ in your browser\n`);

  await new Promise<void>((done) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info(`${signal}: stopping`);
      await host.close().catch((e: unknown) => logger.error('closing http', e));
      await hs.stop().catch((e: unknown) => logger.error('stopping homeserver', e));
      await kv.close().catch((e: unknown) => logger.error('closing storage', e));
      done();
    };
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
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
