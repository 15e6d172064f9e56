/**
 * Historical room state as state groups (the idea Synapse and Dendrite use): a group is a delta against a previous
 * group, with a full snapshot every SNAPSHOT_EVERY links so loading one never walks a long chain. Every event
 * records the group before and after it (records.ts), so "the state at event E" is one load.
 *
 * state_groups: [groupId] → StateGroupRecord; ['nextId', 'stateGroup'] in `server` numbers them.
 * Group 0 is the empty state (needs no record).
 */
import type { StateKey, StateMap } from '../core/event.js';
import type { ReadTx, WriteTx } from './kv.js';
import { STORES } from './schema.js';

export const EMPTY_STATE_GROUP = 0;
const SNAPSHOT_EVERY = 32;

export interface StateGroupRecord {
  /** The group this one is a delta against; absent for snapshots. */
  prev?: number;
  /** Links since the last snapshot (0 for a snapshot). */
  chain: number;
  /** (type\0state_key) → event ID. In a snapshot, the whole state. */
  delta: Record<StateKey, string>;
}

/** Loads the full state of a group. Missing groups load as empty (and are reported by `undefined` when strict). */
export async function loadStateGroup(tx: ReadTx, groupId: number): Promise<StateMap> {
  const chain: StateGroupRecord[] = [];
  let id: number | undefined = groupId;
  while (id !== undefined && id !== EMPTY_STATE_GROUP) {
    const rec: StateGroupRecord | undefined = await tx.get<StateGroupRecord>(STORES.stateGroups, ['g', id]);
    if (!rec) break;
    chain.push(rec);
    id = rec.prev;
  }
  const state: StateMap = new Map();
  for (let i = chain.length - 1; i >= 0; i--) {
    for (const [k, v] of Object.entries(chain[i].delta)) state.set(k, v);
  }
  return state;
}

/**
 * Stores a new group: `changes` applied on top of group `base` (whose full state the caller may pass to avoid a
 * reload when a snapshot is due). Returns the new group's ID; `base` itself when there are no changes.
 */
export async function addStateGroup(
  tx: WriteTx,
  base: number,
  changes: ReadonlyMap<StateKey, string>,
  baseState?: StateMap,
): Promise<number> {
  if (changes.size === 0) return base;
  const baseRec = base === EMPTY_STATE_GROUP ? undefined : await tx.get<StateGroupRecord>(STORES.stateGroups, ['g', base]);
  const chain = baseRec ? baseRec.chain + 1 : 0;
  let rec: StateGroupRecord;
  if (baseRec === undefined || chain >= SNAPSHOT_EVERY) {
    const full = new Map(baseState ?? (await loadStateGroup(tx, base)));
    for (const [k, v] of changes) full.set(k, v);
    rec = { chain: 0, delta: Object.fromEntries(full) };
  } else {
    rec = { prev: base, chain, delta: Object.fromEntries(changes) };
  }
  const id = ((await tx.get<number>(STORES.server, ['nextId', 'stateGroup'])) ?? 0) + 1;
  await tx.put(STORES.server, ['nextId', 'stateGroup'], id);
  await tx.put(STORES.stateGroups, ['g', id], rec);
  return id;
}
