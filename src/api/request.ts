/**
 * Reading requests: bodies with a size limit, JSON parsing, request-body validation errors, query parameters.
 *
 * Spec: shared/matrix-spec/content/client-server-api/_index.md#api-standards — POST/PUT bodies are JSON objects;
 * clients SHOULD send `Content-Type: application/json` but need not, so the Content-Type is not checked.
 */
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import { badJson, invalidParam, missingParam, notJson, tooLarge } from './errors.js';

/** Default limit for JSON Client-Server bodies. An event may not exceed 65536 bytes, so its content fits. */
export const DEFAULT_JSON_BODY_LIMIT = 64 * 1024;

/** A request body as a host hands it over: whole bytes or text, a stream (large or chunked bodies), or none. */
export type BodySource = Uint8Array | string | ReadableStream<Uint8Array> | null;

const encoder = new TextEncoder();

/**
 * Reads the whole body, refusing more than `maxBytes`: a declared Content-Length over the limit is refused before
 * reading anything, and a streamed body is cancelled as soon as it passes the limit (never buffered whole).
 * Throws 413 M_TOO_LARGE. A stream that fails with a MatrixError (e.g. the host's own cap) rethrows it.
 */
export function readBody(request: Request, maxBytes: number): Promise<Uint8Array> {
  return readBodySource(request.body, request.headers.get('content-length'), maxBytes);
}

/** `readBody` over a body source; `declaredLength` is the request's Content-Length header, if it has one. */
export async function readBodySource(source: BodySource, declaredLength: string | null | undefined, maxBytes: number): Promise<Uint8Array> {
  if (declaredLength != null && /^\d+$/.test(declaredLength.trim()) && Number(declaredLength) > maxBytes) {
    if (source instanceof ReadableStream) await source.cancel().catch(() => {});
    throw tooLarge(`Request body exceeds ${maxBytes} bytes`);
  }
  if (source === null) return new Uint8Array(0);
  if (!(source instanceof ReadableStream)) {
    const bytes = typeof source === 'string' ? encoder.encode(source) : source;
    if (bytes.byteLength > maxBytes) throw tooLarge(`Request body exceeds ${maxBytes} bytes`);
    return bytes;
  }
  const reader = source.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        throw tooLarge(`Request body exceeds ${maxBytes} bytes`);
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes UTF-8 JSON (a leading BOM is tolerated). Throws 400 M_NOT_JSON. */
export function parseJson(bytes: Uint8Array): JsonValue {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw notJson('Request body is not valid UTF-8');
  }
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    throw notJson();
  }
}

export interface ReadJsonOptions {
  maxBytes?: number;
  /** Treat an empty (or all-whitespace) body as `{}`. Many clients send none to endpoints whose fields are all optional. */
  allowEmpty?: boolean;
}

/**
 * Reads a body that must be a JSON object: not JSON → 400 M_NOT_JSON; JSON but not an object → 400 M_BAD_JSON;
 * too big → 413 M_TOO_LARGE.
 */
export async function readJsonObject(request: Request, opts: ReadJsonOptions = {}): Promise<JsonObject> {
  return parseJsonObject(await readBody(request, opts.maxBytes ?? DEFAULT_JSON_BODY_LIMIT), opts.allowEmpty === true);
}

/** `readJsonObject`'s checks on bytes already read. */
export function parseJsonObject(bytes: Uint8Array, allowEmpty: boolean): JsonObject {
  if (allowEmpty && isBlank(bytes)) return {};
  if (bytes.byteLength === 0) throw notJson('Request body is empty; expected a JSON object');
  const value = parseJson(bytes);
  if (!isJsonObject(value)) throw badJson('Request body must be a JSON object');
  return value;
}

function isBlank(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) return false;
  return true;
}

// ---- Body validation (the validators are generated: src/api/generated/body-validators.js)

/** One failure as ajv's standalone validators report it (with `messages: false`). */
export interface ValidationFailure {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
}

/** A compiled validator: returns whether `data` is valid; on failure `errors` holds the first failure. */
export type BodyValidator = ((data: unknown) => boolean) & { errors?: ValidationFailure[] | null };

/** Runs a validator and throws the matching 400 error, naming the field. */
export function validateBody(validate: BodyValidator, body: JsonObject): void {
  if (validate(body)) return;
  throw validationError(validate.errors?.[0]);
}

/**
 * Maps a schema failure to a Matrix error:
 * - a required field missing → M_MISSING_PARAM;
 * - a wrong JSON type, an unexpected field where the schema forbids extras, or no matching alternative → M_BAD_JSON;
 * - a value of the right type that the schema refuses (enum, pattern, bounds) → M_INVALID_PARAM.
 */
