/**
 * Accounts, devices and tokens: registration, login, refresh, logout, password change, deactivation, devices.
 * Spec: shared/matrix-spec/content/client-server-api/_index.md (#account-registration-and-management,
 * #login, #refreshing-access-tokens, #relationship-between-access-tokens-and-devices, #soft-logout,
 * #user-interactive-authentication-api), modules/device_management.md, modules/guest_access.md;
 * data/api/client-server/{registration,login,refresh,logout,whoami,password_management,account_deactivation,
 * device_management,registration_tokens}.yaml.
 *
 * Tokens are stored by their SHA-256 (`tokenKey`), never as sent (see passwords.ts). A device lists the keys of
 * its live tokens, so deleting a device (logout, delete_devices, password change, deactivation) revokes them in
 * the same transaction. `authenticate` is on every request's path: one `get`, behind an in-memory cache that is
 * emptied whenever a token is revoked.
 *
 * The profile, account data and filters services hang off this one (`accounts.profile`, …) so that the other
 * services reach them through the one `accounts` dependency they already have.
 */
import type { Principal } from '../api/endpoint.js';
import {
  badJson,
  forbidden,
  guestAccessForbidden,
  invalidParam,
  invalidUsername,
  missingParam,
  missingToken,
  notFound,
  unknown,
  unknownToken,
  userDeactivated,
  userInUse,
} from '../api/errors.js';
import { isValidNewUserLocalpart, parseUserId } from '../core/identifiers.js';
import type { JsonObject } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type { ReadTx, WriteTx } from '../storage/kv.js';
import type { StreamEntry } from '../storage/records.js';
import { STORES } from '../storage/schema.js';
import { AccountDataService } from './account-data.js';
import type { ServiceContext } from './context.js';
import { FiltersService } from './filters.js';
import { allocatePosition } from './notifier.js';
import {
  MAX_PASSWORD_LENGTH,
  hashPassword,
  needsRehash,
  randomDeviceId,
  randomToken,
  tokenKey,
  verifyPassword,
} from './passwords.js';
import { ProfileService } from './profile.js';
import type { UiaResult } from './uia.js';
import { LOGIN_DUMMY, LOGIN_PASSWORD, LOGIN_REGISTRATION_TOKEN, UiaService, endSession } from './uia.js';

// ---- Records

/** users: [userId] → UserRecord (local users only) */
export interface UserRecord {
  userId: string;
  createdTs: number;
  /** passwords.ts format; absent for guests, accounts registered without one, and deactivated accounts. */
  passwordHash?: string;
  isGuest?: boolean;
  deactivated?: boolean;
  /** Profile fields as the wire carries them (`displayname`, `avatar_url`, `m.tz`, custom keys). */
  profile: JsonObject;
}

/** devices: [userId, deviceId] → DeviceRecord */
export interface DeviceRecord {
  deviceId: string;
  displayName?: string;
  createdTs: number;
  /** Keys (tokenKey) of the device's access and refresh tokens, so deleting the device revokes them. */
  accessTokens: string[];
  refreshTokens: string[];
}

/** access_tokens: [tokenKey(accessToken)] → AccessTokenRecord */
export interface AccessTokenRecord {
  userId: string;
  deviceId: string;
  isGuest?: boolean;
  /** Set when the client took a refresh token: the token then expires (soft logout). */
  expiresTs?: number;
  /** Set on a token minted by /refresh: its first use revokes the refresh token that was spent for it. */
  revokeOnUse?: string;
}

/** refresh_tokens: [tokenKey(refreshToken)] → RefreshTokenRecord */
export interface RefreshTokenRecord {
  userId: string;
  deviceId: string;
  /** The access token issued with this refresh token. */
  accessToken: string;
  /** The refresh token spent to mint this one: revoked when this pair is first used. */
  prev?: string;
  /** The pair minted by spending this token; replaced if this token is spent again before they are used. */
  next?: { access: string; refresh: string };
}

// ---- Inputs and outputs (wire shapes: the spec's snake_case)

export interface LoginResponse {
  user_id: string;
  access_token: string;
  device_id: string;
  home_server: string;
  refresh_token?: string;
  expires_in_ms?: number;
  well_known?: JsonObject;
}

export type RegisterResponse = Partial<LoginResponse> & { user_id: string; home_server: string };

/** Called after a deactivation commits (the rooms service leaves the user's rooms). */
export type DeactivateListener = (userId: string) => Promise<void> | void;
/** Called after devices are deleted (end-to-end keys and to-device queues can be dropped). */
export type DevicesDeletedListener = (userId: string, deviceIds: readonly string[]) => Promise<void> | void;

