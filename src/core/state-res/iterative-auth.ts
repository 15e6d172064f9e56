/**
 * The iterative auth checks of state resolution v2 and v2.1.
 *
 * Spec: shared/matrix-spec/content/rooms/fragments/v2-state-res.md §Definitions ("Iterative auth checks") and
 * §Rejected events; server-server-api.md §Auth events selection.
 *
 * "The iterative auth checks algorithm takes as input an initial room state and a sorted list of state events, and
 * constructs a new room state by iterating through the event list and applying the state event to the room state if
 * the state event is allowed by the authorisation rules. If the state event is not allowed by the authorisation
 * rules, then the event is ignored. If a (event_type, state_key) key that is required for checking the
 * authorisation rules is not present in the state, then the appropriate state event from the event's auth_events is
 * used if the auth event is not rejected."
 */
import { authStateKeysFor } from '../auth/auth-events.js';
import { authorize } from '../auth/rules.js';
import type { AuthState } from '../auth/rules.js';
import type { Pdu, StateKey, StateMap } from '../event.js';
import { stateKey } from '../event.js';
import type { ResolveContext } from './context.js';
import { CREATE_KEY, createEventIdOfRoom, impliedCreateEvent } from './context.js';

/** Runs the iterative auth checks over `sorted` (event IDs) from `initial`; returns the new state. */
export async function iterativeAuthChecks(
  sorted: readonly string[],
  initial: StateMap,
  ctx: ResolveContext,
): Promise<StateMap> {
  const { cache, version } = ctx;
  const state: StateMap = new Map(initial);

  // Everything the loop can read, fetched up front: the events, their auth events (and whether those were
  // rejected), the v12 create event, and the current state at every key the loop may consult.
  await cache.load(sorted);
  const authIds: string[] = [];
  const selections = new Map<string, Array<[string, string]>>();
  const stateIds: string[] = [];
  for (const id of sorted) {
    const e = cache.get(id);
    if (!e) continue;
    authIds.push(...e.authEvents);
    const sel = authStateKeysFor(e, version);
    selections.set(id, sel);
    for (const [t, k] of sel) {
      const sid = state.get(stateKey(t, k));
      if (sid !== undefined) stateIds.push(sid);
    }
    if (version.roomIdFromCreateEvent) {
      const c = createEventIdOfRoom(e.roomId);
      if (c) stateIds.push(c);
    }
  }
  await cache.load([...authIds, ...stateIds]);
  await cache.loadRejections(authIds);

  for (const id of sorted) {
    const event = cache.get(id);
    if (!event || !event.isState) continue;
    const selection = selections.get(id) ?? [];

    // The event's own auth events, keyed by (type, state_key), leaving out rejected ones …
    const authMap = new Map<StateKey, Pdu>();
    for (const a of event.authEvents) {
      const ae = cache.get(a);
      if (ae && ae.stateKey !== undefined && !cache.isRejected(a)) authMap.set(stateKey(ae.type, ae.stateKey), ae);
    }
    // … overridden by the state being built, for each key the auth rules need and the state has.
    const missing = selection.map(([t, k]) => state.get(stateKey(t, k))).filter((s): s is string => s !== undefined && !cache.known(s));
    if (missing.length > 0) await cache.load(missing);
    for (const [t, k] of selection) {
      const key = stateKey(t, k);
      const sid = state.get(key);
      const se = sid === undefined ? undefined : cache.get(sid);
      if (se) authMap.set(key, se);
    }
    // v12: the create event is never an auth event; the room ID names it (auth rule 2 checks that it does).
    if (!authMap.has(CREATE_KEY)) {
      const created = impliedCreateEvent(event, ctx);
      if (created) authMap.set(CREATE_KEY, created);
    }

    const authState: AuthState = { get: (type, key) => authMap.get(stateKey(type, key)) };
    const result = authorize(event, authState, version);
    if (result.ok) state.set(stateKey(event.type, event.stateKey as string), id);
    else ctx.onRejected?.(event, result.reason);
  }
  return state;
}
