/**
 * User-interactive authentication (UIA): the 401 dance that guards /register, password change, deactivation and
 * device deletion.
 * Spec: shared/matrix-spec/content/client-server-api/_index.md#user-interactive-authentication-api
 * (#authentication-types: m.login.password, m.login.dummy, m.login.registration_token).
 *
 * A session lives in `uia_sessions` [sessionId] and is bound to one operation (`POST /register`, …) and, for
 * authenticated operations, to one user: using it for anything else is refused, as Synapse does. The caller
 * deletes the session in the same write transaction that performs the guarded operation (`endSession`), so a
 * completed session cannot be replayed.
 */
import { MatrixError, badJson, forbidden, unknown } from '../api/errors.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type { WriteTx } from '../storage/kv.js';
import { STORES } from '../storage/schema.js';
import type { ServiceContext } from './context.js';
import { randomToken, verifyPassword } from './passwords.js';

export const LOGIN_DUMMY = 'm.login.dummy';
export const LOGIN_PASSWORD = 'm.login.password';
export const LOGIN_REGISTRATION_TOKEN = 'm.login.registration_token';

/** Synapse keeps unfinished UIA sessions for 48 hours; so do we. */
const SESSION_LIFETIME_MS = 48 * 60 * 60 * 1000;

/** uia_sessions: [sessionId] → UiaSessionRecord */
export interface UiaSessionRecord {
  operation: string;
  /** The authenticated user the session belongs to (absent for registration). */
  userId?: string;
  completed: string[];
  createdTs: number;
  expiresTs: number;
}

/** The 401 of UIA: its body is the spec's auth response, not a standard error (no errcode unless a stage failed). */
export class UiaRequired extends MatrixError {
  constructor(readonly body: Readonly<Record<string, unknown>>) {
    super(401, typeof body.errcode === 'string' ? body.errcode : 'M_UIA_REQUIRED', 'Additional authentication required');
  }

  override toJSON(): Record<string, unknown> {
    return { ...this.body };
  }
}

export interface UiaRequest {
  /** What is authorised, e.g. `POST /register`; a session only serves the operation it was created for. */
  operation: string;
  /** Flows offered, each a list of stage types. */
  flows: readonly (readonly string[])[];
  params?: Readonly<Record<string, JsonObject>>;
  /** The user performing an authenticated operation; `m.login.password` must prove to be them. */
  userId?: string;
  /** The request body's `auth` field, as sent. */
  auth: JsonValue | undefined;
}

export interface UiaResult {
  /** The stored session to delete with `endSession` in the operation's transaction, if one was stored. */
  sessionId?: string;
}

export interface UiaComponents {
  ctx: ServiceContext;
  /** The stored password hash of a local user (undefined: no such user or no password). */
  passwordHash(userId: string): Promise<string | undefined>;
  /** Resolves a login identifier (`identifier` / legacy `user`) of `auth` to a user ID, or undefined. */
  resolveUser(auth: JsonObject): string | undefined;
}

export class UiaService {
  constructor(private readonly c: UiaComponents) {}

