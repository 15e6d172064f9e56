/**
 * `npm run bench:federation` part 2: Hearth's send → remote /sync arrival between two `hearth serve` processes
 * federating over libp2p TCP on loopback. alice on A sends one message at a time; bob on B keeps one /sync long poll
 * open (as a client does); a sample is the time from just before the PUT /send to A until B's /sync response
 * carrying that event has been read.
 *
 * With `trace`, both peers run with HEARTH_FEDERATION_TRACE (src/federation/trace.ts) and the result adds, per
 * stage of the event's way (A's commit, gossip/`/send`, B's checks, write, notify), the time since the PUT was sent:
 * the stage breakdown of issue 5.
 */
import { expectStatus, http, registerUser } from '../test/helpers/serve.js';
import type { Account, ServedPeer } from '../test/helpers/serve.js';
import { createRoom, CS, enc, invite, join, startPeers } from '../test/federation-node/peers.js';
import type { Stats } from './http-workload.js';
import { cpuMs, stats } from './http-workload.js';

export interface SendToSync {
  arrival: Stats;
  /** Until A answered the PUT (the client-visible send latency). */
  sendAnswered: Stats;
  /** CPU each serve process spent per measured message (all threads), ms; undefined off Linux. */
  cpuMsPerOp: { a?: number; b?: number };
  /** With `trace`: each stage's time since the PUT was sent, in the order of their medians. */
  stages?: Array<{ stage: string; sinceSend: Stats }>;
}

/** The trace clock (src/federation/trace.ts): wall-clock ms with sub-ms precision, comparable across processes. */
const traceNow = () => performance.timeOrigin + performance.now();

/** Stage marks from a peer's stderr: eventId → stage → time. */
function traceMarks(stderr: string, into: Map<string, Map<string, number>>): void {
  for (const line of stderr.split('\n')) {
    if (!line.startsWith('hearth-trace ')) continue;
    const [id, stage, at] = JSON.parse(line.slice('hearth-trace '.length)) as [string, string, number];
    let m = into.get(id);
    if (!m) into.set(id, (m = new Map()));
    // The first time an event reached a stage (gossip and /send may both bring it).
    if (!m.has(stage)) m.set(stage, at);
  }
}

/** Bob's /sync loop: resolves a waiter when a message with its body arrives. */
class SyncFollower {
  private since?: string;
  private stopped = false;
  private readonly waiters = new Map<string, (t: number) => void>();
  private readonly arrived = new Map<string, number>();
  private loop?: Promise<void>;

  constructor(
    private readonly peer: ServedPeer,
    private readonly user: Account,
    private readonly roomId: string,
  ) {}

  async start(): Promise<void> {
    await this.poll(0);
    this.loop = (async () => {
      while (!this.stopped) await this.poll(30_000);
    })();
  }

  private async poll(timeout: number): Promise<void> {
    const q = new URLSearchParams({ timeout: String(timeout), set_presence: 'offline' });
    if (this.since) q.set('since', this.since);
    const body = expectStatus(await http(this.peer, 'GET', `${CS}/sync?${q}`, undefined, this.user.accessToken), 200, 'sync');
    const t = performance.now();
    this.since = body.next_batch;
    for (const e of body.rooms?.join?.[this.roomId]?.timeline?.events ?? []) {
      const key = e.content?.body;
      if (typeof key !== 'string') continue;
      const w = this.waiters.get(key);
      if (w) {
        this.waiters.delete(key);
        w(t);
      } else this.arrived.set(key, t);
    }
  }

