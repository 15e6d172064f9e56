/**
 * The redaction algorithm: which top-level keys and which `content` keys survive, per room version.
 * Spec: shared/matrix-spec/content/rooms/fragments/v1-redactions.md (v1–v5), v6-redactions.md (v6–v7),
 * content/rooms/v8.md §"Redactions" (v8), fragments/v9-redactions.md (v9–v10), v11-redactions.md (v11–v12).
 *
 * Differences between the variants:
 * - v1: `m.room.aliases` keeps `aliases`.            - v6: it no longer does.
 * - v8: `m.room.join_rules` also keeps `allow`.      - v9: `m.room.member` also keeps
 *   `join_authorised_via_users_server`.
 * - v11: top-level `origin`, `membership`, `prev_state` are no longer kept; `m.room.create` keeps all of its
 *   content; `m.room.power_levels` also keeps `invite`; `m.room.redaction` keeps `redacts`; `m.room.member` keeps
 *   `third_party_invite` reduced to its `signed` key.
 *
 * The result always has a `content` object (empty when the event had none or a non-object), as Synapse does.
 * Kept values are shared with the input, not copied: treat wire JSON as immutable.
 */
import type { JsonObject } from './json.js';
import { isJsonObject } from './json.js';
import type { RoomVersion } from './room-versions.js';

type Variant = RoomVersion['redaction'];

const TOP_LEVEL_BEFORE_V11: readonly string[] = [
  'event_id',
  'type',
  'room_id',
  'sender',
  'state_key',
  'content',
  'hashes',
  'signatures',
  'depth',
  'prev_events',
  'prev_state',
  'auth_events',
  'origin',
  'origin_server_ts',
  'membership',
];
const TOP_LEVEL_V11: readonly string[] = TOP_LEVEL_BEFORE_V11.filter(
  (k) => k !== 'origin' && k !== 'membership' && k !== 'prev_state',
);

const POWER_LEVELS_BEFORE_V11 = ['ban', 'events', 'events_default', 'kick', 'redact', 'state_default', 'users', 'users_default'];

/** Content keys kept for each event type; `'all'` keeps the whole content. */
function keptContentKeys(variant: Variant, type: string): readonly string[] | 'all' {
  const v8Plus = variant === 'v8' || variant === 'v9' || variant === 'v11';
  const v9Plus = variant === 'v9' || variant === 'v11';
  const v11 = variant === 'v11';
  switch (type) {
    case 'm.room.member':
      // (v11 additionally keeps third_party_invite.signed; see redactContent.)
      return v9Plus ? ['membership', 'join_authorised_via_users_server'] : ['membership'];
    case 'm.room.create':
      return v11 ? 'all' : ['creator'];
    case 'm.room.join_rules':
      return v8Plus ? ['join_rule', 'allow'] : ['join_rule'];
    case 'm.room.power_levels':
      return v11 ? [...POWER_LEVELS_BEFORE_V11, 'invite'] : POWER_LEVELS_BEFORE_V11;
    case 'm.room.aliases':
      return variant === 'v1' ? ['aliases'] : [];
    case 'm.room.history_visibility':
      return ['history_visibility'];
    case 'm.room.redaction':
      return v11 ? ['redacts'] : [];
    default:
      return [];
  }
}

function redactContent(variant: Variant, type: string, content: JsonObject): JsonObject {
  const keep = keptContentKeys(variant, type);
  if (keep === 'all') return { ...content };
  const out: JsonObject = {};
  for (const k of keep) {
    if (Object.hasOwn(content, k)) out[k] = content[k];
  }
  if (variant === 'v11' && type === 'm.room.member') {
    const tpi = content.third_party_invite;
    if (isJsonObject(tpi) && Object.hasOwn(tpi, 'signed')) out.third_party_invite = { signed: tpi.signed };
  }
  return out;
}

/** The redacted copy of event `json` under the room version's redaction rules. Does not modify `json`. */
export function redactEvent(json: JsonObject, version: RoomVersion): JsonObject {
  const variant = version.redaction;
  const keys = variant === 'v11' ? TOP_LEVEL_V11 : TOP_LEVEL_BEFORE_V11;
  const out: JsonObject = {};
  for (const k of keys) {
    if (k !== 'content' && Object.hasOwn(json, k)) out[k] = json[k];
  }
  const type = typeof json.type === 'string' ? json.type : '';
  out.content = isJsonObject(json.content) ? redactContent(variant, type, json.content) : {};
  return out;
}