  /**
   * Runs one UIA step. Returns when a flow is complete; otherwise throws `UiaRequired` (401 with flows, params,
   * session, completed — and errcode/error when the submitted stage failed), or a 400/403 for misuse.
   */
  async check(req: UiaRequest): Promise<UiaResult> {
    const { ctx } = this.c;
    const now = ctx.clock.now();
    if (req.auth === undefined || req.auth === null) {
      const sessionId = await this.createSession(req, []);
      throw this.required(req, sessionId, []);
    }
    if (!isJsonObject(req.auth)) throw badJson("'auth' must be an object");
    const auth = req.auth;
    if (auth.session !== undefined && typeof auth.session !== 'string') throw badJson("'auth.session' must be a string");

    let sessionId = auth.session as string | undefined;
    let session: UiaSessionRecord | undefined;
    if (sessionId !== undefined) {
      session = await ctx.kv.read((tx) => tx.get<UiaSessionRecord>(STORES.uiaSessions, [sessionId!]));
      // Synapse answers an unknown session with 400 M_UNKNOWN.
      if (!session || session.expiresTs <= now) throw unknown('Unknown or expired UIA session', 400);
      if (session.operation !== req.operation) {
        throw forbidden('Requested operation has changed during the UI authentication session');
      }
      if (session.userId !== req.userId) throw forbidden('This UIA session belongs to another user');
    }
    const completed = [...(session?.completed ?? [])];

    const type = auth.type;
    if (type === undefined) {
      // A client may send just the session to learn where it stands.
      sessionId ??= await this.createSession(req, completed);
      throw this.required(req, sessionId, completed);
    }
    if (typeof type !== 'string') throw badJson("'auth.type' must be a string");
    if (!req.flows.some((f) => f.includes(type))) throw new MatrixError(400, 'M_UNRECOGNIZED', `Authentication type '${type}' is not offered here`);

    const failure = await this.verifyStage(type, auth, req);
    if (failure) {
      sessionId ??= await this.createSession(req, completed);
      throw this.required(req, sessionId, completed, failure);
    }
    if (!completed.includes(type)) completed.push(type);
    if (req.flows.some((f) => f.every((s) => completed.includes(s)))) return { sessionId };

    // More stages to go: remember this one.
    if (sessionId !== undefined && session) {
      const sid = sessionId;
      await ctx.kv.write((tx) => tx.put(STORES.uiaSessions, [sid], { ...session!, completed }));
    } else {
      sessionId = await this.createSession(req, completed);
    }
    throw this.required(req, sessionId, completed);
  }

  private async verifyStage(
    type: string,
    auth: JsonObject,
    req: UiaRequest,
  ): Promise<{ errcode: string; error: string } | undefined> {
    switch (type) {
      case LOGIN_DUMMY:
        return undefined;
      case LOGIN_REGISTRATION_TOKEN: {
        const token = auth.token;
        if (typeof token !== 'string') return { errcode: 'M_MISSING_PARAM', error: "Missing 'auth.token'" };
        if (this.c.ctx.config.registrationTokens.includes(token)) return undefined;
        return { errcode: 'M_UNAUTHORIZED', error: 'Invalid registration token' };
      }
      case LOGIN_PASSWORD: {
        if (typeof auth.password !== 'string') return { errcode: 'M_MISSING_PARAM', error: "Missing 'auth.password'" };
        const userId = this.c.resolveUser(auth);
        if (userId === undefined || req.userId === undefined) {
          return { errcode: 'M_FORBIDDEN', error: 'Invalid user or password' };
        }
        if (userId !== req.userId) return { errcode: 'M_FORBIDDEN', error: 'Authenticate as the user making the request' };
        const ok = await verifyPassword(auth.password, await this.c.passwordHash(userId));
        return ok ? undefined : { errcode: 'M_FORBIDDEN', error: 'Invalid password' };
      }
      default:
        return { errcode: 'M_UNRECOGNIZED', error: `Unsupported authentication type '${type}'` };
    }
  }

  private async createSession(req: UiaRequest, completed: string[]): Promise<string> {
    const now = this.c.ctx.clock.now();
    const sessionId = randomToken('');
    const rec: UiaSessionRecord = { operation: req.operation, completed, createdTs: now, expiresTs: now + SESSION_LIFETIME_MS };
    if (req.userId !== undefined) rec.userId = req.userId;
    await this.c.ctx.kv.write((tx) => tx.put(STORES.uiaSessions, [sessionId], rec));
    return sessionId;
  }

  private required(
    req: UiaRequest,
    sessionId: string,
    completed: string[],
    failure?: { errcode: string; error: string },
  ): UiaRequired {
    const body: Record<string, unknown> = {
      flows: req.flows.map((stages) => ({ stages: [...stages] })),
      params: req.params ?? {},
      session: sessionId,
    };
    if (completed.length > 0 || failure) body.completed = completed;
    if (failure) Object.assign(body, failure);
    return new UiaRequired(body);
  }
}

/** Deletes a completed session inside the guarded operation's write transaction. */
export async function endSession(tx: WriteTx, result: UiaResult): Promise<void> {
  if (result.sessionId !== undefined) await tx.delete(STORES.uiaSessions, [result.sessionId]);
}