  /** When the message `body` arrived (waits for it). */
  arrival(body: string, timeoutMs = 30_000): Promise<number> {
    const t = this.arrived.get(body);
    if (t !== undefined) return Promise.resolve(t);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`message ${body} did not reach B within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.set(body, (at) => {
        clearTimeout(timer);
        resolve(at);
      });
    });
  }

  async stop(send: () => Promise<void>): Promise<void> {
    this.stopped = true;
    // One more message ends the open long poll.
    await send();
    await this.loop;
  }
}

export interface SendToSyncOptions {
  /** Stage marks (HEARTH_FEDERATION_TRACE in the peers). */
  trace?: boolean;
  /** Write V8 CPU profiles of both peers into this directory. */
  cpuProfDir?: string;
}

export async function measureSendToSync(rounds: number, warmup: number, opts: SendToSyncOptions = {}): Promise<SendToSync> {
  const trace = opts.trace ?? false;
  // The serve processes inherit the environment.
  if (trace) process.env.HEARTH_FEDERATION_TRACE = '1';
  const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
  const peers = await startPeers(2, { args: ['--log-level', 'warn'], nodeArgs });
  delete process.env.HEARTH_FEDERATION_TRACE;
  const [a, b] = peers;
  try {
    const [alice, bob] = await Promise.all([registerUser(a, 'alice'), registerUser(b, 'bob')]);
    const roomId = await createRoom(a, alice, { preset: 'private_chat' });
    await invite(a, alice, roomId, bob.userId);
    await join(b, bob, roomId, [a.serverName]);
    const follower = new SyncFollower(b, bob, roomId);
    await follower.start();
    let n = 0;
    const send = async (body: string): Promise<string> => {
      const res = await http(a, 'PUT', `${CS}/rooms/${enc(roomId)}/send/m.room.message/bench${++n}`, { msgtype: 'm.text', body }, alice.accessToken);
      return expectStatus(res, 200, 'send').event_id as string;
    };
    const arrival: number[] = [];
    const answered: number[] = [];
    // Per measured event: when the PUT went out (trace clock), and when B's client had it.
    const sent: Array<{ eventId: string; at: number; answeredAt: number; arrivedAt: number }> = [];
    let cpu0: Array<number | undefined> = [];
    for (let i = 0; i < warmup + rounds; i++) {
      if (i === warmup) cpu0 = await Promise.all([cpuMs(a.pid), cpuMs(b.pid)]);
      const body = `m${i}`;
      const at = traceNow();
      const t0 = performance.now();
      const eventId = await send(body);
      const t1 = performance.now();
      const t2 = await follower.arrival(body);
      if (i >= warmup) {
        answered.push(t1 - t0);
        arrival.push(t2 - t0);
        sent.push({ eventId, at, answeredAt: at + (t1 - t0), arrivedAt: at + (t2 - t0) });
      }
    }
    const cpu1 = await Promise.all([cpuMs(a.pid), cpuMs(b.pid)]);
    const perOp = (i: number) => (cpu0[i] !== undefined && cpu1[i] !== undefined ? (cpu1[i]! - cpu0[i]!) / rounds : undefined);
    await follower.stop(async () => void (await send('done')));
    const result: SendToSync = { arrival: stats(arrival), sendAnswered: stats(answered), cpuMsPerOp: { a: perOp(0), b: perOp(1) } };
    if (trace) {
      // The peers write their marks in batches (trace.ts batchedTraceSink, every 100 ms).
      await new Promise((r) => setTimeout(r, 300));
      const marks = new Map<string, Map<string, number>>();
      for (const p of peers) traceMarks(p.stderr(), marks);
      const byStage = new Map<string, number[]>();
      const add = (stage: string, v: number) => {
        let l = byStage.get(stage);
        if (!l) byStage.set(stage, (l = []));
        l.push(v);
      };
      for (const s of sent) {
        for (const [stage, t] of marks.get(s.eventId) ?? []) add(stage, t - s.at);
        add('A PUT answered (client)', s.answeredAt - s.at);
        add('B /sync returned (client)', s.arrivedAt - s.at);
      }
      result.stages = [...byStage].map(([stage, v]) => ({ stage, sinceSend: stats(v) })).sort((x, y) => x.sinceSend.p50 - y.sinceSend.p50);
    }
    return result;
  } finally {
    await Promise.all(peers.map((p) => p.dispose()));
  }
}
