/**
 * Event authorisation rules for room versions 1–12.
 *
 * Spec: shared/matrix-spec/content/rooms/fragments/v1-auth-rules.md (v1–v2), v3-auth-rules.md (v3–v5),
 * rooms/v6.md, rooms/v7.md, fragments/v8-auth-rules.md (v8–v9), rooms/v10.md, rooms/v11.md, rooms/v12.md, and
 * server-server-api.md §Checks performed on receipt of a PDU / §Auth events selection.
 *
 * The rule numbers move between versions as rules are added and removed. Comments give the number in the latest
 * text (v12) and the older numbers where they differ:
 *
 *   rule                          v1–v5       v6–v11      v12
 *   create event                  1           1           1
 *   room_id names the create      –           –           2
 *   auth_events checks            2           2           3     (checkAuthEventsSelection)
 *   m.federate                    3           3           4
 *   m.room.aliases                4           –           –
 *   m.room.member                 5           4           5
 *   sender must be joined         6           5           6
 *   m.room.third_party_invite     7           6           7
 *   required power level          8           7           8
 *   state_key '@' must be sender  9           8           9
 *   m.room.power_levels           10          9           10
 *   m.room.redaction              11 (v1–v2)  –           –
 *   otherwise allow               12          10          11
 *
 * Inside m.room.member, v8 inserted the join_authorised_via_users_server signature rule as x.2, so join/invite/
 * leave/ban/knock are x.2–x.6 before v8 and x.3–x.7 from v8 on.
 */
import type { Pdu } from '../event.js';
import type { JsonObject } from '../json.js';
import { isValidUserId } from '../identifiers.js';
import { isJsonObject } from '../json.js';
import type { RoomVersion } from '../room-versions.js';
import { roomVersion } from '../room-versions.js';
import { authStateKeysFor } from './auth-events.js';
import type { PowerLevels } from './power-levels.js';
import {
  POWER_LEVEL_KEYS,
  powerLevelOf,
  powerLevelValue,
  powerLevelsContentProblem,
  powerLevelsFrom,
  requiredPowerLevel,
  roomCreators,
} from './power-levels.js';
import { thirdPartyInviteSignatureMatches } from './third-party-invite.js';

/**
 * The state an event is checked against, looked up by (type, state_key): the event's auth events, the room state
 * before it, or the current state — the caller decides. In v12 the create event is not among an event's auth
 * events, so the caller must include the create event the event's room ID names.
 */
export interface AuthState {
  get(type: string, stateKey: string): Pdu | undefined;
}

export type AuthResult = { ok: true } | { ok: false; reason: string };

export interface AuthOptions {
  /**
   * Whether `event` is validly signed by `serverName` (rule 5.2 [v8–v11: 4.2], join_authorised_via_users_server).
   * The default accepts the event when its `signatures` has an entry for that server: the signature checks on
   * receipt of a PDU must already have verified every signature on it.
   */
  isSignedBy?: (event: Pdu, serverName: string) => boolean;
}

/** An AuthState over a list of events, e.g. an event's auth events. Later events win on duplicate keys. */
export function authStateFromEvents(events: Iterable<Pdu>): AuthState {
  const map = new Map<string, Pdu>();
  for (const e of events) {
    if (e.stateKey !== undefined) map.set(e.type + '\u0000' + e.stateKey, e);
  }
  return { get: (type, stateKey) => map.get(type + '\u0000' + stateKey) };
}

/** The part after the first ':' of a user, room or v1–v2 event ID ('' when there is none). */
function domainOf(id: string): string {
  const i = id.indexOf(':');
  return i < 0 ? '' : id.slice(i + 1);
}

const ALLOW: AuthResult = { ok: true };
function reject(reason: string): AuthResult {
  return { ok: false, reason };
}

function defaultIsSignedBy(event: Pdu, serverName: string): boolean {
  const sigs = event.json.signatures;
  if (!isJsonObject(sigs)) return false;
  const mine = sigs[serverName];
  return isJsonObject(mine) && Object.keys(mine).length > 0;
}