const ACCESS_PREFIX = 'hat_';
const REFRESH_PREFIX = 'hrt_';
/** Longest device ID accepted from a client (Synapse refuses more than 512 characters; key parts stay small). */
const MAX_DEVICE_ID_LENGTH = 255;
/** Longest device display name kept (Synapse's limit). */
const MAX_DEVICE_NAME_LENGTH = 100;
const TOKEN_CACHE_LIMIT = 10_000;

interface CachedToken {
  principal: Principal;
  expiresTs?: number;
}

interface IssuedTokens {
  access: string;
  refresh?: string;
  expiresInMs?: number;
}

export class AccountsService {
  /** Listeners run, in order, after a deactivation commits. Errors are logged, not returned to the client. */
  readonly onDeactivate: DeactivateListener[] = [];
  /** Listeners run after devices (and their tokens) are deleted. */
  readonly onDevicesDeleted: DevicesDeletedListener[] = [];
  readonly uia: UiaService;
  readonly profile: ProfileService;
  readonly accountData: AccountDataService;
  readonly filters: FiltersService;

  /**
   * Live tokens by the token itself (not its stored hash): a hit then costs no SHA-256 per request. The process
   * holds every presented token in memory while serving it anyway; the cache is dropped whole on any revocation.
   */
  private readonly tokenCache = new Map<string, CachedToken>();
  /** Bumped after every commit that revokes tokens; a lookup started before a bump does not fill the cache. */
  private tokenGeneration = 0;

  constructor(private readonly ctx: ServiceContext) {
    this.uia = new UiaService({
      ctx,
      passwordHash: async (userId) => (await this.getUser(userId))?.passwordHash,
      resolveUser: (auth) => this.resolveLoginUser(auth),
    });
    this.profile = new ProfileService(ctx);
    this.accountData = new AccountDataService(ctx);
    this.filters = new FiltersService(ctx);
  }

  // ---- Authentication (every request)

  /** Resolves an access token to who holds it, or throws M_UNKNOWN_TOKEN (soft_logout when it merely expired). */
  async authenticate(token: string): Promise<Principal> {
    const now = this.ctx.clock.now();
    const cached = this.tokenCache.get(token);
    if (cached) {
      if (cached.expiresTs !== undefined && cached.expiresTs <= now) throw unknownToken(true, 'Access token has expired');
      return cached.principal;
    }
    const key = tokenKey(token);
    const generation = this.tokenGeneration;
    const rec = await this.ctx.kv.read((tx) => tx.get<AccessTokenRecord>(STORES.accessTokens, [key]));
    if (!rec) throw unknownToken();
    if (rec.expiresTs !== undefined && rec.expiresTs <= now) throw unknownToken(true, 'Access token has expired');
    const principal: Principal = rec.isGuest
      ? { userId: rec.userId, deviceId: rec.deviceId, isGuest: true }
      : { userId: rec.userId, deviceId: rec.deviceId };
    if (rec.revokeOnUse !== undefined) {
      // First use of a refreshed token: the refresh token spent for it is now dead (refresh.yaml).
      await this.settleRefresh(key, rec.revokeOnUse);
      return principal;
    }
    if (generation === this.tokenGeneration) {
      if (this.tokenCache.size >= TOKEN_CACHE_LIMIT) this.tokenCache.clear();
      this.tokenCache.set(token, { principal, expiresTs: rec.expiresTs });
    }
    return principal;
  }

  private async settleRefresh(accessKey: string, spentRefresh: string): Promise<void> {
    await this.ctx.kv.write(async (tx) => {
      const rec = await tx.get<AccessTokenRecord>(STORES.accessTokens, [accessKey]);
      if (!rec || rec.revokeOnUse === undefined) return;
      const { revokeOnUse: _spent, ...rest } = rec;
      await tx.put(STORES.accessTokens, [accessKey], rest);
      await this.revokeSpentRefresh(tx, rec.userId, rec.deviceId, spentRefresh);
    });
  }

  /** Deletes a spent refresh token and unlinks it from its successor and device. */
  private async revokeSpentRefresh(tx: WriteTx, userId: string, deviceId: string, spent: string): Promise<void> {
    const old = await tx.get<RefreshTokenRecord>(STORES.refreshTokens, [spent]);
    if (!old) return;
    await tx.delete(STORES.refreshTokens, [spent]);
    if (old.next) {
      const succ = await tx.get<RefreshTokenRecord>(STORES.refreshTokens, [old.next.refresh]);
      if (succ?.prev === spent) {
        const { prev: _p, ...rest } = succ;
        await tx.put(STORES.refreshTokens, [old.next.refresh], rest);
      }
    }
    const device = await tx.get<DeviceRecord>(STORES.devices, [userId, deviceId]);
    if (device) {
      await tx.put(STORES.devices, [userId, deviceId], {
        ...device,
        refreshTokens: device.refreshTokens.filter((k) => k !== spent),
      });
    }
  }

