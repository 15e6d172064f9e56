/**
 * The orderings of state resolution v2: power events, the reverse topological power ordering and the mainline
 * ordering.
 *
 * Spec: shared/matrix-spec/content/rooms/fragments/v2-state-res.md §Definitions ("Power events", "Reverse
 * topological power ordering", "Mainline ordering"); rooms/v12.md (creators' infinite power level).
 */
import { userPowerLevel } from '../auth/power-levels.js';
import type { Pdu } from '../event.js';
import type { RoomVersion } from '../room-versions.js';
import type { ResolveContext } from './context.js';
import { createEventIdOfRoom, impliedCreateEvent } from './context.js';
import { EventCache } from './event-cache.js';
import type { EventSource } from './event-cache.js';

/**
 * Power event: a state event of type m.room.power_levels or m.room.join_rules, or an m.room.member event with
 * membership leave or ban whose sender is not its state_key (a kick or a ban) — the events that might take someone's
 * ability to do something away.
 */
export function isPowerEvent(e: Pdu): boolean {
  if (!e.isState) return false;
  if (e.type === 'm.room.power_levels' || e.type === 'm.room.join_rules') return true;
  if (e.type !== 'm.room.member') return false;
  const m = e.membership;
  return (m === 'leave' || m === 'ban') && e.sender !== e.stateKey;
}

/** The m.room.power_levels event among an event's auth events, if it cites one the cache has. */
export function powerLevelsAuthEvent(e: Pdu, cache: EventCache): Pdu | undefined {
  for (const id of e.authEvents) {
    const a = cache.get(id);
    if (a && a.type === 'm.room.power_levels' && a.stateKey === '') return a;
  }
  return undefined;
}

/**
 * The sender's power level "when looking at their respective auth_events": the power-levels event they cite, and
 * the create event (cited before v12, named by the room ID in v12) for the creator rules — without a power-levels
 * event the creator has 100 (v1–v11), and in v12 creators are infinitely powerful whatever the power levels say.
 */
export function senderPowerLevel(e: Pdu, ctx: ResolveContext): number {
  let pl: Pdu | undefined;
  let create: Pdu | undefined = impliedCreateEvent(e, ctx);
  for (const id of e.authEvents) {
    const a = ctx.cache.get(id);
    if (!a || a.stateKey !== '') continue;
    if (a.type === 'm.room.power_levels') pl = a;
    else if (a.type === 'm.room.create' && create === undefined) create = a;
  }
  const level = userPowerLevel(e.sender, pl, create, ctx.version);
  return Number.isNaN(level) ? 0 : level;
}

/** A comparison key; `lessThan` is the spec's relation (x < y) for both orderings below. */
interface OrderKey {
  readonly id: string;
  /** Reverse topological power ordering: the sender's power (greater sorts first). Mainline: the position. */
  readonly rank: number;
  readonly ts: number;
}

/** Reverse topological power ordering: greater power first, then smaller origin_server_ts, then smaller ID. */
export function powerOrderLess(x: OrderKey, y: OrderKey): boolean {
  if (x.rank !== y.rank) return x.rank > y.rank;
  if (x.ts !== y.ts) return x.ts < y.ts;
  return x.id < y.id;
}

/** Mainline ordering: greater mainline position first, then smaller origin_server_ts, then smaller ID. */
export const mainlineOrderLess = powerOrderLess;

