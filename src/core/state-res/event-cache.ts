/**
 * Where state resolution reads events from, and the per-resolution cache in front of it.
 *
 * The algorithms walk auth chains level by level: each level is fetched with one `getEvents` call (or, without
 * one, concurrent `getEvent` calls in bounded batches), so the number of awaits is the depth of the walk, not the
 * number of events. After a `load`, lookups are synchronous.
 */
import type { Pdu } from '../event.js';

/** Storage-backed in production; a Map in tests. */
export interface EventSource {
  getEvent(id: string): Promise<Pdu | undefined>;
  /** Batch fetch; absent IDs are simply missing from the result. */
  getEvents?(ids: string[]): Promise<Map<string, Pdu>>;
  /**
   * Which of `ids` were rejected on receipt (server-server-api §Checks performed on receipt of a PDU, checks 4–5).
   * The iterative auth checks never take a rejected event from an event's `auth_events`. Absent: none are.
   */
  getRejected?(ids: string[]): Promise<Set<string>>;
}

/** How many concurrent `getEvent` calls a source without `getEvents` gets at once. */
const SINGLE_FETCH_BATCH = 256;
/** The largest `getEvents` call we make. */
const MULTI_FETCH_BATCH = 2000;

/**
 * Memoises one EventSource for one resolution. Events that are missing, or that belong to another room than
 * `roomId` (once set), read as undefined: the algorithms treat both the same way, as events they cannot see.
 */
export class EventCache implements EventSource {
  readonly #source: EventSource;
  readonly #events = new Map<string, Pdu>();
  readonly #missing = new Set<string>();
  readonly #rejected = new Set<string>();
  readonly #rejectionKnown = new Set<string>();
  /** The room being resolved; events of other rooms are hidden. */
  roomId: string | undefined;

  constructor(source: EventSource, roomId?: string) {
    this.#source = source;
    this.roomId = roomId;
  }

  /** A cache over `source`, or `source` itself when it already is one (so helpers can share a cache). */
  static over(source: EventSource): EventCache {
    return source instanceof EventCache ? source : new EventCache(source);
  }

  /** The event, if it is loaded, present and in the room. Call `load` first. */
  get(id: string): Pdu | undefined {
    const e = this.#events.get(id);
    if (e === undefined) return undefined;
    if (this.roomId !== undefined && e.roomId !== this.roomId) return undefined;
    return e;
  }

  /** Whether `load` has already asked for this ID (found or not). */
  known(id: string): boolean {
    return this.#events.has(id) || this.#missing.has(id);
  }

  /** Fetches every ID not asked for before. */
  async load(ids: Iterable<string>): Promise<void> {
    const want: string[] = [];
    const seen = new Set<string>();
    for (const id of ids) {
      if (typeof id !== 'string' || seen.has(id) || this.known(id)) continue;
      seen.add(id);
      want.push(id);
    }
    if (want.length === 0) return;
    const source = this.#source;
    if (source.getEvents) {
      for (let i = 0; i < want.length; i += MULTI_FETCH_BATCH) {
        const chunk = want.slice(i, i + MULTI_FETCH_BATCH);
        const got = await source.getEvents(chunk);
        for (const id of chunk) this.#record(id, got.get(id));
      }
    } else {
      for (let i = 0; i < want.length; i += SINGLE_FETCH_BATCH) {
        const chunk = want.slice(i, i + SINGLE_FETCH_BATCH);
        const got = await Promise.all(chunk.map((id) => source.getEvent(id)));
        chunk.forEach((id, j) => this.#record(id, got[j]));
      }
    }
  }

  /** Asks the source which of `ids` were rejected; afterwards `isRejected` answers synchronously. */
  async loadRejections(ids: Iterable<string>): Promise<void> {
    if (!this.#source.getRejected) return;
    const want = [...new Set(ids)].filter((id) => !this.#rejectionKnown.has(id));
    if (want.length === 0) return;
    const rejected = await this.#source.getRejected(want);
    for (const id of want) {
      this.#rejectionKnown.add(id);
      if (rejected.has(id)) this.#rejected.add(id);
    }
  }

  isRejected(id: string): boolean {
    return this.#rejected.has(id);
  }

  // EventSource, so a cache can be handed to the exported helpers.
  async getEvent(id: string): Promise<Pdu | undefined> {
    await this.load([id]);
    return this.get(id);
  }
  async getEvents(ids: string[]): Promise<Map<string, Pdu>> {
    await this.load(ids);
    const out = new Map<string, Pdu>();
    for (const id of ids) {
      const e = this.get(id);
      if (e) out.set(id, e);
    }
    return out;
  }
  async getRejected(ids: string[]): Promise<Set<string>> {
    await this.loadRejections(ids);
    return new Set(ids.filter((id) => this.#rejected.has(id)));
  }

  #record(id: string, e: Pdu | undefined): void {
    // A source that answers with a different event than asked for is treated as not having it.
    if (e && e.eventId === id) this.#events.set(id, e);
    else this.#missing.add(id);
  }
}