  /** Forgets cached tokens after a commit that revoked some (see `tokenGeneration`). */
  private tokensRevoked(): void {
    this.tokenGeneration++;
    this.tokenCache.clear();
  }

  // ---- Lookups

  async getUser(userId: string): Promise<UserRecord | undefined> {
    return this.ctx.kv.read((tx) => tx.get<UserRecord>(STORES.users, [userId]));
  }

  /** Whether `userId` is a registered local user that is not deactivated. */
  async isActiveUser(userId: string): Promise<boolean> {
    const u = await this.getUser(userId);
    return u !== undefined && !u.deactivated;
  }

  isLocalUserId(userId: string): boolean {
    const p = parseUserId(userId);
    return p.ok && p.serverName === this.ctx.serverName;
  }

  /**
   * The user an `identifier` (m.id.user) or the deprecated top-level `user` names: a localpart or a full user ID
   * of this server; the localpart is lower-cased because registration lower-cases it (Synapse matches logins
   * case-insensitively too). Undefined for anything else (third-party IDs: this server stores none).
   */
  resolveLoginUser(body: JsonObject): string | undefined {
    let user: unknown;
    const id = body.identifier;
    if (id !== undefined) {
      if (!isJsonObject(id)) return undefined;
      if (id.type !== 'm.id.user') return undefined;
      user = id.user;
    } else {
      user = body.user;
    }
    if (typeof user !== 'string' || user === '') return undefined;
    if (user.startsWith('@')) {
      const p = parseUserId(user);
      if (!p.ok || p.serverName !== this.ctx.serverName) return undefined;
      return `@${p.localpart.toLowerCase()}:${p.serverName}`;
    }
    return `@${user.toLowerCase()}:${this.ctx.serverName}`;
  }

  // ---- Registration

  /**
   * Checks a desired localpart (lower-cased first, as Synapse does) and returns the user ID. Throws
   * M_INVALID_USERNAME for IDs outside the user ID grammar, all-digit ones (reserved for guests, as in Synapse)
   * and ones starting with `_` (reserved for application services).
   */
  userIdForUsername(username: string): string {
    const localpart = username.toLowerCase();
    if (localpart === '') throw invalidUsername('Username must not be empty');
    if (!isValidNewUserLocalpart(localpart, this.ctx.serverName)) {
      throw invalidUsername('User ID may only contain a-z, 0-9, and . _ = - / +, and be at most 255 bytes long');
    }
    if (/^\d+$/.test(localpart)) throw invalidUsername('Numeric user IDs are reserved for guest users');
    if (localpart.startsWith('_')) throw invalidUsername('User ID may not begin with _');
    return `@${localpart}:${this.ctx.serverName}`;
  }

  /** GET /register/available: throws M_INVALID_USERNAME / M_USER_IN_USE, or returns true. */
  async usernameAvailable(username: string): Promise<true> {
    if (this.ctx.config.registration === 'closed') throw forbidden('Registration is disabled');
    const userId = this.userIdForUsername(username);
    if (await this.getUser(userId)) throw userInUse();
    return true;
  }

  /** GET /register/m.login.registration_token/validity. */
  registrationTokenValid(token: string): boolean {
    // registration_tokens.yaml: 403 when registration is not permitted at all; in open mode no token is valid
    // (none is needed), as in Synapse.
    if (this.ctx.config.registration === 'closed') throw forbidden('Registration is disabled');
    return this.ctx.config.registration === 'token' && this.ctx.config.registrationTokens.includes(token);
  }

  /** The UIA flows /register offers under the configured registration mode. */
  registrationFlows(): string[][] {
    return this.ctx.config.registration === 'token' ? [[LOGIN_REGISTRATION_TOKEN]] : [[LOGIN_DUMMY]];
  }