export function validationError(f: ValidationFailure | undefined): Error {
  if (!f) return badJson();
  const at = fieldName(f.instancePath);
  const p = f.params;
  switch (f.keyword) {
    case 'required': {
      const name = joinField(at, String(p.missingProperty));
      return missingParam(name, `Missing required field '${name}'`);
    }
    case 'type':
      if (at === '') return badJson('Request body must be a JSON object');
      return badJson(`'${at}' must be of type ${Array.isArray(p.type) ? p.type.join(' or ') : String(p.type)}`);
    case 'additionalProperties':
      return badJson(`Unexpected field '${joinField(at, String(p.additionalProperty))}'`);
    case 'oneOf':
    case 'anyOf':
      return badJson(at === '' ? 'Request body does not match any allowed form' : `'${at}' does not match any allowed form`);
    case 'enum':
      return invalidParam(at || 'body', `must be one of: ${(p.allowedValues as unknown[]).map(String).join(', ')}`);
    case 'const':
      return invalidParam(at || 'body', `must be ${JSON.stringify(p.allowedValue)}`);
    case 'pattern':
      return invalidParam(at || 'body', `must match ${String(p.pattern)}`);
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
    case 'minLength':
    case 'maxLength':
    case 'minItems':
    case 'maxItems':
    case 'minProperties':
    case 'maxProperties':
      return invalidParam(at || 'body', `must satisfy ${f.keyword} ${String(p.limit)}`);
    default:
      return at === '' ? badJson() : invalidParam(at, `is invalid (${f.keyword})`);
  }
}

/** `/invite/0` → `invite[0]`, `/creation_content/m.federate` → `creation_content["m.federate"]`. */
export function fieldName(instancePath: string): string {
  if (instancePath === '') return '';
  let out = '';
  for (const raw of instancePath.split('/').slice(1)) {
    out = joinField(out, raw.replace(/~1/g, '/').replace(/~0/g, '~'));
  }
  return out;
}

function joinField(base: string, key: string): string {
  if (/^\d+$/.test(key)) return `${base}[${key}]`;
  if (/^[A-Za-z_$][\w$]*$/.test(key)) return base === '' ? key : `${base}.${key}`;
  return `${base}[${JSON.stringify(key)}]`;
}

// ---- Query parameters

/** A query parameter that must be present (400 M_MISSING_PARAM otherwise). */
export function requireQuery(query: URLSearchParams, name: string): string {
  const v = query.get(name);
  if (v === null) throw missingParam(name);
  return v;
}

export interface IntOptions {
  min?: number;
  max?: number;
}

/**
 * An integer query parameter: absent → `fallback`; not a (safe) integer or out of range → 400 M_INVALID_PARAM.
 */
export function queryInt(query: URLSearchParams, name: string, fallback: number, opts?: IntOptions): number;
export function queryInt(query: URLSearchParams, name: string, fallback?: undefined, opts?: IntOptions): number | undefined;
export function queryInt(
  query: URLSearchParams,
  name: string,
  fallback?: number,
  opts: IntOptions = {},
): number | undefined {
  const raw = query.get(name);
  if (raw === null) return fallback;
  if (!/^-?\d+$/.test(raw)) throw invalidParam(name, 'must be an integer');
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw invalidParam(name, 'is out of range');
  if (opts.min !== undefined && n < opts.min) throw invalidParam(name, `must be at least ${opts.min}`);
  if (opts.max !== undefined && n > opts.max) throw invalidParam(name, `must be at most ${opts.max}`);
  return n;
}

/** A boolean query parameter (`true`/`false`); absent → `fallback`; anything else → 400 M_INVALID_PARAM. */
export function queryBool(query: URLSearchParams, name: string, fallback: boolean): boolean {
  const raw = query.get(name);
  if (raw === null) return fallback;
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  throw invalidParam(name, "must be 'true' or 'false'");
}

/** One of a fixed set of values (e.g. `dir=b|f`); absent → `fallback`. */
export function queryEnum<T extends string>(query: URLSearchParams, name: string, allowed: readonly T[], fallback: T): T;
export function queryEnum<T extends string>(
  query: URLSearchParams,
  name: string,
  allowed: readonly T[],
  fallback?: undefined,
): T | undefined;
export function queryEnum<T extends string>(
  query: URLSearchParams,
  name: string,
  allowed: readonly T[],
  fallback?: T,
): T | undefined {
  const raw = query.get(name);
  if (raw === null) return fallback;
  if (!(allowed as readonly string[]).includes(raw)) throw invalidParam(name, `must be one of: ${allowed.join(', ')}`);
  return raw as T;
}

/** A JSON-valued query parameter (`filter={...}` on /sync and /messages); malformed → 400 M_INVALID_PARAM. */
export function queryJson(query: URLSearchParams, name: string): JsonValue | undefined {
  const raw = query.get(name);
  if (raw === null) return undefined;
  try {
    return JSON.parse(raw) as JsonValue;
  } catch {
    throw invalidParam(name, 'is not valid JSON');
  }
}
