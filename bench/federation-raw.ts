/**
 * Raw libp2p request round trips for `npm run bench:federation` (part 1): the `/hearth/federation/1` protocol with
 * nothing behind it, so the number is the link's and the transport's cost alone. It is the baseline that Hearth's
 * send → remote /sync arrival on the same link is compared with.
 *
 * The far end is a real `hearth serve` process (its inbound answers an unknown federation path with 404
 * M_UNRECOGNIZED at once); the near end is a libp2p node in the bench process, on one long-lived stream.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { multiaddr } from '@multiformats/multiaddr';
import { generateSeed } from '../src/core/crypto/ed25519.js';
import type { Network } from '../src/net/network.js';
import { serverNameToPeerId } from '../src/net/peer-id.js';
import { createNodeNetwork } from '../src/node/p2p.js';
import { openMemoryKv } from '../src/storage/memory-kv.js';
import { HOMESERVER_STORES } from '../src/storage/schema.js';
import { HEARTH_BIN, REPO_ROOT } from '../test/helpers/serve.js';
import type { Stats } from './http-workload.js';
import { stats } from './http-workload.js';

/** Answered by every Hearth peer at once with 404 M_UNRECOGNIZED: a request that costs the handler nothing. */
export const PING_PATH = '/_matrix/federation/v1/hearth-bench-ping';

export interface ServedP2pPeer {
  serverName: string;
  multiaddrs: string[];
  pid: number;
  /** SIGTERM, wait for the exit; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Starts `hearth serve` with libp2p on loopback (ephemeral ports, no mDNS) on a temporary data directory. */
export async function startP2pServe(nodeArgs: readonly string[] = []): Promise<ServedP2pPeer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-bench-p2p-'));
  const child: ChildProcess = spawn(
    process.execPath,
    [...nodeArgs, HEARTH_BIN, 'serve', '--host', '127.0.0.1', '--port', '0', '--p2p-port', '0', '--no-mdns', '--log-level', 'warn', '--data', dataDir],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const ready = await new Promise<{ serverName: string; multiaddrs: string[] }>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`hearth serve printed no ready line\n${stderr}`));
    }, 60_000);
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const line = out.split('\n').find((l) => l.startsWith('ready '));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line.slice('ready '.length)));
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`hearth serve exited (${code}) before it was ready\n${stderr}`));
    });
  });
  return {
    ...ready,
    // The serving process: bin/hearth.js may run the server as its child (the ready line names it).
    pid: (ready as { pid?: number }).pid ?? child.pid!,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const code = await exited;
      process.removeListener('exit', killOnExit);
      rmSync(dataDir, { recursive: true, force: true });
      return code;
    },
  };
}

/** A libp2p node in this process with its own memory storage (TCP + WebSockets dialling). */
export async function benchNode(): Promise<Network> {
  const kv = await openMemoryKv({ name: `bench-${Math.random()}`, stores: HOMESERVER_STORES });
  const network = await createNodeNetwork({ seed: generateSeed(), kv, host: '127.0.0.1', tcpPort: 0, wsPort: 0, relay: false, mdns: false });
  await network.start();
  return network;
}

export interface RoundTrips {
  /** One request at a time on the long-lived stream. */
  sequential: Stats;
  /** Dial + stream negotiation + first request on a fresh connection. */
  firstRequest: Stats;
}

/** Sequential round trips from `from` to `to` over `addr` (after `warmup`), and fresh-connection first requests. */
export async function measureRoundTrips(from: Network, to: string, addr: string, rounds: number, warmup: number, fresh: number): Promise<RoundTrips> {
  const req = { method: 'GET', path: PING_PATH } as const;
  const peerId = serverNameToPeerId(to)!;
  const firsts: number[] = [];
  // Start from no connection, so the stream measured is the one over `addr`.
  await from.node.hangUp(peerId);
  for (let i = 0; i < fresh; i++) {
    await from.node.hangUp(peerId);
    const t0 = performance.now();
    await from.node.dial(multiaddr(addr));
    const res = await from.transport.request(to, req);
    firsts.push(performance.now() - t0);
    if (res.status !== 404) throw new Error(`unexpected answer ${res.status} ${JSON.stringify(res.body)}`);
  }
  await from.node.hangUp(peerId);
  await from.node.dial(multiaddr(addr));
  const conns = from.node.getConnections(peerId);
  if (conns.length !== 1) throw new Error(`expected one connection to the peer, found ${conns.length}`);
  for (let i = 0; i < warmup; i++) await from.transport.request(to, req);
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    const res = await from.transport.request(to, req);
    samples.push(performance.now() - t0);
    if (res.status !== 404) throw new Error(`unexpected answer ${res.status}`);
  }
  const used = from.node.getConnections(peerId).map((c) => c.remoteAddr.toString());
  if (used.length !== 1 || !addr.startsWith(used[0].replace(/\/p2p\/.*$/, ''))) throw new Error(`measured over ${used.join(', ')}, not ${addr}`);
  return { sequential: stats(samples), firstRequest: stats(firsts) };
}