/**
 * Rule 2 [v12: 3]: the event's own `auth_events` list, checked against the events it names. `authEvents` holds
 * those events (in any order; extra events are ignored); `isRejected` tells whether one was itself rejected.
 * Runs once per event, independent of the state `authorize` checks it against. Create events pass: rule 1 decides
 * them before rule 2 is reached.
 */
export function checkAuthEventsSelection(
  event: Pdu,
  authEvents: readonly Pdu[],
  version: RoomVersion,
  isRejected: (eventId: string) => boolean = () => false,
): AuthResult {
  if (event.type === 'm.room.create') return ALLOW;
  const byId = new Map(authEvents.map((e) => [e.eventId, e]));
  const listed: Pdu[] = [];
  for (const id of event.authEvents) {
    const e = byId.get(id);
    if (!e) return reject(`auth event ${id} is not available`);
    listed.push(e);
  }
  // 2.1 [v12: 3.1]: duplicate entries for a (type, state_key) pair → reject.
  const seen = new Set<string>();
  for (const e of listed) {
    const key = e.type + '\u0000' + (e.stateKey ?? '\u0000none');
    if (seen.has(key)) return reject(`auth_events has two entries for (${e.type}, ${e.stateKey ?? '-'})`);
    seen.add(key);
  }
  // 2.2 [v12: 3.2]: entries whose (type, state_key) the auth events selection would not pick → reject. In v12 the
  // selection never includes m.room.create.
  const selection = authStateKeysFor(event, version);
  for (const e of listed) {
    if (!selection.some(([t, k]) => t === e.type && k === e.stateKey)) {
      return reject(`auth event ${e.eventId} (${e.type}, ${e.stateKey ?? '-'}) is not in the auth events selection`);
    }
  }
  // 2.3 [v12: 3.3]: entries that were themselves rejected → reject.
  for (const e of listed) {
    if (isRejected(e.eventId)) return reject(`auth event ${e.eventId} was rejected`);
  }
  // 2.4 (v1–v11): no m.room.create among the entries → reject.
  if (!version.roomIdFromCreateEvent && !listed.some((e) => e.type === 'm.room.create')) {
    return reject('auth_events has no m.room.create event');
  }
  // 2.5 [v12: 3.5]: an entry whose room_id differs from the event's → reject.
  for (const e of listed) {
    if (e.roomId !== event.roomId) return reject(`auth event ${e.eventId} is in another room`);
  }
  return ALLOW;
}

/** Everything the rules after the create rule look at, read once. */
interface Ctx {
  readonly event: Pdu;
  readonly state: AuthState;
  readonly version: RoomVersion;
  readonly options: AuthOptions;
  readonly create: Pdu;
  /** The current power levels, with defaults filled in. */
  readonly pl: PowerLevels;
  /** The current power levels as levelOf needs them: undefined when the room has no power-levels event. */
  readonly plIfAny: PowerLevels | undefined;
  readonly creators: readonly string[];
}

function membershipOf(state: AuthState, userId: string): string | undefined {
  return state.get('m.room.member', userId)?.membership;
}
function levelOf(ctx: Ctx, userId: string): number {
  return powerLevelOf(userId, ctx.plIfAny, ctx.creators, ctx.version);
}

/**
 * Whether `event` passes the authorisation rules against `state`. Rule 2 (the event's own auth_events list) is
 * state-independent and lives in `checkAuthEventsSelection`; run it once before checking against the event's auth
 * events. Never throws: malformed events are rejected with a reason.
 */