  /** POST /register. `body` is the validated request body. */
  async register(body: JsonObject, kind: 'user' | 'guest'): Promise<RegisterResponse> {
    const { config } = this.ctx;
    const displayName = optionalString(body, 'initial_device_display_name');
    if (kind === 'guest') {
      if (!config.allowGuests) throw forbidden('Guest access is disabled');
      // Guests: everything but the device display name is ignored (registration.yaml).
      return this.createAccount({ guest: true, deviceDisplayName: displayName, inhibitLogin: false, refresh: false });
    }
    if (config.registration === 'closed') throw forbidden('Registration is disabled');

    const username = optionalString(body, 'username');
    const password = optionalString(body, 'password');
    const deviceId = optionalString(body, 'device_id');
    const inhibitLogin = optionalBool(body, 'inhibit_login') ?? false;
    const refresh = optionalBool(body, 'refresh_token') ?? false;
    if (password !== undefined && password.length > MAX_PASSWORD_LENGTH) throw invalidParam('password', 'is too long');
    if (deviceId !== undefined) checkDeviceId(deviceId);

    // The spec: check the username before user-interactive auth.
    const userId = username === undefined ? undefined : this.userIdForUsername(username);
    if (userId !== undefined && (await this.getUser(userId))) throw userInUse();

    const uia = await this.uia.check({ operation: 'POST /register', flows: this.registrationFlows(), auth: body.auth });
    const passwordHash = password === undefined ? undefined : await hashPassword(password);
    return this.createAccount({
      userId,
      passwordHash,
      deviceId,
      deviceDisplayName: displayName,
      inhibitLogin,
      refresh,
      uia,
    });
  }

  private async createAccount(opts: {
    userId?: string;
    guest?: boolean;
    passwordHash?: string;
    deviceId?: string;
    deviceDisplayName?: string;
    inhibitLogin: boolean;
    refresh: boolean;
    uia?: UiaResult;
  }): Promise<RegisterResponse> {
    const { serverName } = this.ctx;
    const now = this.ctx.clock.now();
    const deviceId = opts.deviceId ?? randomDeviceId();
    const tokens = opts.inhibitLogin ? undefined : this.newTokens(opts.refresh);
    const { userId, pos } = await this.ctx.kv.write(async (tx) => {
      let userId = opts.userId;
      if (userId === undefined) {
        userId = await this.nextGeneratedUserId(tx);
      } else if (await tx.get(STORES.users, [userId])) {
        // Taken while the client was going through UIA.
        throw userInUse();
      }
      const user: UserRecord = { userId, createdTs: now, profile: { displayname: localpartOf(userId) } };
      if (opts.passwordHash !== undefined) user.passwordHash = opts.passwordHash;
      if (opts.guest) user.isGuest = true;
      await tx.put(STORES.users, [userId], user);
      if (opts.uia) await endSession(tx, opts.uia);
      let pos: number | undefined;
      if (tokens) {
        pos = await this.putDevice(tx, userId, deviceId, opts.deviceDisplayName, now, tokens, opts.guest === true);
      }
      return { userId, pos };
    });
    if (pos !== undefined) this.ctx.notifier.notify(pos);
    this.ctx.logger.info('registered', { userId, guest: opts.guest === true });
    const res: RegisterResponse = { user_id: userId, home_server: serverName };
    if (tokens) Object.assign(res, { device_id: deviceId, ...tokenFields(tokens) });
    return res;
  }

  /** Generated localparts are numbers (Synapse's scheme), skipping any a user registered by hand. */
  private async nextGeneratedUserId(tx: WriteTx): Promise<string> {
    let n = (await tx.get<number>(STORES.server, ['nextId', 'user'])) ?? 1;
    for (;;) {
      const userId = `@${n}:${this.ctx.serverName}`;
      n++;
      if (!(await tx.get(STORES.users, [userId]))) {
        await tx.put(STORES.server, ['nextId', 'user'], n);
        return userId;
      }
    }
  }

  // ---- Login, refresh, logout

  /** GET /login */
  loginFlows(): JsonObject {
    return { flows: [{ type: LOGIN_PASSWORD }] };
  }

