/**
 * Builders for tests against real `hearth serve` processes: starting a small federation on loopback (the first peer
 * is the bootstrap of the others), rooms and messages over HTTP, and a /sync view that accumulates what a user saw.
 */
import { expectStatus, http, registerUser, startServe } from '../helpers/serve.js';
import type { Account, ServeOptions, ServedPeer } from '../helpers/serve.js';

export const CS = '/_matrix/client/v3';
export const enc = encodeURIComponent;

/** The TCP multiaddr of a peer (what another Node peer dials). */
export function tcpAddr(p: ServedPeer): string {
  const addr = p.multiaddrs.find((a) => /\/tcp\/\d+\/p2p\//.test(a) && !a.includes('/ws'));
  if (addr === undefined) throw new Error(`no TCP multiaddr in ${JSON.stringify(p.multiaddrs)}`);
  return addr;
}

/**
 * Starts `n` peers on loopback without mDNS; every peer after the first bootstraps to the first one's TCP address.
 */
export async function startPeers(n: number, opts: ServeOptions = {}): Promise<ServedPeer[]> {
  const base = ['--p2p-port', '0', '--no-mdns', ...(opts.args ?? [])];
  const first = await startServe({ ...opts, args: base });
  const rest = await Promise.all(
    Array.from({ length: n - 1 }, () => startServe({ ...opts, args: [...base, '--bootstrap', tcpAddr(first)] })),
  );
  return [first, ...rest];
}

export async function createRoom(peer: ServedPeer, who: Account, body: Record<string, unknown> = {}): Promise<string> {
  return expectStatus(await http(peer, 'POST', `${CS}/createRoom`, body, who.accessToken), 200, 'createRoom').room_id as string;
}

export async function invite(peer: ServedPeer, who: Account, roomId: string, userId: string): Promise<void> {
  expectStatus(await http(peer, 'POST', `${CS}/rooms/${enc(roomId)}/invite`, { user_id: userId }, who.accessToken), 200, `invite ${userId}`);
}

export async function join(peer: ServedPeer, who: Account, roomIdOrAlias: string, via: string[] = []): Promise<string> {
  const q = via.length > 0 ? '?' + via.map((s) => `via=${enc(s)}`).join('&') : '';
  return expectStatus(await http(peer, 'POST', `${CS}/join/${enc(roomIdOrAlias)}${q}`, {}, who.accessToken), 200, `join ${who.userId}`)
    .room_id as string;
}

let txn = 0;
export async function sendText(peer: ServedPeer, who: Account, roomId: string, body: string): Promise<string> {
  const res = await http(
    peer,
    'PUT',
    `${CS}/rooms/${enc(roomId)}/send/m.room.message/t${Date.now()}-${++txn}`,
    { msgtype: 'm.text', body },
    who.accessToken,
  );
  return expectStatus(res, 200, 'send').event_id as string;
}

/** The room's timeline event IDs as the peer serves them to `who` (GET /messages, newest first, all pages). */
export async function timelineIds(peer: ServedPeer, who: Account, roomId: string): Promise<string[]> {
  const ids: string[] = [];
  let from: string | undefined;
  for (;;) {
    const q = new URLSearchParams({ dir: 'b', limit: '100' });
    if (from !== undefined) q.set('from', from);
    const body = expectStatus(await http(peer, 'GET', `${CS}/rooms/${enc(roomId)}/messages?${q}`, undefined, who.accessToken), 200, 'messages');
    ids.push(...(body.chunk as { event_id: string }[]).map((e) => e.event_id));
    if (body.end === undefined || body.chunk.length === 0) return ids;
    from = body.end as string;
  }
}

/** What one user has seen through /sync, accumulated over incremental polls. */
export class HttpSyncView {
  private since?: string;
  readonly timeline = new Map<string, any[]>();
  readonly ephemeral = new Map<string, any[]>();
  readonly invites = new Map<string, any>();

  constructor(
    readonly peer: ServedPeer,
    readonly user: Account,
  ) {}

  async poll(timeoutMs = 0): Promise<void> {
    const q = new URLSearchParams({ timeout: String(timeoutMs), set_presence: 'offline' });
    if (this.since) q.set('since', this.since);
    const body = expectStatus(await http(this.peer, 'GET', `${CS}/sync?${q}`, undefined, this.user.accessToken), 200, 'sync');
    this.since = body.next_batch;
    for (const [roomId, r] of Object.entries<any>(body.rooms?.join ?? {})) {
      this.timeline.set(roomId, [...(this.timeline.get(roomId) ?? []), ...(r.timeline?.events ?? [])]);
      this.ephemeral.set(roomId, [...(this.ephemeral.get(roomId) ?? []), ...(r.ephemeral?.events ?? [])]);
      this.invites.delete(roomId);
    }
    for (const [roomId, r] of Object.entries<any>(body.rooms?.invite ?? {})) this.invites.set(roomId, r);
  }

  /** Long-polls until `check` passes. */
  async until<T>(check: () => T | undefined | false, timeoutMs = 15_000, what = 'sync condition'): Promise<T> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = check();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > end) throw new Error(`${this.user.userId} timed out waiting for ${what}`);
      await this.poll(Math.min(1000, Math.max(0, end - Date.now())));
    }
  }

  messages(roomId: string): string[] {
    return (this.timeline.get(roomId) ?? []).filter((e) => e.type === 'm.room.message').map((e) => e.content.body);
  }

  waitForMessage(roomId: string, body: string, timeoutMs?: number): Promise<true> {
    return this.until(() => this.messages(roomId).includes(body), timeoutMs, `message ${JSON.stringify(body)}`);
  }
}
