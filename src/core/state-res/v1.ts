/**
 * State resolution for room version 1 (the original algorithm).
 *
 * Spec: shared/matrix-spec/content/rooms/v1.md §State resolution.
 *
 * "A conflict occurs between states where those states have different event_ids for the same (event_type,
 * state_key)": unlike v2, a key that only some states have is not a conflict.
 *
 * Where the text is silent we chose:
 *   - m.room.member conflicts are resolved one state key at a time, keys in code-unit order, each against R as
 *     updated by the keys before it;
 *   - R is looked up only at the keys the auth rules need (the auth events selection) — there is no fall-back to
 *     the event's own auth_events, since the text checks "a room in state R";
 *   - for the other conflicts, when no candidate passes auth in R we keep the last candidate in the order (lowest
 *     depth, then greatest sha1) rather than dropping the key, as deployed servers do.
 */
import { sha1 } from '@noble/hashes/legacy.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import { authStateKeysFor } from '../auth/auth-events.js';
import { authorize } from '../auth/rules.js';
import type { Pdu, StateKey, StateMap } from '../event.js';
import { stateKey } from '../event.js';
import type { ResolveContext } from './context.js';

/** v1 conflicts: keys whose states disagree; every other key (in any state) goes straight into R. */
export function partitionStateSetsV1(stateSets: readonly StateMap[]): {
  unconflicted: StateMap;
  conflicted: Map<StateKey, Set<string>>;
} {
  const unconflicted: StateMap = new Map();
  const conflicted = new Map<StateKey, Set<string>>();
  for (const s of stateSets) {
    for (const [k, v] of s) {
      const c = conflicted.get(k);
      if (c) {
        c.add(v);
        continue;
      }
      const u = unconflicted.get(k);
      if (u === undefined) unconflicted.set(k, v);
      else if (u !== v) {
        unconflicted.delete(k);
        conflicted.set(k, new Set([u, v]));
      }
    }
  }
  return { unconflicted, conflicted };
}

const sha1Memo = new Map<string, string>();
/** sha1(event_id) as lowercase hex; hex order is the digest's byte order. */
export function sha1Hex(eventId: string): string {
  let h = sha1Memo.get(eventId);
  if (h === undefined) {
    h = bytesToHex(sha1(utf8ToBytes(eventId)));
    if (sha1Memo.size > 10_000) sha1Memo.clear();
    sha1Memo.set(eventId, h);
  }
  return h;
}

/** Ascending depth, then descending sha1(event_id): the order auth-relevant conflicts are replayed in. */
export function v1AuthOrder(a: Pdu, b: Pdu): number {
  if (a.depth !== b.depth) return a.depth - b.depth;
  const ha = sha1Hex(a.eventId);
  const hb = sha1Hex(b.eventId);
  return ha < hb ? 1 : ha > hb ? -1 : 0;
}

/** Descending depth, then ascending sha1(event_id): the preference order for every other conflict. */
export function v1NormalOrder(a: Pdu, b: Pdu): number {
  return -v1AuthOrder(a, b);
}

export async function resolveV1(stateSets: readonly StateMap[], ctx: ResolveContext): Promise<StateMap> {
  const { cache, version } = ctx;
  // "Start by setting R to the union of the states to be resolved, excluding any conflicting events."
  const { unconflicted: r, conflicted } = partitionStateSetsV1(stateSets);
  if (conflicted.size === 0) return r;

  const all: string[] = [];
  for (const vs of conflicted.values()) all.push(...vs);
  await cache.load(all);
  // What R may be asked about: the create, power levels and join rules events and every member event the
  // conflicting events' auth could look at.
  const lookups: string[] = [];
  for (const id of all) {
    const e = cache.get(id);
    if (!e) continue;
    for (const [t, k] of authStateKeysFor(e, version)) {
      const v = r.get(stateKey(t, k));
      if (v !== undefined) lookups.push(v);
    }
  }
  await cache.load(lookups);

  const candidates = (key: StateKey): Pdu[] => {
    const out: Pdu[] = [];
    for (const id of conflicted.get(key) ?? []) {
      const e = cache.get(id);
      if (e?.isState) out.push(e);
    }
    return out;
  };
  const lookupIn = (state: StateMap, t: string, k: string): Pdu | undefined => {
    const id = state.get(stateKey(t, k));
    return id === undefined ? undefined : cache.get(id);
  };
  const allowedIn = async (e: Pdu): Promise<boolean> => {
    const want = authStateKeysFor(e, version).map(([t, k]) => r.get(stateKey(t, k)));
    await cache.load(want.filter((v): v is string => v !== undefined));
    const result = authorize(e, { get: (t, k) => lookupIn(r, t, k) }, version);
    if (!result.ok) ctx.onRejected?.(e, result.reason);
    return result.ok;
  };

  // Power levels, then join rules, then members: sort by ascending depth then descending sha1(event_id); add the
  // first event to R; add each subsequent one while it is allowed in R, stopping at the first that is not.
  const resolveAuthKey = async (key: StateKey): Promise<void> => {
    const list = candidates(key).sort(v1AuthOrder);
    if (list.length === 0) return;
    r.set(key, list[0].eventId);
    for (const e of list.slice(1)) {
      if (!(await allowedIn(e))) break;
      r.set(key, e.eventId);
    }
  };
  const keys = [...conflicted.keys()].sort();
  const typeOf = (k: StateKey): string => k.slice(0, k.indexOf('\u0000'));
  for (const type of ['m.room.power_levels', 'm.room.join_rules', 'm.room.member']) {
    for (const k of keys) if (typeOf(k) === type) await resolveAuthKey(k);
  }

  // "For all other conflicts, just pick the event with the highest depth and lowest sha1(event_id) that passes
  // authentication in R and add it to R."
  for (const k of keys) {
    const type = typeOf(k);
    if (type === 'm.room.power_levels' || type === 'm.room.join_rules' || type === 'm.room.member') continue;
    const list = candidates(k).sort(v1NormalOrder);
    let chosen: Pdu | undefined;
    for (const e of list) {
      if (await allowedIn(e)) {
        chosen = e;
        break;
      }
    }
    chosen ??= list[list.length - 1];
    if (chosen) r.set(k, chosen.eventId);
  }
  return r;
}
