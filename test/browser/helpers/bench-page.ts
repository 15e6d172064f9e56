/**
 * Page-side workloads of `npm run bench:browser` (bench/browser.ts), bundled into the test harness so they run in the
 * page exactly as a client would: plain fetches to the page's own origin, answered by the service worker.
 * Times are `performance.now()` milliseconds in the page.
 */
import { serviceWorkerFetch } from '../../../src/browser/sw-fetch.js';

let transport: (input: string, init?: RequestInit) => Promise<Response> = (input, init) => fetch(input, init);

/** How `call` reaches the worker: fetch (default) or messages (src/browser/sw-fetch.ts). */
export function useTransport(kind: 'fetch' | 'message'): void {
  transport = kind === 'message' ? serviceWorkerFetch : (input, init) => fetch(input, init);
}

export async function call<T = any>(method: string, path: string, body?: unknown, token?: string, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await transport(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  const json = (await res.json()) as T;
  if (res.status !== 200) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

export interface Account {
  userId: string;
  token: string;
  roomId: string;
}

/** Registers `username` and creates a room: what "registered and in a room" means for the cold start. */
export async function registerAndCreateRoom(username: string): Promise<Account> {
  const reg = await call<{ user_id: string; access_token: string }>('POST', '/_matrix/client/v3/register', {
    username,
    password: `${username}-password`,
    auth: { type: 'm.login.dummy' },
  });
  const room = await call<{ room_id: string }>('POST', '/_matrix/client/v3/createRoom', { name: 'bench' }, reg.access_token);
  return { userId: reg.user_id, token: reg.access_token, roomId: room.room_id };
}

let txn = 0;
function sendPath(roomId: string): string {
  return `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/b${Date.now().toString(36)}-${txn++}`;
}

/** `n` messages one after another; each one's latency (request → acknowledged, durable). */
export async function sequentialSends(a: Account, n: number): Promise<{ latencies: number[]; totalMs: number }> {
  const latencies: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await call('PUT', sendPath(a.roomId), { msgtype: 'm.text', body: `sequential ${i}` }, a.token);
    latencies.push(performance.now() - t);
  }
  return { latencies, totalMs: performance.now() - t0 };
}

/** `n` messages from `concurrency` loops at once. */
export async function fillRoom(a: Account, n: number, concurrency = 8): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        await call('PUT', sendPath(a.roomId), { msgtype: 'm.text', body: `fill ${i} ${'lorem ipsum '.repeat(8)}` }, a.token);
      }
    }),
  );
  return performance.now() - t0;
}

const TIMELINE_FILTER = (limit: number) => JSON.stringify({ room: { timeline: { limit } } });

/**
 * Send → /sync arrival: a long poll is waiting when the message is sent; the time from the send's start to the
 * poll's answer that carries the event. `n` samples, one at a time.
 */
export async function syncArrival(a: Account, n: number): Promise<number[]> {
  const filter = TIMELINE_FILTER(50);
  let since = (await call<{ next_batch: string }>('GET', `/_matrix/client/v3/sync?timeout=0&filter=${encodeURIComponent(filter)}`, undefined, a.token)).next_batch;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    // When each event ID first reached the poll: the poll may carry the event before the send's own answer does.
    const seen = new Map<string, number>();
    let eventId: string | undefined;
    const ctl = new AbortController();
    const poll = (async () => {
      for (;;) {
        const body = await call<any>('GET', `/_matrix/client/v3/sync?timeout=10000&since=${since}&filter=${encodeURIComponent(filter)}`, undefined, a.token, ctl.signal);
        since = body.next_batch;
        const now = performance.now();
        const events: { event_id: string }[] = body.rooms?.join?.[a.roomId]?.timeline?.events ?? [];
        for (const e of events) if (!seen.has(e.event_id)) seen.set(e.event_id, now);
        if (eventId !== undefined && seen.has(eventId)) return;
      }
    })();
    // Let the poll reach the worker and start waiting.
    await new Promise((r) => setTimeout(r, 5));
    const t0 = performance.now();
    eventId = (await call<{ event_id: string }>('PUT', sendPath(a.roomId), { msgtype: 'm.text', body: `arrival ${i}` }, a.token)).event_id;
    if (seen.has(eventId)) {
      // Already delivered: end the poll that started after it.
      ctl.abort();
      await poll.catch(() => undefined);
    } else {
      await poll;
    }
    out.push(seen.get(eventId)! - t0);
  }
  return out;
}

/** An initial /sync (no `since`) with the given timeline limit: time and response size. */
export async function initialSync(a: Account, timelineLimit: number): Promise<{ ms: number; bytes: number; events: number }> {
  const t0 = performance.now();
  const res = await fetch(`/_matrix/client/v3/sync?filter=${encodeURIComponent(TIMELINE_FILTER(timelineLimit))}`, {
    headers: { authorization: `Bearer ${a.token}` },
  });
  const text = await res.text();
  const ms = performance.now() - t0;
  if (res.status !== 200) throw new Error(`initial sync: ${res.status} ${text}`);
  const body = JSON.parse(text);
  return { ms, bytes: text.length, events: body.rooms?.join?.[a.roomId]?.timeline?.events?.length ?? 0 };
}

/**
 * Warm start, the API side of "reload → timeline shown": the page was just reloaded; once the worker controls it,
 * the client's first request is an initial /sync with the latest 20 events. Returns ms since navigation start.
 */
export async function timelineAfterReload(a: Account): Promise<{ sinceNavigation: number; events: number }> {
  const r = await initialSync(a, 20);
  return { sinceNavigation: performance.now(), events: r.events };
}
