/**
 * State resolution v2 (room versions 2–11) and v2.1 (room version 12).
 *
 * Spec: shared/matrix-spec/content/rooms/fragments/v2-state-res.md §Algorithm; rooms/v12.md §State resolution,
 * which changes three things for v2.1:
 *   1. the iterative auth checks of step 2 start from an empty state map instead of the unconflicted state map;
 *   2. the conflicted state subgraph (events on auth paths between conflicted events) is defined, and
 *   3. the full conflicted set includes it.
 * (Creators' infinite power level reaches the orderings through the v12 auth rules' power levels.)
 */
import type { StateKey, StateMap } from '../event.js';
import { authChain, authChainDifference, conflictedStateSubgraph } from './auth-chain.js';
import type { ResolveContext } from './context.js';
import { POWER_LEVELS_KEY } from './context.js';
import { iterativeAuthChecks } from './iterative-auth.js';
import { isPowerEvent, mainlineOrder, reverseTopologicalPowerOrder } from './ordering.js';

/**
 * Unconflicted state map and conflicted state set: (K, V) is unconflicted when K is present in every state map with
 * the same V; otherwise every V at K is conflicted — including when K is missing from some state map.
 */
export function partitionStateSets(stateSets: readonly StateMap[]): {
  unconflicted: StateMap;
  conflicted: Map<StateKey, Set<string>>;
} {
  const unconflicted: StateMap = new Map();
  const conflicted = new Map<StateKey, Set<string>>();
  if (stateSets.length === 0) return { unconflicted, conflicted };
  const [first, ...rest] = stateSets;
  const conflictedKeys: StateKey[] = [];
  for (const [k, v] of first) {
    let same = true;
    for (const s of rest) {
      if (s.get(k) !== v) {
        same = false;
        break;
      }
    }
    if (same) unconflicted.set(k, v);
    else conflictedKeys.push(k);
  }
  for (const s of rest) for (const k of s.keys()) if (!first.has(k)) conflictedKeys.push(k);
  for (const k of conflictedKeys) {
    if (conflicted.has(k)) continue;
    const values = new Set<string>();
    for (const s of stateSets) {
      const v = s.get(k);
      if (v !== undefined) values.add(v);
    }
    conflicted.set(k, values);
  }
  return { unconflicted, conflicted };
}

export async function resolveV2(stateSets: readonly StateMap[], ctx: ResolveContext, v21: boolean): Promise<StateMap> {
  const { cache } = ctx;
  const { unconflicted, conflicted } = partitionStateSets(stateSets);
  if (conflicted.size === 0) return unconflicted;

  const conflictedIds = new Set<string>();
  for (const vs of conflicted.values()) for (const v of vs) conflictedIds.add(v);

  // Full conflicted set: the conflicted state set ∪ the auth difference (∪ v2.1: the conflicted state subgraph).
  // Only events the source has, in this room, that are state events can take part.
  const full = new Set<string>(conflictedIds);
  for (const id of await authChainDifference(stateSets, cache)) full.add(id);
  if (v21) for (const id of await conflictedStateSubgraph(conflictedIds, cache)) full.add(id);
  await cache.load(full);
  for (const id of full) if (!cache.get(id)?.isState) full.delete(id);

  // Step 1: X = the power events of the full conflicted set, plus the events of their auth chains that are in the
  // full conflicted set; sorted by the reverse topological power ordering.
  const power = [...full].filter((id) => isPowerEvent(cache.get(id)!));
  const x = new Set<string>(power);
  for (const id of await authChain(power, cache)) if (full.has(id)) x.add(id);
  const sortedPower = await reverseTopologicalPowerOrder(x, ctx);

  // Step 2: iterative auth checks over that list, from the unconflicted state map (v2) or an empty map (v2.1).
  const partial = await iterativeAuthChecks(sortedPower, v21 ? new Map() : unconflicted, ctx);

  // Step 3: the remaining events, in mainline order based on the partially resolved power levels.
  const remaining = [...full].filter((id) => !x.has(id));
  const sortedRest = await mainlineOrder(remaining, partial.get(POWER_LEVELS_KEY), cache);

  // Step 4: iterative auth checks over them, from the partially resolved state.
  const resolved = await iterativeAuthChecks(sortedRest, partial, ctx);

  // Step 5: the unconflicted state map wins wherever it has a key.
  for (const [k, v] of unconflicted) resolved.set(k, v);
  return resolved;
}
