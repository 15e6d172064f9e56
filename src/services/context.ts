/**
 * What every service receives: the narrow set of components a homeserver is built from (STYLE.md, "Components").
 * Tests pass fakes (memory storage, a fixed clock).
 */
import type { ServerIdentity } from '../core/server-key.js';
import type { Kv } from '../storage/kv.js';
import type { Notifier } from './notifier.js';

export interface Clock {
  now(): number;
}

export interface Logger {
  debug(msg: string, data?: unknown): void;
  info(msg: string, data?: unknown): void;
  warn(msg: string, data?: unknown): void;
  error(msg: string, data?: unknown): void;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
export const systemClock: Clock = { now: () => Date.now() };

export interface HomeserverConfig {
  /** 'open': anyone may register; 'token': registration needs a token from `registrationTokens`; 'closed'. */
  registration: 'open' | 'token' | 'closed';
  registrationTokens: readonly string[];
  /** Allow guest registration (`kind=guest`). */
  allowGuests: boolean;
  /** The client-facing base URL (for /.well-known/matrix/client), when known. */
  publicBaseUrl?: string;
  /** Access token lifetime when the client asks for a refresh token; undefined = tokens do not expire. */
  accessTokenLifetimeMs: number;
}

export const DEFAULT_CONFIG: HomeserverConfig = {
  registration: 'open',
  registrationTokens: [],
  allowGuests: true,
  accessTokenLifetimeMs: 60 * 60 * 1000,
};

export interface ServiceContext {
  readonly kv: Kv;
  readonly identity: ServerIdentity;
  readonly serverName: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly notifier: Notifier;
  readonly config: HomeserverConfig;
}
