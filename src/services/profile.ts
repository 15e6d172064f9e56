/**
 * User profiles: display name, avatar URL, time zone and custom fields, kept in the user's UserRecord.
 * Spec: shared/matrix-spec/content/client-server-api/_index.md#profiles (and #mprofile_fields-capability),
 * data/api/client-server/profile.yaml, modules/guest_access.md (guests may only change their display name).
 *
 * Updating the user's m.room.member events in joined rooms is the rooms service's job: it registers a listener in
 * `profileChanged`, which runs after the change commits.
 */
import type { Principal } from '../api/endpoint.js';
import {
  badJson,
  forbidden,
  guestAccessForbidden,
  invalidParam,
  keyTooLarge,
  missingParam,
  notFound,
  profileTooLarge,
} from '../api/errors.js';
import { parseUserId, utf8ByteLength } from '../core/identifiers.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { STORES } from '../storage/schema.js';
import type { UserRecord } from './accounts.js';
import type { ServiceContext } from './context.js';

/** The whole profile must stay under 64 KiB (profile.yaml). */
export const MAX_PROFILE_BYTES = 64 * 1024;
/** Profile keys are at most 255 bytes (M_KEY_TOO_LARGE). */
export const MAX_PROFILE_KEY_BYTES = 255;
/** Synapse's display name limit. */
export const MAX_DISPLAYNAME_LENGTH = 256;
const KEY_NAME = /^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$/;
const MXC_URI = /^mxc:\/\/[A-Za-z0-9.:[\]-]+\/[A-Za-z0-9_-]+$/;

export interface ProfileChange {
  userId: string;
  /** The field that changed. */
  key: string;
  /** Its new value; undefined when deleted. */
  value: JsonValue | undefined;
  /** The whole profile after the change. */
  profile: JsonObject;
}

/** Runs after a profile change commits (the rooms service updates the user's member events). */
export type ProfileChangedListener = (change: ProfileChange) => Promise<void> | void;

const encoder = new TextEncoder();

export class ProfileService {
  /** Listeners run, in order, after a change commits; errors are logged, not returned to the client. */
  readonly profileChanged: ProfileChangedListener[] = [];
  /**
   * Looks up the profile of a user of another server (set by federation: query/profile). Undefined = not found.
   */
  remoteProfile?: (userId: string) => Promise<JsonObject | undefined>;

  constructor(private readonly ctx: ServiceContext) {}

  /** The whole profile of a local, active user; 404 M_NOT_FOUND otherwise. */
  async getProfile(userId: string): Promise<JsonObject> {
    this.checkUserId(userId);
    if (this.remoteProfile && userId.slice(userId.indexOf(':') + 1) !== this.ctx.serverName) {
      const remote = await this.remoteProfile(userId);
      if (!remote) throw notFound('Profile not found');
      return remote;
    }
    const user = await this.ctx.kv.read((tx) => tx.get<UserRecord>(STORES.users, [userId]));
    // Remote profiles need federation, which is not wired yet: unknown here means not found.
    if (!user || user.deactivated) throw notFound('Profile not found');
    return user.profile;
  }

  /** Profiles of several users in one read (for member events and member lists); absent users are missing. */
  async getProfiles(userIds: readonly string[]): Promise<Map<string, JsonObject>> {
    const users = await this.ctx.kv.read((tx) => tx.getMany<UserRecord>(STORES.users, userIds.map((u) => [u])));
    const out = new Map<string, JsonObject>();
    users.forEach((u, i) => {
      if (u && !u.deactivated) out.set(userIds[i], u.profile);
    });
    return out;
  }

  /** GET /profile/{userId}/{keyName} */
  async getField(userId: string, key: string): Promise<JsonObject> {
    const profile = await this.getProfile(userId);
    if (!Object.hasOwn(profile, key)) throw notFound('Profile field not found');
    return { [key]: profile[key] };
  }

  /** PUT /profile/{userId}/{keyName} */
  async setField(principal: Principal, userId: string, key: string, body: JsonObject): Promise<void> {
    this.checkWrite(principal, userId, key);
    if (!Object.hasOwn(body, key)) throw missingParam(key, `The body must contain '${key}'`);
    const value = body[key];
    checkValue(key, value);
    await this.change(userId, key, value);
  }

  /** DELETE /profile/{userId}/{keyName}: succeeds when the field does not exist. */
  async deleteField(principal: Principal, userId: string, key: string): Promise<void> {
    this.checkWrite(principal, userId, key);
    await this.change(userId, key, undefined);
  }

  private async change(userId: string, key: string, value: JsonValue | undefined): Promise<void> {
    const profile = await this.ctx.kv.write(async (tx) => {
      const user = await tx.get<UserRecord>(STORES.users, [userId]);
      if (!user || user.deactivated) throw forbidden('Account is deactivated');
      const had = Object.hasOwn(user.profile, key);
      if (value === undefined && !had) return undefined;
      if (value !== undefined && had && JSON.stringify(user.profile[key]) === JSON.stringify(value)) return undefined;
      const profile: JsonObject = { ...user.profile };
      if (value === undefined) delete profile[key];
      else profile[key] = value;
      if (encoder.encode(JSON.stringify(profile)).byteLength > MAX_PROFILE_BYTES) {
        throw profileTooLarge(`The profile would exceed ${MAX_PROFILE_BYTES} bytes`);
      }
      await tx.put(STORES.users, [userId], { ...user, profile });
      return profile;
    });
    if (!profile) return;
    for (const listener of this.profileChanged) {
      try {
        await listener({ userId, key, value, profile });
      } catch (e) {
        this.ctx.logger.error('profile listener failed', { userId, key, error: e });
      }
    }
  }

  private checkUserId(userId: string): void {
    if (!parseUserId(userId).ok) throw invalidParam('userId', 'is not a valid user ID');
  }

  private checkWrite(principal: Principal, userId: string, key: string): void {
    this.checkUserId(userId);
    if (utf8ByteLength(key) > MAX_PROFILE_KEY_BYTES) throw keyTooLarge();
    if (!KEY_NAME.test(key)) throw invalidParam('keyName', 'is not a valid profile key');
    if (principal.userId !== userId) throw forbidden("Cannot change another user's profile");
    if (principal.isGuest && key !== 'displayname') throw guestAccessForbidden('Guests may only change their display name');
  }
}

function checkValue(key: string, value: JsonValue): void {
  switch (key) {
    case 'displayname':
      if (typeof value !== 'string') throw badJson("'displayname' must be a string");
      if (value.length > MAX_DISPLAYNAME_LENGTH) {
        throw invalidParam('displayname', `must be at most ${MAX_DISPLAYNAME_LENGTH} characters`);
      }
      return;
    case 'avatar_url':
      if (typeof value !== 'string') throw badJson("'avatar_url' must be a string");
      // An empty string clears the avatar, as older clients do it.
      if (value !== '' && !MXC_URI.test(value)) throw invalidParam('avatar_url', 'must be an mxc:// URI');
      return;
    case 'm.tz':
      if (typeof value !== 'string') throw badJson("'m.tz' must be a string");
      return;
    default:
      // Custom keys may hold any JSON (profile.yaml).
      return;
  }
}