export function authorize(event: Pdu, state: AuthState, version: RoomVersion, options: AuthOptions = {}): AuthResult {
  try {
    return authorizeInner(event, state, version, options);
  } catch (err) {
    // The rules read only plain JSON; reaching this is a bug, but a malformed event must still just fail auth.
    return reject(`internal error while authorising: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function authorizeInner(event: Pdu, state: AuthState, version: RoomVersion, options: AuthOptions): AuthResult {
  // Rule 1: m.room.create.
  if (event.type === 'm.room.create') return authorizeCreate(event, version);

  const create = state.get('m.room.create', '');
  if (!create) return reject('no m.room.create event in the state');

  // Rule 2 (v12): the room_id must be the ID of the (accepted) create event with sigil '!' instead of '$'.
  if (version.roomIdFromCreateEvent) {
    const roomId = event.json.room_id;
    if (typeof roomId !== 'string' || !create.eventId.startsWith('$') || roomId !== '!' + create.eventId.slice(1)) {
      return reject("room_id is not the create event's ID");
    }
  }

  // Rule 3 [v12: 4]: m.federate false in the create event → only the creating server's users may send.
  if (create.content['m.federate'] === false && domainOf(event.sender) !== domainOf(create.sender)) {
    return reject('the room is not federated and the sender is from another server');
  }

  // Rule 4 (v1–v5): m.room.aliases.
  if (version.specialCaseAliasesAuth && event.type === 'm.room.aliases') {
    // 4.1: no state_key → reject.
    if (event.stateKey === undefined) return reject('m.room.aliases has no state_key');
    // 4.2: the sender's domain must be the state_key.
    if (domainOf(event.sender) !== event.stateKey) return reject("m.room.aliases state_key is not the sender's domain");
    // 4.3: otherwise allow.
    return ALLOW;
  }

  const plEvent = state.get('m.room.power_levels', '');
  const pl = powerLevelsFrom(plEvent, version);
  const creators = roomCreators(create, version);
  const ctx: Ctx = { event, state, version, options, create, pl, plIfAny: plEvent ? pl : undefined, creators };

  // Rule 5 [v6–v11: 4]: m.room.member.
  if (event.type === 'm.room.member') return authorizeMember(ctx);

  // Rule 6 [v6–v11: 5]: the sender must be joined.
  if (membershipOf(state, event.sender) !== 'join') return reject('the sender is not joined to the room');

  const senderLevel = levelOf(ctx, event.sender);

  // Rule 7 [v6–v11: 6]: m.room.third_party_invite: allow iff the sender's level ≥ the invite level.
  if (event.type === 'm.room.third_party_invite') {
    return senderLevel >= ctx.pl.invite ? ALLOW : reject('the sender may not send third-party invites');
  }

  // Rule 8 [v6–v11: 7]: the event type's required power level is greater than the sender's → reject.
  if (requiredPowerLevel(event.type, event.isState, ctx.pl) > senderLevel) {
    return reject(`the sender's power level is too low to send ${event.type}`);
  }

  // Rule 9 [v6–v11: 8]: a state_key starting with '@' must be the sender.
  if (event.stateKey !== undefined && event.stateKey.startsWith('@') && event.stateKey !== event.sender) {
    return reject("a state_key starting with '@' must be the sender");
  }

  // Rule 10 [v6–v11: 9]: m.room.power_levels.
  if (event.type === 'm.room.power_levels') return authorizePowerLevels(ctx, senderLevel);

  // Rule 11 (v1–v2 only): m.room.redaction. From v3 redactions are checked when applied (Handling redactions), as
  // event IDs no longer carry a domain; eventIdFormat 'server' is exactly the versions with this rule.
  if (version.eventIdFormat === 'server' && event.type === 'm.room.redaction') {
    // 11.1: the sender's level ≥ the redact level → allow.
    if (senderLevel >= ctx.pl.redact) return ALLOW;
    // 11.2: the redacted event's ID has the same domain as the redaction's ID → allow.
    const redacts = event.json.redacts;
    if (typeof redacts === 'string' && domainOf(redacts) !== '' && domainOf(redacts) === domainOf(event.eventId)) {
      return ALLOW;
    }
    // 11.3: otherwise reject.
    return reject('the sender may not redact events from another server');
  }

  // Rule 12 [v6–v11: 10, v12: 11]: otherwise allow.
  return ALLOW;
}

/** Rule 1: the m.room.create event. */
function authorizeCreate(event: Pdu, version: RoomVersion): AuthResult {
  const json = event.json;
  const content = event.content;
  // 1.1: any prev_events → reject.
  if (Object.hasOwn(json, 'prev_events') && !(Array.isArray(json.prev_events) && json.prev_events.length === 0)) {
    return reject('the create event has prev_events');
  }
  if (version.roomIdFromCreateEvent) {
    // 1.2 (v12): the event has a room_id → reject (the room ID is derived from the event ID).
    if (Object.hasOwn(json, 'room_id')) return reject('the create event has a room_id');
  } else {
    // 1.2 (v1–v11): the room_id's domain must be the sender's domain.
    const roomId = typeof json.room_id === 'string' ? json.room_id : '';
    if (domainOf(roomId) === '' || domainOf(roomId) !== domainOf(event.sender)) {
      return reject("the create event's room_id domain is not the sender's domain");
    }
  }
  // 1.3: content.room_version present and not a recognised version → reject.
  if (Object.hasOwn(content, 'room_version')) {
    const rv = content.room_version;
    if (typeof rv !== 'string' || roomVersion(rv) === undefined) return reject('unrecognised room_version');
  }
  // 1.4 (v1–v10): content has no creator property → reject. (v11 dropped the property.)
  if (!version.implicitRoomCreator && !Object.hasOwn(content, 'creator')) return reject('the create event has no creator');
  // 1.4 (v12): additional_creators, if present, must be an array of valid user IDs.
  if (version.privilegedCreators && Object.hasOwn(content, 'additional_creators')) {
    const extra = content.additional_creators;
    if (!Array.isArray(extra) || !extra.every((u) => typeof u === 'string' && isValidUserId(u))) {
      return reject('additional_creators is not an array of user IDs');
    }
  }
  // 1.5: otherwise allow.
  return ALLOW;
}

/** The creator named by rule 5.3.1: content.creator (v1–v10) or the create event's sender (v11+). */
function firstJoinCreator(create: Pdu, version: RoomVersion): string | undefined {
  if (version.implicitRoomCreator) return create.sender;
  const c = create.content.creator;
  return typeof c === 'string' ? c : undefined;
}

/** Rule 5 [v6–v11: 4]: m.room.member. Sub-rule numbers are v8+ (x.3 join …); before v8 subtract one. */
function authorizeMember(ctx: Ctx): AuthResult {
  const { event, state, version } = ctx;
  const content = event.content;
  const target = event.stateKey;
  // 5.1: no state_key, or no membership in content → reject.
  if (target === undefined) return reject('m.room.member has no state_key');
  if (!Object.hasOwn(content, 'membership')) return reject('m.room.member has no membership');
  const membership = content.membership;

  // 5.2 (v8+): content.join_authorised_via_users_server → the event must be validly signed by that user's server.
  if (version.restrictedJoinRule && Object.hasOwn(content, 'join_authorised_via_users_server')) {
    const authoriser = content.join_authorised_via_users_server;
    if (typeof authoriser !== 'string' || !isValidUserId(authoriser)) {
      return reject('join_authorised_via_users_server is not a user ID');
    }
    const isSignedBy = ctx.options.isSignedBy ?? defaultIsSignedBy;
    if (!isSignedBy(event, domainOf(authoriser))) {
      return reject("the event is not signed by join_authorised_via_users_server's server");
    }
  }

  const senderMembership = membershipOf(state, event.sender);
  const targetMembership = membershipOf(state, target);

  switch (membership) {
    case 'join':
      return authorizeJoin(ctx, target, senderMembership);
    case 'invite':
      return authorizeInvite(ctx, target, senderMembership, targetMembership);
    case 'leave': {
      // 5.5 [v1–v7: .4]: leave.
      // 5.5.1: leaving oneself is allowed iff the current membership is invite or join (v7+: or knock).
      if (event.sender === target) {
        const ok =
          senderMembership === 'invite' || senderMembership === 'join' || (version.knock && senderMembership === 'knock');
        return ok ? ALLOW : reject(`cannot leave from membership ${senderMembership ?? 'none'}`);
      }
      // 5.5.2: the sender is not joined → reject.
      if (senderMembership !== 'join') return reject('the sender is not joined to the room');
      const senderLevel = levelOf(ctx, event.sender);
      const targetLevel = levelOf(ctx, target);
      // 5.5.3: unbanning needs the ban level.
      if (targetMembership === 'ban' && senderLevel < ctx.pl.ban) return reject('the sender may not unban');
      // 5.5.4: kick level reached and the target's level is below the sender's → allow.
      if (senderLevel >= ctx.pl.kick && targetLevel < senderLevel) return ALLOW;
      // 5.5.5: otherwise reject.
      return reject('the sender may not kick this user');
    }
    case 'ban': {
      // 5.6 [v1–v7: .5]: ban.
      // 5.6.1: the sender is not joined → reject.
      if (senderMembership !== 'join') return reject('the sender is not joined to the room');
      // 5.6.2: ban level reached and the target's level is below the sender's → allow.
      const senderLevel = levelOf(ctx, event.sender);
      if (senderLevel >= ctx.pl.ban && levelOf(ctx, target) < senderLevel) return ALLOW;
      // 5.6.3: otherwise reject.
      return reject('the sender may not ban this user');
    }
    case 'knock':
      if (version.knock) {
        // 5.7 [v7: .6] (v7+): knock.
        const rule = joinRuleOf(state);
        // 5.7.1: the join rule must be knock (v10+: or knock_restricted).
        if (!(rule === 'knock' || (version.knockRestrictedJoinRule && rule === 'knock_restricted'))) {
          return reject('the join rule does not allow knocking');
        }
        // 5.7.2: sender must be the state_key.
        if (event.sender !== target) return reject('a knock must be sent by the user knocking');
        // 5.7.3: not banned, invited or joined → allow; 5.7.4: otherwise reject.
        if (senderMembership === 'ban' || senderMembership === 'invite' || senderMembership === 'join') {
          return reject(`cannot knock from membership ${senderMembership}`);
        }
        return ALLOW;
      }
      break;
    default:
      break;
  }
  // 5.8 [v1–v6: .6, v7: .7]: unknown membership → reject.
  return reject(`unknown membership ${JSON.stringify(membership)}`);
}

function joinRuleOf(state: AuthState): string | undefined {
  const r = state.get('m.room.join_rules', '')?.content.join_rule;
  return typeof r === 'string' ? r : undefined;
}

/** Rule 5.3 [v1–v7: 5.2]: membership join. */
function authorizeJoin(ctx: Ctx, target: string, senderMembership: string | undefined): AuthResult {
  const { event, state, version, create } = ctx;
  // 5.3.1: the only previous event is the create event and the state_key is the creator → allow.
  const prev = event.prevEvents;
  if (prev.length === 1 && prev[0] === create.eventId && target === firstJoinCreator(create, version)) return ALLOW;
  // 5.3.2: the sender is not the state_key → reject.
  if (event.sender !== target) return reject('a join must be sent by the user joining');
  // 5.3.3: the sender is banned → reject.
  if (senderMembership === 'ban') return reject('the sender is banned');
  const rule = joinRuleOf(state);
  const invitedOrJoined = senderMembership === 'invite' || senderMembership === 'join';
  // 5.3.4: join rule invite (v7+: or knock) → allow if invited or joined.
  if (rule === 'invite' || (version.knock && rule === 'knock')) {
    if (invitedOrJoined) return ALLOW;
    return reject('the room is invite-only and the sender is not invited');
  }
  // 5.3.5 (v8+): join rule restricted (v10+: or knock_restricted).
  if (
    (version.restrictedJoinRule && rule === 'restricted') ||
    (version.knockRestrictedJoinRule && rule === 'knock_restricted')
  ) {
    // 5.3.5.1: invited or joined → allow.
    if (invitedOrJoined) return ALLOW;
    // 5.3.5.2: join_authorised_via_users_server must be a joined member who may invite.
    const authoriser = event.content.join_authorised_via_users_server;
    if (typeof authoriser !== 'string') return reject('restricted join without join_authorised_via_users_server');
    if (membershipOf(state, authoriser) !== 'join') return reject('the authorising user is not joined');
    if (levelOf(ctx, authoriser) < ctx.pl.invite) return reject('the authorising user may not invite');
    // 5.3.5.3: otherwise allow.
    return ALLOW;
  }
  // 5.3.6: join rule public → allow.
  if (rule === 'public') return ALLOW;
  // 5.3.7: otherwise reject.
  return reject(`the join rule ${JSON.stringify(rule ?? null)} does not allow this join`);
}

/** Rule 5.4 [v1–v7: 5.3]: membership invite. */
function authorizeInvite(
  ctx: Ctx,
  target: string,
  senderMembership: string | undefined,
  targetMembership: string | undefined,
): AuthResult {
  const { event, state } = ctx;
  const content: JsonObject = event.content;
  // 5.4.1: content has third_party_invite.
  if (Object.hasOwn(content, 'third_party_invite')) {
    // 5.4.1.1: the target is banned → reject.
    if (targetMembership === 'ban') return reject('the invited user is banned');
    // 5.4.1.2: third_party_invite has no signed property → reject.
    const tpi = content.third_party_invite;
    const signed = isJsonObject(tpi) ? tpi.signed : undefined;
    if (!isJsonObject(signed)) return reject('third_party_invite has no signed object');
    // 5.4.1.3: signed has no mxid and token → reject.
    if (typeof signed.mxid !== 'string' || typeof signed.token !== 'string') {
      return reject('third_party_invite.signed has no mxid and token');
    }
    // 5.4.1.4: mxid is not the state_key → reject.
    if (signed.mxid !== target) return reject('third_party_invite.signed.mxid is not the state_key');
    // 5.4.1.5: no m.room.third_party_invite with state_key token → reject.
    const invite = state.get('m.room.third_party_invite', signed.token);
    if (!invite) return reject('no m.room.third_party_invite for the token');
    // 5.4.1.6: the sender is not the sender of that m.room.third_party_invite → reject.
    if (invite.sender !== event.sender) return reject('the sender did not send the m.room.third_party_invite');
    // 5.4.1.7: a signature in signed matches a public key of the m.room.third_party_invite → allow.
    if (thirdPartyInviteSignatureMatches(signed, invite.content)) return ALLOW;
    // 5.4.1.8: otherwise reject.
    return reject('third_party_invite.signed is not signed by any public key of the m.room.third_party_invite');
  }
  // 5.4.2: the sender is not joined → reject.
  if (senderMembership !== 'join') return reject('the sender is not joined to the room');
  // 5.4.3: the target is joined or banned → reject.
  if (targetMembership === 'join' || targetMembership === 'ban') {
    return reject(`cannot invite a user whose membership is ${targetMembership}`);
  }
  // 5.4.4: the sender's level ≥ the invite level → allow; 5.4.5: otherwise reject.
  if (levelOf(ctx, event.sender) >= ctx.pl.invite) return ALLOW;
  return reject('the sender may not invite');
}

/**
 * Rule 10 [v1–v5: 10, v6–v11: 9]: m.room.power_levels. Numbers below are v12's; v10–v11 lack 10.4 (so 10.5–10.10
 * are 9.4–9.9) and v1–v9 also lack 10.1–10.2 (so 10.3 is x.1 and 10.5–10.10 are x.2–x.7).
 */
function authorizePowerLevels(ctx: Ctx, senderLevel: number): AuthResult {
  const { event, version, state } = ctx;
  const content = event.content;
  // 10.1 (v10+): the seven level properties must be integers when present. 10.2 (v10+): events and notifications
  // must be objects of integers. 10.3: users must be an object of valid user ID → integer (v1–v9: or a string
  // that is one). See powerLevelsContentProblem for how v1–v9 treat the other properties.
  const problem = powerLevelsContentProblem(content, version);
  if (problem) return reject(problem);

  // 10.4 (v12): users must not contain a room creator.
  if (version.privilegedCreators && isJsonObject(content.users)) {
    const users = content.users;
    for (const creator of ctx.creators) {
      if (Object.hasOwn(users, creator)) return reject(`power_levels: users must not list the room creator ${creator}`);
    }
  }

  // 10.5: no previous power-levels event → allow.
  const previous = state.get('m.room.power_levels', '');
  if (!previous) return ALLOW;
  const oldContent = previous.content;

  // 10.6: for users_default, events_default, state_default, ban, redact, kick, invite: each one added, changed or
  // removed must be ≤ the sender's level both before (10.6.1) and after (10.6.2).
  for (const key of POWER_LEVEL_KEYS) {
    const before = powerLevelValue(oldContent[key], version);
    const after = powerLevelValue(content[key], version);
    if (before === after) continue;
    if (before !== undefined && before > senderLevel) return reject(`power_levels: cannot change '${key}' from ${before}`);
    if (after !== undefined && after > senderLevel) return reject(`power_levels: cannot set '${key}' to ${after}`);
  }

  // 10.7 / 10.8: entries of events (v6+: and notifications) changed or removed must have been ≤ the sender's
  // level (10.7.1); entries added or changed must be ≤ it (10.8.1).
  const maps: Array<'events' | 'notifications'> = version.limitNotificationsPowerLevels
    ? ['events', 'notifications']
    : ['events'];
  for (const prop of maps) {
    const problem = checkLevelMapChange(prop, oldContent[prop], content[prop], senderLevel, version, undefined);
    if (problem) return reject(problem);
  }

  // 10.9: users entries changed or removed, other than the sender's own: the old value must be < the sender's
  // level (10.9.1). 10.10: users entries added or changed: the new value must be ≤ the sender's level (10.10.1).
  const problem2 = checkLevelMapChange('users', oldContent.users, content.users, senderLevel, version, event.sender);
  if (problem2) return reject(problem2);

  // 10.11 (as numbered in the text, a second "10."): otherwise allow.
  return ALLOW;
}

/**
 * Compares one level map (events, notifications or users) of the old and new power-levels content. For `users`,
 * `self` is the sender: their own entry may be lowered, and an old value equal to the sender's level also blocks.
 */
function checkLevelMapChange(
  prop: 'events' | 'notifications' | 'users',
  oldV: JsonObject[string] | undefined,
  newV: JsonObject[string] | undefined,
  senderLevel: number,
  version: RoomVersion,
  self: string | undefined,
): string | undefined {
  const oldMap = isJsonObject(oldV) ? oldV : {};
  const newMap = isJsonObject(newV) ? newV : {};
  const keys = new Set([...Object.keys(oldMap), ...Object.keys(newMap)]);
  for (const k of keys) {
    const before = Object.hasOwn(oldMap, k) ? powerLevelValue(oldMap[k], version) : undefined;
    const after = Object.hasOwn(newMap, k) ? powerLevelValue(newMap[k], version) : undefined;
    if (before === after) continue;
    if (before !== undefined) {
      if (prop === 'users') {
        if (k !== self && before >= senderLevel) return `power_levels: cannot change the level of ${k} (${before})`;
      } else if (before > senderLevel) {
        return `power_levels: cannot change ${prop}['${k}'] from ${before}`;
      }
    }
    if (after !== undefined && after > senderLevel) return `power_levels: cannot set ${prop}['${k}'] to ${after}`;
  }
  return undefined;
}