  /** POST /login */
  async login(body: JsonObject): Promise<LoginResponse> {
    const type = body.type;
    if (type !== LOGIN_PASSWORD) throw unknown(`Unsupported login type '${String(type)}'`, 400);
    const password = body.password;
    if (password === undefined) throw missingParam('password');
    if (typeof password !== 'string') throw badJson("'password' must be a string");
    if (body.identifier === undefined && body.user === undefined) {
      if (body.medium !== undefined || body.address !== undefined) throw forbidden('Invalid username or password');
      throw missingParam('identifier');
    }
    if (body.identifier !== undefined && !isJsonObject(body.identifier)) throw badJson("'identifier' must be an object");
    if (body.user !== undefined && typeof body.user !== 'string') throw badJson("'user' must be a string");
    const deviceId = optionalString(body, 'device_id');
    if (deviceId !== undefined) checkDeviceId(deviceId);
    const displayName = optionalString(body, 'initial_device_display_name');
    const refresh = optionalBool(body, 'refresh_token') ?? false;

    const userId = this.resolveLoginUser(body);
    const user = userId === undefined ? undefined : await this.getUser(userId);
    // Deactivated accounts have no password left, so their status is all there is to say.
    if (user?.deactivated) throw userDeactivated();
    if (password.length > MAX_PASSWORD_LENGTH || !(await verifyPassword(password, user?.passwordHash))) {
      throw forbidden('Invalid username or password');
    }
    const u = user!;
    const rehash = u.passwordHash !== undefined && needsRehash(u.passwordHash) ? await hashPassword(password) : undefined;

    const now = this.ctx.clock.now();
    const tokens = this.newTokens(refresh);
    const finalDeviceId = deviceId ?? randomDeviceId();
    const { pos, tookOver } = await this.ctx.kv.write(async (tx) => {
      if (rehash !== undefined) {
        const fresh = await tx.get<UserRecord>(STORES.users, [u.userId]);
        if (fresh && fresh.passwordHash === u.passwordHash) await tx.put(STORES.users, [u.userId], { ...fresh, passwordHash: rehash });
      }
      // Taking over an existing device keeps its end-to-end keys: a client that logs in again after a soft logout
      // still has them and will not upload them again; a fresh client's different keys replace them on upload
      // (keys.ts), as in Synapse.
      const devicePos = await this.putDevice(tx, u.userId, finalDeviceId, displayName, now, tokens, u.isGuest === true);
      return { pos: devicePos, tookOver: devicePos === undefined };
    });
    // A new device revoked nothing; taking over an existing one revoked its old tokens.
    if (tookOver) this.tokensRevoked();
    if (pos !== undefined) this.ctx.notifier.notify(pos);
    const res: LoginResponse = { user_id: u.userId, device_id: finalDeviceId, home_server: this.ctx.serverName, ...tokenFields(tokens) };
    if (this.ctx.config.publicBaseUrl !== undefined) {
      res.well_known = { 'm.homeserver': { base_url: this.ctx.config.publicBaseUrl } };
    }
    return res;
  }

  /** POST /refresh */
  async refresh(refreshToken: string): Promise<{ access_token: string; refresh_token: string; expires_in_ms: number }> {
    const spentKey = tokenKey(refreshToken);
    const tokens = this.newTokens(true);
    const now = this.ctx.clock.now();
    await this.ctx.kv.write(async (tx) => {
      const rec = await tx.get<RefreshTokenRecord>(STORES.refreshTokens, [spentKey]);
      if (!rec) throw unknownToken(true, 'Unknown or already used refresh token');
      const device = await tx.get<DeviceRecord>(STORES.devices, [rec.userId, rec.deviceId]);
      if (!device) throw unknownToken(true, 'Unknown or already used refresh token');
      const user = await tx.get<UserRecord>(STORES.users, [rec.userId]);
      const dropAccess = [rec.accessToken];
      const dropRefresh: string[] = [];
      // Spent again before its successors were used: they are replaced (the old token "remains valid until the
      // new access token or refresh token is used").
      if (rec.next) {
        dropAccess.push(rec.next.access);
        dropRefresh.push(rec.next.refresh);
      }
      // Spending this token proves its own predecessor is no longer needed.
      if (rec.prev !== undefined) dropRefresh.push(rec.prev);
      for (const k of dropAccess) await tx.delete(STORES.accessTokens, [k]);
      for (const k of dropRefresh) await tx.delete(STORES.refreshTokens, [k]);
      const access = tokenKey(tokens.access);
      const refresh = tokenKey(tokens.refresh!);
      const accessRec: AccessTokenRecord = {
        userId: rec.userId,
        deviceId: rec.deviceId,
        expiresTs: now + tokens.expiresInMs!,
        revokeOnUse: spentKey,
      };
      if (user?.isGuest) accessRec.isGuest = true;
      await tx.put(STORES.accessTokens, [access], accessRec);
      await tx.put(STORES.refreshTokens, [refresh], { userId: rec.userId, deviceId: rec.deviceId, accessToken: access, prev: spentKey });
      const { prev: _p, ...kept } = rec;
      await tx.put(STORES.refreshTokens, [spentKey], { ...kept, next: { access, refresh } });
      await tx.put(STORES.devices, [rec.userId, rec.deviceId], {
        ...device,
        accessTokens: [...device.accessTokens.filter((k) => !dropAccess.includes(k)), access],
        refreshTokens: [...device.refreshTokens.filter((k) => !dropRefresh.includes(k)), refresh],
      });
    });
    this.tokensRevoked();
    return { access_token: tokens.access, refresh_token: tokens.refresh!, expires_in_ms: tokens.expiresInMs! };
  }