/** A binary min-heap under `less`. */
class Heap<T> {
  readonly #items: T[] = [];
  constructor(private readonly less: (a: T, b: T) => boolean) {}
  get size(): number {
    return this.#items.length;
  }
  push(v: T): void {
    const a = this.#items;
    a.push(v);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }
  pop(): T | undefined {
    const a = this.#items;
    if (a.length === 0) return undefined;
    const top = a[0];
    const last = a.pop() as T;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l], a[m])) m = l;
        if (r < a.length && this.less(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

/**
 * For each event of `set`, the members of `set` it depends on through `auth_events`: the nearest ones, walking
 * through events outside the set (the DAG formed by auth events, restricted to the set, keeps every ordering
 * constraint even where the path between two members leaves the set).
 */
async function authEdgesWithin(set: ReadonlySet<string>, cache: EventCache): Promise<Map<string, Set<string>>> {
  const deps = new Map<string, Set<string>>();
  for (const id of set) {
    const found = new Set<string>();
    const visited = new Set<string>([id]);
    let frontier = [id];
    while (frontier.length > 0) {
      await cache.load(frontier);
      const next: string[] = [];
      for (const f of frontier) {
        const e = cache.get(f);
        if (!e) continue;
        for (const a of e.authEvents) {
          if (visited.has(a)) continue;
          visited.add(a);
          if (set.has(a)) found.add(a);
          else next.push(a);
        }
      }
      frontier = next;
    }
    deps.set(id, found);
  }
  return deps;
}

/**
 * Kahn's algorithm, taking the smallest candidate under `less` at each step. Nodes that never become candidates
 * because of a cycle are released one at a time, smallest first, so bad input still yields a total order.
 */
function kahn(keys: Map<string, OrderKey>, deps: Map<string, Set<string>>, less: (a: OrderKey, b: OrderKey) => boolean): string[] {
  const waiting = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  for (const [id, ds] of deps) {
    waiting.set(id, ds.size);
    for (const d of ds) {
      let list = dependents.get(d);
      if (!list) dependents.set(d, (list = []));
      list.push(id);
    }
  }
  const heap = new Heap<OrderKey>(less);
  for (const [id, n] of waiting) if (n === 0) heap.push(keys.get(id) as OrderKey);
  const out: string[] = [];
  const done = new Set<string>();
  while (out.length < keys.size) {
    let next = heap.pop();
    if (next === undefined) {
      // Only a cycle gets here.
      for (const [id] of waiting) {
        if (done.has(id)) continue;
        const k = keys.get(id) as OrderKey;
        if (next === undefined || less(k, next)) next = k;
      }
      if (next === undefined) break;
    }
    if (done.has(next.id)) continue;
    done.add(next.id);
    out.push(next.id);
    for (const dep of dependents.get(next.id) ?? []) {
      const n = (waiting.get(dep) ?? 0) - 1;
      waiting.set(dep, n);
      if (n === 0 && !done.has(dep)) heap.push(keys.get(dep) as OrderKey);
    }
  }
  return out;
}

/** The reverse topological power ordering (earliest first) of `ids`, within a resolution. */
export async function reverseTopologicalPowerOrder(ids: Iterable<string>, ctx: ResolveContext): Promise<string[]> {
  const cache = ctx.cache;
  const set = new Set<string>();
  for (const id of ids) set.add(id);
  await cache.load(set);
  for (const id of set) if (!cache.get(id)) set.delete(id);
  const deps = await authEdgesWithin(set, cache);
  // Everything the power levels read: the cited auth events and, in v12, the create event the room ID names.
  const needed: string[] = [];
  for (const id of set) {
    const e = cache.get(id) as Pdu;
    needed.push(...e.authEvents);
    if (ctx.version.roomIdFromCreateEvent) {
      const c = createEventIdOfRoom(e.roomId);
      if (c) needed.push(c);
    }
  }
  await cache.load(needed);
  const keys = new Map<string, OrderKey>();
  for (const id of set) {
    const e = cache.get(id) as Pdu;
    keys.set(id, { id, rank: senderPowerLevel(e, ctx), ts: e.originServerTs });
  }
  return kahn(keys, deps, powerOrderLess);
}

/**
 * Mainline positions relative to the mainline of `powerLevelsId` (P₀): P₀ has position 0, the power-levels event
 * it cites 1, and so on. An event's position is that of the first event of its own power-levels chain (starting
 * with the one it cites, not itself) that is on the mainline; Infinity when none is.
 */
export async function mainlinePositions(
  ids: Iterable<string>,
  powerLevelsId: string | undefined,
  cache: EventCache,
): Promise<Map<string, number>> {
  // The mainline [P₀, P₁, …, Pₙ].
  const mainline = new Map<string, number>();
  let p = powerLevelsId;
  while (p !== undefined && !mainline.has(p)) {
    await cache.load([p]);
    const e = cache.get(p);
    if (!e) break;
    mainline.set(p, mainline.size);
    await cache.load(e.authEvents);
    p = powerLevelsAuthEvent(e, cache)?.eventId;
  }
  // Positions, memoised for every power-levels event a walk passes through. The events and their auth events are
  // fetched in two batches first; the walks below then mostly hit the cache.
  const list = [...ids];
  await cache.load(list);
  await cache.load(list.flatMap((id) => cache.get(id)?.authEvents ?? []));
  const memo = new Map<string, number>();
  const out = new Map<string, number>();
  for (const id of list) {
    await cache.load([id]);
    const e = cache.get(id);
    if (!e) continue;
    await cache.load(e.authEvents);
    let cur = powerLevelsAuthEvent(e, cache);
    const path: string[] = [];
    const seen = new Set<string>();
    let position = Infinity;
    while (cur !== undefined && !seen.has(cur.eventId)) {
      const at = mainline.get(cur.eventId) ?? memo.get(cur.eventId);
      if (at !== undefined) {
        position = at;
        break;
      }
      seen.add(cur.eventId);
      path.push(cur.eventId);
      await cache.load(cur.authEvents);
      cur = powerLevelsAuthEvent(cur, cache);
    }
    for (const q of path) memo.set(q, position);
    out.set(id, position);
  }
  return out;
}

/** The mainline ordering based on the power-levels event `powerLevelsId`, smallest (applied first) first. */
export async function mainlineOrder(
  ids: Iterable<string>,
  powerLevelsId: string | undefined,
  cache: EventCache,
): Promise<string[]> {
  const positions = await mainlinePositions(ids, powerLevelsId, cache);
  const keys: OrderKey[] = [];
  for (const [id, position] of positions) {
    keys.push({ id, rank: position, ts: (cache.get(id) as Pdu).originServerTs });
  }
  keys.sort((a, b) => (mainlineOrderLess(a, b) ? -1 : mainlineOrderLess(b, a) ? 1 : 0));
  return keys.map((k) => k.id);
}

/** `reverseTopologicalPowerOrder` for callers outside a resolution (tests, tools). */
export async function sortByReverseTopologicalPower(
  ids: Iterable<string>,
  events: EventSource,
  version: RoomVersion,
): Promise<string[]> {
  return reverseTopologicalPowerOrder(ids, { cache: EventCache.over(events), version });
}

/** `mainlineOrder` for callers outside a resolution (tests, tools). */
export async function sortByMainline(
  ids: Iterable<string>,
  powerLevelsId: string | undefined,
  events: EventSource,
): Promise<string[]> {
  return mainlineOrder(ids, powerLevelsId, EventCache.over(events));
}
