/**
 * `npm run bench:federation` part 2: Hearth's send → remote /sync arrival between two `hearth serve` processes
 * federating over libp2p TCP on loopback. alice on A sends one message at a time; bob on B keeps one /sync long poll
 * open (as a client does); a sample is the time from just before the PUT /send to A until B's /sync response
 * carrying that event has been read.
 */
import { expectStatus, http, registerUser } from '../test/helpers/serve.js';
import type { Account, ServedPeer } from '../test/helpers/serve.js';
import { createRoom, CS, enc, invite, join, startPeers } from '../test/federation-node/peers.js';
import type { Stats } from './http-workload.js';
import { stats } from './http-workload.js';

export interface SendToSync {
  arrival: Stats;
  /** Until A answered the PUT (the client-visible send latency). */
  sendAnswered: Stats;
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

export async function measureSendToSync(rounds: number, warmup: number): Promise<SendToSync> {
  const peers = await startPeers(2, { args: ['--log-level', 'warn'] });
  const [a, b] = peers;
  try {
    const [alice, bob] = await Promise.all([registerUser(a, 'alice'), registerUser(b, 'bob')]);
    const roomId = await createRoom(a, alice, { preset: 'private_chat' });
    await invite(a, alice, roomId, bob.userId);
    await join(b, bob, roomId, [a.serverName]);
    const follower = new SyncFollower(b, bob, roomId);
    await follower.start();
    let n = 0;
    const send = async (body: string) => {
      const res = await http(a, 'PUT', `${CS}/rooms/${enc(roomId)}/send/m.room.message/bench${++n}`, { msgtype: 'm.text', body }, alice.accessToken);
      expectStatus(res, 200, 'send');
    };
    const arrival: number[] = [];
    const answered: number[] = [];
    for (let i = 0; i < warmup + rounds; i++) {
      const body = `m${i}`;
      const t0 = performance.now();
      await send(body);
      const t1 = performance.now();
      const t2 = await follower.arrival(body);
      if (i >= warmup) {
        answered.push(t1 - t0);
        arrival.push(t2 - t0);
      }
    }
    await follower.stop(() => send('done'));
    return { arrival: stats(arrival), sendAnswered: stats(answered) };
  } finally {
    await Promise.all(peers.map((p) => p.dispose()));
  }
}