  /** POST /logout: the token's device is deleted with it (logout.yaml). */
  async logout(principal: Principal): Promise<void> {
    if (principal.deviceId === undefined) return;
    await this.deleteDevicesNow(principal.userId, [principal.deviceId]);
  }

  /** POST /logout/all */
  async logoutAll(principal: Principal): Promise<void> {
    await this.deleteDevicesNow(principal.userId, undefined);
  }

  // ---- Password and deactivation

  /** POST /account/password (UIA: m.login.password). */
  async changePassword(principal: Principal | undefined, body: JsonObject, accessToken: string | undefined): Promise<void> {
    const p = requireAccountHolder(principal);
    const keep = accessToken === undefined ? undefined : tokenKey(accessToken);
    const newPassword = body.new_password;
    if (typeof newPassword !== 'string') throw badJson("'new_password' must be a string");
    if (newPassword.length > MAX_PASSWORD_LENGTH) throw invalidParam('new_password', 'is too long');
    const logoutDevices = optionalBool(body, 'logout_devices') ?? true;
    const uia = await this.uia.check({
      operation: 'POST /account/password',
      flows: await this.reauthFlows(p.userId),
      userId: p.userId,
      auth: body.auth,
    });
    const passwordHash = await hashPassword(newPassword);
    const pos = await this.ctx.kv.write(async (tx) => {
      const user = await tx.get<UserRecord>(STORES.users, [p.userId]);
      if (!user || user.deactivated) throw forbidden('Account is deactivated');
      await tx.put(STORES.users, [p.userId], { ...user, passwordHash });
      await endSession(tx, uia);
      if (!logoutDevices) return undefined;
      // Every other device goes; on this device only the token making the request survives (Synapse).
      const devices = await tx.range<DeviceRecord>(STORES.devices, { prefix: [p.userId] });
      const others = devices.map(([, d]) => d.deviceId).filter((d) => d !== p.deviceId);
      const pos = await this.deleteDevicesInTx(tx, p.userId, others);
      if (p.deviceId !== undefined && keep !== undefined) {
        await this.revokeOtherTokens(tx, p.userId, p.deviceId, keep);
      }
      return pos;
    });
    this.tokensRevoked();
    if (pos !== undefined) this.ctx.notifier.notify(pos);
  }

  /** Revokes a device's tokens except `keep` (and the refresh tokens paired with it). */
  private async revokeOtherTokens(tx: WriteTx, userId: string, deviceId: string, keep: string): Promise<void> {
    const device = await tx.get<DeviceRecord>(STORES.devices, [userId, deviceId]);
    if (!device) return;
    const refresh = await tx.getMany<RefreshTokenRecord>(STORES.refreshTokens, device.refreshTokens.map((k) => [k]));
    const keptRefresh = device.refreshTokens.filter((_, i) => refresh[i]?.accessToken === keep);
    for (const k of device.accessTokens) if (k !== keep) await tx.delete(STORES.accessTokens, [k]);
    for (const k of device.refreshTokens) if (!keptRefresh.includes(k)) await tx.delete(STORES.refreshTokens, [k]);
    await tx.put(STORES.devices, [userId, deviceId], {
      ...device,
      accessTokens: device.accessTokens.filter((k) => k === keep),
      refreshTokens: keptRefresh,
    });
  }

  /** POST /account/deactivate (UIA: m.login.password). */
  async deactivate(principal: Principal | undefined, body: JsonObject): Promise<{ id_server_unbind_result: 'success' }> {
    const p = requireAccountHolder(principal);
    const uia = await this.uia.check({
      operation: 'POST /account/deactivate',
      flows: await this.reauthFlows(p.userId),
      userId: p.userId,
      auth: body.auth,
    });
    const pos = await this.ctx.kv.write(async (tx) => {
      const user = await tx.get<UserRecord>(STORES.users, [p.userId]);
      if (!user) throw notFound('No such user');
      // The ID stays taken; the password and profile go (Synapse clears both).
      const { passwordHash: _h, ...rest } = user;
      await tx.put(STORES.users, [p.userId], { ...rest, deactivated: true, profile: {} });
      await endSession(tx, uia);
      return this.deleteDevicesInTx(tx, p.userId, undefined);
    });
    this.tokensRevoked();
    if (pos !== undefined) this.ctx.notifier.notify(pos);
    for (const listener of this.onDeactivate) {
      try {
        await listener(p.userId);
      } catch (e) {
        this.ctx.logger.error('deactivation listener failed', { userId: p.userId, error: e });
      }
    }
    // No third-party identifiers are ever bound here, so there is nothing that could fail to unbind.
    return { id_server_unbind_result: 'success' };
  }

