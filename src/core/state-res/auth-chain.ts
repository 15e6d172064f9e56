/**
 * Auth chains, the auth difference and the conflicted state subgraph.
 *
 * Spec: shared/matrix-spec/content/rooms/fragments/v2-state-res.md §Definitions ("Auth chain", "Auth difference")
 * and rooms/v12.md §Definitions ("Conflicted state subgraph").
 *
 * Every walk is breadth-first, one batched fetch per level, with a visited set: a cycle in `auth_events` (which a
 * valid room never has) ends the walk instead of hanging it. Events the source does not have, or that belong to
 * another room, have no auth events of their own and are left out of the results.
 */
import type { StateMap } from '../event.js';
import { EventCache } from './event-cache.js';
import type { EventSource } from './event-cache.js';

export interface AuthChainOptions {
  /** Also count the starting events themselves (each one that the source has). Default false, as in the spec. */
  includeStart?: boolean;
}

/**
 * The auth chain of a set of events: every event reachable from them by following `auth_events` links, i.e. the
 * union of their auth chains. A starting event is in the result only if another starting event reaches it (or
 * `includeStart` is set).
 */
export async function authChain(
  ids: Iterable<string>,
  events: EventSource,
  options: AuthChainOptions = {},
): Promise<Set<string>> {
  const cache = EventCache.over(events);
  const start = [...new Set(ids)];
  const chain = new Set<string>();
  const expanded = new Set<string>();
  let frontier = start;
  while (frontier.length > 0) {
    await cache.load(frontier);
    const next: string[] = [];
    for (const id of frontier) {
      if (expanded.has(id)) continue;
      expanded.add(id);
      const e = cache.get(id);
      if (!e) continue;
      for (const a of e.authEvents) {
        if (chain.has(a)) continue;
        chain.add(a);
        next.push(a);
      }
    }
    frontier = next;
  }
  for (const id of chain) if (!cache.get(id)) chain.delete(id);
  if (options.includeStart) for (const id of start) if (cache.get(id)) chain.add(id);
  return chain;
}

/**
 * The auth difference ∪Cᵢ − ∩Cᵢ, where Cᵢ is the full auth chain of state set Sᵢ.
 *
 * Cᵢ here includes the events of Sᵢ themselves, not only their ancestors (the spec's wording, "the union of the auth
 * chains for each event in Sᵢ", leaves this open). It changes nothing for conflicted events, which are in the full
 * conflicted set anyway, but it keeps an unconflicted event out of the difference just because some state set
 * happens not to cite it — as deployed servers do.
 *
 * Cost: the events present in every state set (in practice the unconflicted state) are walked once together; only
 * the few events peculiar to each set get their own walk. With Uᶜ = that common part and Aᵢ the chain of the rest
 * of Sᵢ, Cᵢ = chain(Uᶜ) ∪ Aᵢ, so ∪Cᵢ − ∩Cᵢ = ∪Aᵢ − ∩Aᵢ − chain(Uᶜ).
 */
export async function authChainDifference(stateSets: readonly StateMap[], events: EventSource): Promise<Set<string>> {
  const out = new Set<string>();
  if (stateSets.length < 2) return out;
  const cache = EventCache.over(events);
  const valueSets = stateSets.map((s) => new Set(s.values()));
  const common = new Set<string>();
  for (const id of valueSets[0]) if (valueSets.every((v) => v.has(id))) common.add(id);

  const own: Set<string>[] = [];
  for (const v of valueSets) {
    const rest = [...v].filter((id) => !common.has(id));
    own.push(await authChain(rest, cache, { includeStart: true }));
  }
  const union = new Set<string>();
  for (const a of own) for (const id of a) union.add(id);
  const candidates = [...union].filter((id) => !own.every((a) => a.has(id)));
  if (candidates.length === 0) return out;

  const commonChain = await authChain(common, cache, { includeStart: true });
  for (const id of candidates) if (!commonChain.has(id)) out.add(id);
  return out;
}

/**
 * Room version 12's conflicted state subgraph: every event on an `auth_events` path from one conflicted event to
 * another, endpoints included. Found as the events reachable from the conflicted set (walking down) that can also
 * reach it (walking back up the same edges).
 */
export async function conflictedStateSubgraph(conflicted: Iterable<string>, events: EventSource): Promise<Set<string>> {
  const cache = EventCache.over(events);
  const starts = [...new Set(conflicted)];
  // Down: everything reachable from a conflicted event, remembering who points at whom.
  const reachable = new Set<string>(starts);
  const pointedFrom = new Map<string, string[]>();
  let frontier = starts;
  while (frontier.length > 0) {
    await cache.load(frontier);
    const next: string[] = [];
    for (const id of frontier) {
      const e = cache.get(id);
      if (!e) continue;
      for (const a of e.authEvents) {
        let from = pointedFrom.get(a);
        if (!from) pointedFrom.set(a, (from = []));
        from.push(id);
        if (!reachable.has(a)) {
          reachable.add(a);
          next.push(a);
        }
      }
    }
    frontier = next;
  }
  // Up: from each conflicted event back along the recorded edges; every event met lies on a path between two
  // conflicted events (or is one).
  const out = new Set<string>();
  const stack = starts.filter((id) => cache.get(id));
  for (const id of stack) out.add(id);
  while (stack.length > 0) {
    const id = stack.pop() as string;
    for (const parent of pointedFrom.get(id) ?? []) {
      if (!out.has(parent)) {
        out.add(parent);
        stack.push(parent);
      }
    }
  }
  return out;
}
