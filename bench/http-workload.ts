/**
 * The HTTP workloads of `npm run bench`: everything goes through the Client-Server API of a running `hearth serve`
 * with Node's fetch (keep-alive connections), exactly as a client would. Each workload returns plain numbers;
 * bench/run.ts prints them and checks them against the targets.
 */

export interface Stats {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  mean: number;
}

export function stats(samples: readonly number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p: number) => (s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]);
  const mean = s.length === 0 ? NaN : s.reduce((a, b) => a + b, 0) / s.length;
  return { n: s.length, p50: at(50), p95: at(95), p99: at(99), mean };
}

export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly what: string,
    readonly status: number,
    readonly body: unknown,
  ) {
    super(`${what}: HTTP ${status} ${JSON.stringify(body).slice(0, 300)}`);
  }
}

export interface User {
  userId: string;
  token: string;
}

const enc = encodeURIComponent;

/** A minimal client: one JSON request, timed from before fetch() until the body has been read and parsed. */
export class Api {
  private txn = 0;
  constructor(readonly baseUrl: string) {}

  async request<T = any>(method: string, path: string, body?: unknown, token?: string, what = `${method} ${path}`): Promise<{ body: T; ms: number }> {
    const headers: Record<string, string> = {};
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const start = performance.now();
    const res = await fetch(this.baseUrl + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    const ms = performance.now() - start;
    const parsed = text === '' ? undefined : JSON.parse(text);
    if (res.status !== 200) throw new HttpError(what, res.status, parsed);
    return { body: parsed as T, ms };
  }

  async register(username: string): Promise<User> {
    const body = { username, password: `${username}-bench-password`, auth: { type: 'm.login.dummy' } };
    const r = await this.request('POST', '/_matrix/client/v3/register', body, undefined, `register ${username}`);
    return { userId: r.body.user_id, token: r.body.access_token };
  }

  async createRoom(user: User, body: Record<string, unknown> = { preset: 'private_chat' }): Promise<{ roomId: string; ms: number }> {
    const r = await this.request('POST', '/_matrix/client/v3/createRoom', body, user.token, 'createRoom');
    return { roomId: r.body.room_id, ms: r.ms };
  }

  async join(user: User, roomId: string): Promise<number> {
    return (await this.request('POST', `/_matrix/client/v3/join/${enc(roomId)}`, {}, user.token, 'join')).ms;
  }

  async invite(user: User, roomId: string, userId: string): Promise<void> {
    await this.request('POST', `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: userId }, user.token, 'invite');
  }

  async send(user: User, roomId: string, text: string): Promise<{ eventId: string; ms: number }> {
    const path = `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/b${Date.now().toString(36)}-${++this.txn}`;
    const r = await this.request('PUT', path, { msgtype: 'm.text', body: text }, user.token, 'send');
    return { eventId: r.body.event_id, ms: r.ms };
  }

  sync(user: User, params: Record<string, string>, signal?: AbortSignal): Promise<{ body: any; ms: number }> {
    const q = new URLSearchParams(params).toString();
    return this.requestWithSignal('GET', `/_matrix/client/v3/sync?${q}`, user.token, signal);
  }

  private async requestWithSignal(method: string, path: string, token: string, signal?: AbortSignal): Promise<{ body: any; ms: number }> {
    const start = performance.now();
    const res = await fetch(this.baseUrl + path, { method, headers: { authorization: `Bearer ${token}` }, signal });
    const text = await res.text();
    const ms = performance.now() - start;
    const parsed = text === '' ? undefined : JSON.parse(text);
    if (res.status !== 200) throw new HttpError(`${method} ${path.split('?')[0]}`, res.status, parsed);
    return { body: parsed, ms };
  }
}

/** A room alice and bob have both joined. */
export async function sharedRoom(api: Api, alice: User, bob: User): Promise<string> {
  const { roomId } = await api.createRoom(alice, { preset: 'public_chat', name: 'bench' });
  await api.join(bob, roomId);
  return roomId;
}

export interface ThroughputResult {
  latency: Stats;
  messages: number;
  ms: number;
  perSecond: number;
}

/** `count` sends one after another: per-request latency and messages per second. */
export async function sequentialSends(api: Api, user: User, roomId: string, count: number): Promise<ThroughputResult> {
  const samples: number[] = [];
  const start = performance.now();
  for (let i = 0; i < count; i++) samples.push((await api.send(user, roomId, `sequential ${i}`)).ms);
  const ms = performance.now() - start;
  return { latency: stats(samples), messages: count, ms, perSecond: (count * 1000) / ms };
}

/** `senders` loops of sequential sends at once, each its own user, into `roomIds[i % roomIds.length]`. */
export async function concurrentSends(
  api: Api,
  senders: readonly User[],
  roomIds: readonly string[],
  perSender: number,
): Promise<ThroughputResult> {
  const samples: number[] = [];
  const start = performance.now();
  await Promise.all(
    senders.map(async (u, w) => {
      const roomId = roomIds[w % roomIds.length];
      for (let i = 0; i < perSender; i++) samples.push((await api.send(u, roomId, `concurrent ${w}/${i}`)).ms);
    }),
  );
  const ms = performance.now() - start;
  const messages = senders.length * perSender;
  return { latency: stats(samples), messages, ms, perSecond: (messages * 1000) / ms };
}

/**
 * Delivery latency: bob keeps one /sync long poll open; alice sends one message at a time and the clock runs from
 * just before alice's PUT until bob's /sync response holding that event has been read. The next message is sent
 * only after the previous one arrived (bob re-polls first).
 */
export async function syncArrival(api: Api, alice: User, bob: User, roomId: string, count: number): Promise<Stats> {
  let since = (await api.sync(bob, { timeout: '0' })).body.next_batch as string;
  const samples: number[] = [];
  const abort = new AbortController();
  try {
    for (let i = 0; i < count; i++) {
      // Open the long poll first, so it waits on the server when the message lands.
      const poll = waitFor(api, bob, roomId, since, abort.signal);
      await new Promise((r) => setImmediate(r));
      const t0 = performance.now();
      const sent = api.send(alice, roomId, `arrival ${i}`);
      // A failed send would leave the poll waiting: stop it, and report the send's error rather than the abort.
      sent.catch(() => abort.abort());
      let arrived: { eventIds: Set<string>; since: string; at: number };
      try {
        arrived = await poll;
      } catch (e) {
        await sent;
        throw e;
      }
      const { eventId } = await sent;
      // The long poll may have returned something else first (e.g. alice's own read marker): poll until it shows.
      while (!arrived.eventIds.has(eventId)) arrived = await waitFor(api, bob, roomId, arrived.since, abort.signal);
      samples.push(arrived.at - t0);
      since = arrived.since;
    }
  } finally {
    abort.abort();
  }
  return stats(samples);
}

async function waitFor(
  api: Api,
  user: User,
  roomId: string,
  since: string,
  signal: AbortSignal,
): Promise<{ eventIds: Set<string>; since: string; at: number }> {
  const r = await api.sync(user, { since, timeout: '30000' }, signal);
  const at = performance.now();
  const events = (r.body.rooms?.join?.[roomId]?.timeline?.events ?? []) as { event_id: string }[];
  return { eventIds: new Set(events.map((e) => e.event_id)), since: r.body.next_batch, at };
}

/** Fills a room with `count` messages from `senders` at once (setup for the read benchmarks, not measured). */
export async function fillRoom(api: Api, senders: readonly User[], roomId: string, count: number): Promise<void> {
  let next = 0;
  await Promise.all(
    senders.map(async (u) => {
      while (next < count) {
        const i = next++;
        await api.send(u, roomId, `history ${i}`);
      }
    }),
  );
}

/** `runs` initial syncs (no `since`) of a user: latency and the size of the response. */
export async function initialSyncs(api: Api, user: User, runs: number): Promise<{ latency: Stats; bytes: number }> {
  const samples: number[] = [];
  let bytes = 0;
  for (let i = 0; i < runs; i++) {
    const r = await api.sync(user, { timeout: '0' });
    samples.push(r.ms);
    bytes = JSON.stringify(r.body).length;
  }
  return { latency: stats(samples), bytes };
}

/** Pages backwards through a room's history, `limit` events a page, `passes` times: latency of one page. */
export async function messagePages(api: Api, user: User, roomId: string, limit: number, passes: number): Promise<{ latency: Stats; events: number }> {
  const samples: number[] = [];
  let events = 0;
  for (let p = 0; p < passes; p++) {
    let from: string | undefined;
    events = 0;
    for (;;) {
      const q = new URLSearchParams({ dir: 'b', limit: String(limit) });
      if (from !== undefined) q.set('from', from);
      const r = await api.request('GET', `/_matrix/client/v3/rooms/${enc(roomId)}/messages?${q}`, undefined, user.token, 'messages');
      samples.push(r.ms);
      const chunk = (r.body.chunk ?? []) as unknown[];
      events += chunk.length;
      if (r.body.end === undefined || chunk.length === 0) break;
      from = r.body.end;
    }
  }
  return { latency: stats(samples), events };
}

/** `count` createRoom calls (private chat with a name), one after another. */
export async function createRooms(api: Api, user: User, count: number): Promise<Stats> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) samples.push((await api.createRoom(user, { preset: 'private_chat', name: `room ${i}` })).ms);
  return stats(samples);
}

/** `count` public rooms made by `owner` (not measured), then `joiner` joins each (measured). */
export async function joins(api: Api, owner: User, joiner: User, count: number): Promise<Stats> {
  return joinAll(api, joiner, await publicRooms(api, owner, count));
}

/** `count` public rooms made by `owner`, one after another. */
export async function publicRooms(api: Api, owner: User, count: number): Promise<string[]> {
  const rooms: string[] = [];
  for (let i = 0; i < count; i++) rooms.push((await api.createRoom(owner, { preset: 'public_chat' })).roomId);
  return rooms;
}

/** `joiner` joins each room, one after another: the latency of each join. */
export async function joinAll(api: Api, joiner: User, rooms: readonly string[]): Promise<Stats> {
  const samples: number[] = [];
  for (const roomId of rooms) samples.push(await api.join(joiner, roomId));
  return stats(samples);
}

/**
 * CPU time a process has used so far, all its threads (LevelDB's and libuv's included), in ms: user + system from
 * /proc/<pid>/stat at 100 ticks a second (Linux; undefined elsewhere). Unlike latency, the CPU an operation costs
 * hardly moves when other work loads the machine, so it is what to compare between runs on a busy machine.
 */
export async function cpuMs(pid: number): Promise<number | undefined> {
  try {
    const { readFile } = await import('node:fs/promises');
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces): state is field 3, utime 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  } catch {
    return undefined;
  }
}

/** Peak resident set size of a process in MiB (Linux /proc; undefined elsewhere). */
export async function peakRssMiB(pid: number): Promise<number | undefined> {
  try {
    const { readFile } = await import('node:fs/promises');
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}