  /**
   * The UIA flows for re-authenticating `userId`: m.login.password, or m.login.dummy for an account that has no
   * password (registered without one): its access token is then the only credential there is to prove.
   */
  private async reauthFlows(userId: string): Promise<string[][]> {
    const user = await this.getUser(userId);
    return user?.passwordHash !== undefined ? [[LOGIN_PASSWORD]] : [[LOGIN_DUMMY]];
  }

  // ---- Devices

  /** GET /devices */
  async listDevices(userId: string): Promise<JsonObject[]> {
    const rows = await this.ctx.kv.read((tx) => tx.range<DeviceRecord>(STORES.devices, { prefix: [userId] }));
    return rows.map(([, d]) => deviceJson(d));
  }

  /** GET /devices/{deviceId} */
  async getDevice(userId: string, deviceId: string): Promise<JsonObject> {
    const d = await this.ctx.kv.read((tx) => tx.get<DeviceRecord>(STORES.devices, [userId, deviceId]));
    if (!d) throw notFound('No such device');
    return deviceJson(d);
  }

  /** PUT /devices/{deviceId} */
  async updateDevice(userId: string, deviceId: string, body: JsonObject): Promise<void> {
    const name = optionalString(body, 'display_name');
    if (name !== undefined && name.length > MAX_DEVICE_NAME_LENGTH) {
      throw invalidParam('display_name', `must be at most ${MAX_DEVICE_NAME_LENGTH} characters`);
    }
    const pos = await this.ctx.kv.write(async (tx) => {
      const d = await tx.get<DeviceRecord>(STORES.devices, [userId, deviceId]);
      if (!d) throw notFound('No such device');
      if (name === undefined || name === d.displayName) return undefined;
      await tx.put(STORES.devices, [userId, deviceId], { ...d, displayName: name });
      // Device names are visible to other users through /keys/query, so their device lists changed.
      return this.deviceListChanged(tx, userId, deviceId);
    });
    if (pos !== undefined) this.ctx.notifier.notify(pos);
  }

  /** DELETE /devices/{deviceId} and POST /delete_devices (UIA: m.login.password). */
  async deleteDevices(principal: Principal, deviceIds: readonly string[], auth: unknown, operation: string): Promise<void> {
    if (principal.isGuest) throw guestAccessForbidden();
    const uia = await this.uia.check({
      operation,
      flows: await this.reauthFlows(principal.userId),
      userId: principal.userId,
      auth: auth as JsonObject | undefined,
    });
    await this.deleteDevicesNow(principal.userId, deviceIds, uia);
  }

  private async deleteDevicesNow(userId: string, deviceIds: readonly string[] | undefined, uia?: UiaResult): Promise<void> {
    let deleted: string[] = [];
    const pos = await this.ctx.kv.write(async (tx) => {
      if (uia) await endSession(tx, uia);
      if (deviceIds === undefined) {
        const rows = await tx.range<DeviceRecord>(STORES.devices, { prefix: [userId] });
        deleted = rows.map(([, d]) => d.deviceId);
      } else {
        deleted = [...new Set(deviceIds)];
      }
      return this.deleteDevicesInTx(tx, userId, deleted);
    });
    this.tokensRevoked();
    if (pos !== undefined) this.ctx.notifier.notify(pos);
    if (deleted.length > 0) {
      for (const listener of this.onDevicesDeleted) {
        try {
          await listener(userId, deleted);
        } catch (e) {
          this.ctx.logger.error('device deletion listener failed', { userId, error: e });
        }
      }
    }
  }

  /**
   * Deletes devices (all of the user's when `deviceIds` is undefined), their tokens and to-device queues.
   * Returns the stream position of the device-list change, if any device existed.
   */
  private async deleteDevicesInTx(tx: WriteTx, userId: string, deviceIds: readonly string[] | undefined): Promise<number | undefined> {
    let devices: DeviceRecord[];
    if (deviceIds === undefined) {
      devices = (await tx.range<DeviceRecord>(STORES.devices, { prefix: [userId] })).map(([, d]) => d);
    } else {
      const found = await tx.getMany<DeviceRecord>(STORES.devices, deviceIds.map((d) => [userId, d]));
      devices = found.filter((d): d is DeviceRecord => d !== undefined);
    }
    if (devices.length === 0) return undefined;
    for (const d of devices) {
      for (const k of d.accessTokens) await tx.delete(STORES.accessTokens, [k]);
      for (const k of d.refreshTokens) await tx.delete(STORES.refreshTokens, [k]);
      await tx.delete(STORES.devices, [userId, d.deviceId]);
      await tx.deleteRange(STORES.toDevice, { prefix: [userId, d.deviceId] });
    }
    // One entry per device: other servers learn of each deletion (m.device_list_update `deleted`).
    let pos = 0;
    for (const d of devices) pos = await this.deviceListChanged(tx, userId, d.deviceId, true);
    return pos;
  }

