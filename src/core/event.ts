/**
 * A PDU as the core algorithms see it: the wire JSON (never reshaped; hashes and signatures depend on its bytes)
 * plus its event ID and typed accessors that hide the differences between event formats.
 *
 * Formats: room versions 1–2 carry `event_id` and list `prev_events`/`auth_events` as `[id, {sha256}]` pairs;
 * v3+ list plain event IDs and the ID is the reference hash; v12's create event has no `room_id` (the room ID is
 * `!` + the create event's ID without its `$`).
 */
import type { JsonObject, JsonValue } from './json.js';
import { isJsonObject } from './json.js';

export type PduJson = JsonObject;

function refIds(v: JsonValue | undefined): string[] {
  if (!Array.isArray(v)) return [];
  const out: string[] = [];
  for (const item of v) {
    if (typeof item === 'string') out.push(item);
    else if (Array.isArray(item) && typeof item[0] === 'string') out.push(item[0]);
  }
  return out;
}

export class Pdu {
  readonly eventId: string;
  readonly json: PduJson;
  readonly authEvents: readonly string[];
  readonly prevEvents: readonly string[];

  constructor(eventId: string, json: PduJson) {
    this.eventId = eventId;
    this.json = json;
    this.authEvents = refIds(json.auth_events);
    this.prevEvents = refIds(json.prev_events);
  }

  get type(): string {
    return typeof this.json.type === 'string' ? this.json.type : '';
  }
  /** undefined for message (non-state) events. */
  get stateKey(): string | undefined {
    return typeof this.json.state_key === 'string' ? this.json.state_key : undefined;
  }
  get isState(): boolean {
    return typeof this.json.state_key === 'string';
  }
  get sender(): string {
    return typeof this.json.sender === 'string' ? this.json.sender : '';
  }
  get roomId(): string {
    if (typeof this.json.room_id === 'string') return this.json.room_id;
    // Room version 12 create event: the room ID is derived from its own event ID.
    if (this.type === 'm.room.create' && this.eventId.startsWith('$')) return '!' + this.eventId.slice(1);
    return '';
  }
  get content(): JsonObject {
    return isJsonObject(this.json.content) ? this.json.content : {};
  }
  get originServerTs(): number {
    return typeof this.json.origin_server_ts === 'number' ? this.json.origin_server_ts : 0;
  }
  get depth(): number {
    return typeof this.json.depth === 'number' ? this.json.depth : 0;
  }
  /** The redacted event's ID: top-level before v11, in content from v11 (v11 servers also accept it top-level). */
  get redacts(): string | undefined {
    const c = this.content.redacts;
    if (typeof c === 'string') return c;
    return typeof this.json.redacts === 'string' ? this.json.redacts : undefined;
  }
  get origin(): string | undefined {
    return typeof this.json.origin === 'string' ? this.json.origin : undefined;
  }
  /** Membership of an m.room.member event (content.membership). */
  get membership(): string | undefined {
    const m = this.content.membership;
    return typeof m === 'string' ? m : undefined;
  }
}

/** Key of a state map entry: `type` NUL `state_key`. NUL cannot occur unescaped in an event type. */
export type StateKey = string;
export function stateKey(type: string, key: string): StateKey {
  return type + '\u0000' + key;
}
export function splitStateKey(k: StateKey): [type: string, stateKey: string] {
  const i = k.indexOf('\u0000');
  return [k.slice(0, i), k.slice(i + 1)];
}
/** A room state: (type, state_key) → event ID. */
export type StateMap = Map<StateKey, string>;
