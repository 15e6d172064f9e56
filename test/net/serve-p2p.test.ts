/**
 * `hearth serve` as a libp2p peer: a spawned process prints its multiaddrs in the ready line, an in-process node
 * dials them over TCP and WebSockets and gets federation answers, and SIGTERM stops it cleanly.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { multiaddr } from '@multiformats/multiaddr';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { peerIdToServerName } from '../../src/net/peer-id.js';
import { HEARTH_BIN, REPO_ROOT, runCli } from '../helpers/serve.js';
import { eventually, startPeer } from './helpers.js';

interface Ready {
  url: string;
  serverName: string;
  multiaddrs: string[];
}

let child: ChildProcess | undefined;
let exited: Promise<number | null>;
let stderr = '';
let ready: Ready;
const dataDir = mkdtempSync(join(tmpdir(), 'hearth-p2p-'));

beforeAll(async () => {
  const proc = spawn(process.execPath, [HEARTH_BIN, 'serve', '--host', '127.0.0.1', '--port', '0', '--p2p-port', '0', '--no-mdns', '--data', dataDir], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child = proc;
  proc.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  ready = await new Promise<Ready>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no ready line\n${stderr}`)), 60_000);
    proc.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const line = out.split('\n').find((l) => l.startsWith('ready '));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line.slice('ready '.length)) as Ready);
      }
    });
    void exited.then((code) => reject(new Error(`exited ${code} before ready\n${stderr}`)));
  });
}, 90_000);

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    const t = setTimeout(() => child?.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  }
  rmSync(dataDir, { recursive: true, force: true });
});

describe('hearth serve on libp2p', () => {
  test('the ready line lists TCP and WebSockets multiaddrs whose peer ID is the server name', () => {
    const tcp = ready.multiaddrs.filter((a) => /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+$/.test(a));
    const ws = ready.multiaddrs.filter((a) => /^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/ws\/p2p\/\w+$/.test(a));
    expect(tcp).toHaveLength(1);
    expect(ws).toHaveLength(1);
    for (const a of ready.multiaddrs) expect(peerIdToServerName(a.split('/p2p/')[1])).toBe(ready.serverName);
  });

  test('another node dials its TCP address and gets federation answers', async () => {
    const peer = await startPeer();
    try {
      await peer.network.node.dial(multiaddr(ready.multiaddrs.find((a) => !a.includes('/ws'))!));
      const res = await peer.network.transport.request(ready.serverName, { method: 'GET', path: '/_matrix/federation/v1/hearth-test-unknown' });
      expect(res).toMatchObject({ status: 404, body: { errcode: 'M_UNRECOGNIZED' } });
      await eventually(() => peer.network.transport.connectedServers().includes(ready.serverName), 10_000, 'identify');
    } finally {
      await peer.stop();
    }
  });

  test('and over WebSockets', async () => {
    const peer = await startPeer({ wsPort: 0 });
    try {
      await peer.network.node.dial(multiaddr(ready.multiaddrs.find((a) => a.includes('/ws/'))!));
      const res = await peer.network.transport.request(ready.serverName, { method: 'GET', path: '/_matrix/federation/v1/hearth-test-unknown' });
      expect(res.status).toBe(404);
      const conn = peer.network.transport.status().connections.find((c) => c.serverName === ready.serverName);
      expect(conn?.transport).toBe('websockets');
    } finally {
      await peer.stop();
    }
  });

  test('SIGTERM stops libp2p and the process cleanly', async () => {
    child!.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).not.toMatch(/error/i);
  });

  test('bad p2p options exit 2 with a message', async () => {
    const bad = await runCli(['serve', '--data', dataDir, '--bootstrap', '/ip4/127.0.0.1/tcp/1']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--bootstrap');
    const port = await runCli(['serve', '--data', dataDir, '--p2p-port', '70000']);
    expect(port.code).toBe(2);
    expect(port.stderr).toContain('--p2p-port');
  });
});