  /** Records a change of `userId`'s device `deviceId` for /sync (`device_lists.changed`) and federation. */
  private async deviceListChanged(tx: WriteTx, userId: string, deviceId: string, deleted = false): Promise<number> {
    const pos = await allocatePosition(tx);
    const entry: StreamEntry = { kind: 'device_list', userId, deviceId, ...(deleted ? { deleted } : {}) };
    await tx.put(STORES.stream, [pos], entry);
    return pos;
  }

  /**
   * Creates the device (or takes over an existing one of the same ID, revoking its old tokens: "the server may
   * invalidate any access token previously associated with that device") and stores the new tokens. Returns the
   * stream position when a new device appeared.
   */
  private async putDevice(
    tx: WriteTx,
    userId: string,
    deviceId: string,
    displayName: string | undefined,
    now: number,
    tokens: IssuedTokens,
    isGuest: boolean,
  ): Promise<number | undefined> {
    const existing = await tx.get<DeviceRecord>(STORES.devices, [userId, deviceId]);
    if (existing) {
      for (const k of existing.accessTokens) await tx.delete(STORES.accessTokens, [k]);
      for (const k of existing.refreshTokens) await tx.delete(STORES.refreshTokens, [k]);
    }
    const access = tokenKey(tokens.access);
    const accessRec: AccessTokenRecord = { userId, deviceId };
    if (isGuest) accessRec.isGuest = true;
    if (tokens.expiresInMs !== undefined) accessRec.expiresTs = now + tokens.expiresInMs;
    await tx.put(STORES.accessTokens, [access], accessRec);
    const device: DeviceRecord = existing
      ? { ...existing, accessTokens: [access], refreshTokens: [] }
      : { deviceId, createdTs: now, accessTokens: [access], refreshTokens: [] };
    if (!existing && displayName !== undefined) device.displayName = displayName.slice(0, MAX_DEVICE_NAME_LENGTH);
    if (tokens.refresh !== undefined) {
      const refresh = tokenKey(tokens.refresh);
      const rec: RefreshTokenRecord = { userId, deviceId, accessToken: access };
      await tx.put(STORES.refreshTokens, [refresh], rec);
      device.refreshTokens = [refresh];
    }
    await tx.put(STORES.devices, [userId, deviceId], device);
    return existing ? undefined : this.deviceListChanged(tx, userId, deviceId);
  }

  private newTokens(refresh: boolean): IssuedTokens {
    const access = randomToken(ACCESS_PREFIX);
    if (!refresh) return { access };
    return { access, refresh: randomToken(REFRESH_PREFIX), expiresInMs: this.ctx.config.accessTokenLifetimeMs };
  }
}

// ---- Helpers

/** The principal of a request that needs a full (non-guest) account. */
function requireAccountHolder(principal: Principal | undefined): Principal {
  // Without a token only third-party (email) flows could say who is asking, and this server offers none.
  if (!principal) throw missingToken();
  if (principal.isGuest) throw guestAccessForbidden();
  return principal;
}

function tokenFields(t: IssuedTokens): { access_token: string; refresh_token?: string; expires_in_ms?: number } {
  const out: { access_token: string; refresh_token?: string; expires_in_ms?: number } = { access_token: t.access };
  if (t.refresh !== undefined) out.refresh_token = t.refresh;
  if (t.expiresInMs !== undefined) out.expires_in_ms = t.expiresInMs;
  return out;
}

function deviceJson(d: DeviceRecord): JsonObject {
  const out: JsonObject = { device_id: d.deviceId };
  if (d.displayName !== undefined) out.display_name = d.displayName;
  return out;
}

function localpartOf(userId: string): string {
  return userId.slice(1, userId.indexOf(':'));
}

function checkDeviceId(deviceId: string): void {
  if (deviceId === '' || deviceId.length > MAX_DEVICE_ID_LENGTH) {
    throw invalidParam('device_id', `must be 1 to ${MAX_DEVICE_ID_LENGTH} characters`);
  }
}

function optionalString(body: JsonObject, name: string): string | undefined {
  const v = body[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw badJson(`'${name}' must be a string`);
  return v;
}

function optionalBool(body: JsonObject, name: string): boolean | undefined {
  const v = body[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw badJson(`'${name}' must be a boolean`);
  return v;
}

/** Read helpers for other services that already hold a transaction. */
export function readUser(tx: ReadTx, userId: string): Promise<UserRecord | undefined> {
  return tx.get<UserRecord>(STORES.users, [userId]);
}
