/**
 * Frames of the `/hearth/federation/1` protocol: each frame is a 4-byte big-endian length followed by that many
 * bytes of UTF-8 JSON.
 *
 *   request   {"id": 7, "method": "PUT", "path": "/_matrix/federation/v1/send/t1", "body": {...}}
 *   response  {"id": 7, "status": 200, "body": {...}}
 *
 * Requests and responses of both directions share one stream: a request's `id` is chosen by the side that sends
 * it, and a response carries the id of the request it answers. Bodies are the spec's federation JSON unchanged
 * (shared/matrix-spec/data/api/server-server). The sender's server name is never in a frame: the receiver takes it
 * from the authenticated connection.
 *
 * A frame longer than the receiver's limit is skipped as it streams in (never buffered) and answered with 413
 * M_TOO_LARGE; its id is read from the first bytes, which is why the encoder always writes `id` first.
 */
import type { FederationMethod } from '../federation/transport.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';

export const FRAME_HEADER_BYTES = 4;
/** Bytes of an oversize frame kept to find its id. */
const HEAD_BYTES = 64;
/** Longest accepted request path (with query), in characters. */
const MAX_PATH_LENGTH = 16 * 1024;
const METHODS: ReadonlySet<string> = new Set(['GET', 'PUT', 'POST', 'DELETE']);

export interface RequestFrame {
  id: number;
  method: FederationMethod;
  path: string;
  body?: JsonObject;
}

export interface ResponseFrame {
  id: number;
  status: number;
  body: JsonValue;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** A frame's bytes: header + JSON. `frame` must be JSON-serialisable with `id` as its first key. */
export function encodeFrame(frame: RequestFrame | ResponseFrame): Uint8Array {
  const json = encoder.encode(JSON.stringify(frame));
  const out = new Uint8Array(FRAME_HEADER_BYTES + json.length);
  new DataView(out.buffer).setUint32(0, json.length);
  out.set(json, FRAME_HEADER_BYTES);
  return out;
}

/** What the decoder found in the byte stream. */
export type DecodedFrame =
  | { kind: 'frame'; payload: Uint8Array }
  /** A frame over the limit: its declared length and its first bytes (for the id). The rest is skipped. */
  | { kind: 'oversize'; length: number; head: Uint8Array };

/**
 * Splits a byte stream into frames. Holds at most one frame of `maxFrameBytes` in memory; larger frames are
 * reported once and then discarded as their bytes arrive.
 */
export class FrameDecoder {
  private readonly header = new Uint8Array(FRAME_HEADER_BYTES);
  private headerFill = 0;
  /** The frame being filled, when its header said it fits. */
  private body: Uint8Array | undefined;
  private bodyFill = 0;
  /** Bytes of an oversize frame still to discard. */
  private skipLeft = 0;
  private head: Uint8Array | undefined;
  private headFill = 0;
  private skipLength = 0;

  constructor(readonly maxFrameBytes: number) {}

  /** Feeds bytes; returns the frames (and oversize reports) they completed. */
  push(chunk: Uint8Array): DecodedFrame[] {
    const out: DecodedFrame[] = [];
    let off = 0;
    while (off < chunk.length) {
      if (this.skipLeft > 0) {
        const n = Math.min(this.skipLeft, chunk.length - off);
        if (this.head !== undefined) {
          const take = Math.min(n, this.head.length - this.headFill);
          this.head.set(chunk.subarray(off, off + take), this.headFill);
          this.headFill += take;
          if (this.headFill === this.head.length) {
            out.push({ kind: 'oversize', length: this.skipLength, head: this.head });
            this.head = undefined;
          }
        }
        this.skipLeft -= n;
        off += n;
        continue;
      }
      if (this.body === undefined) {
        // Fast path: a whole frame inside this chunk, header included, needs no copy.
        if (this.headerFill === 0 && chunk.length - off >= FRAME_HEADER_BYTES) {
          const len = new DataView(chunk.buffer, chunk.byteOffset + off, FRAME_HEADER_BYTES).getUint32(0);
          if (len <= this.maxFrameBytes && chunk.length - off - FRAME_HEADER_BYTES >= len) {
            out.push({ kind: 'frame', payload: chunk.subarray(off + FRAME_HEADER_BYTES, off + FRAME_HEADER_BYTES + len) });
            off += FRAME_HEADER_BYTES + len;
            continue;
          }
        }
        const take = Math.min(FRAME_HEADER_BYTES - this.headerFill, chunk.length - off);
        this.header.set(chunk.subarray(off, off + take), this.headerFill);
        this.headerFill += take;
        off += take;
        if (this.headerFill < FRAME_HEADER_BYTES) continue;
        this.headerFill = 0;
        const len = new DataView(this.header.buffer).getUint32(0);
        if (len > this.maxFrameBytes) {
          this.skipLeft = len;
          this.skipLength = len;
          this.head = new Uint8Array(Math.min(HEAD_BYTES, len));
          this.headFill = 0;
          continue;
        }
        if (len === 0) {
          out.push({ kind: 'frame', payload: new Uint8Array(0) });
          continue;
        }
        this.body = new Uint8Array(len);
        this.bodyFill = 0;
        continue;
      }
      const take = Math.min(this.body.length - this.bodyFill, chunk.length - off);
      this.body.set(chunk.subarray(off, off + take), this.bodyFill);
      this.bodyFill += take;
      off += take;
      if (this.bodyFill === this.body.length) {
        out.push({ kind: 'frame', payload: this.body });
        this.body = undefined;
      }
    }
    return out;
  }
}

/**
 * The id at the start of a frame's JSON (`{"id":123,"method":…` or `{"id":123,"status":…`) and which kind of frame
 * the next key says it is, for oversize and unparsable frames. Undefined when the bytes do not start that way.
 */
export function peekFrame(bytes: Uint8Array): { id: number; response: boolean } | undefined {
  // Not fatal: the head may end inside a multi-byte character.
  const text = new TextDecoder().decode(bytes.subarray(0, HEAD_BYTES));
  const m = /^\s*\{\s*"id"\s*:\s*(\d{1,15})\s*,\s*"(method|status)"/.exec(text);
  if (!m) return undefined;
  const id = Number(m[1]);
  return id > 0 ? { id, response: m[2] === 'status' } : undefined;
}

export type ParsedFrame =
  | { kind: 'request'; frame: RequestFrame }
  | { kind: 'response'; frame: ResponseFrame }
  | {
      kind: 'malformed';
      /** The frame's id when it could be found, so the error can be answered. */
      id?: number;
      /** Whether the frame looked like a response (then nobody is to be answered). */
      response: boolean;
      errcode: 'M_NOT_JSON' | 'M_BAD_JSON';
      reason: string;
    };

function isFrameId(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
}

/** Parses and checks one frame's JSON. Never throws. */
export function parseFrame(payload: Uint8Array): ParsedFrame {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(payload));
  } catch {
    const head = peekFrame(payload);
    return { kind: 'malformed', id: head?.id, response: head?.response ?? false, errcode: 'M_NOT_JSON', reason: 'frame is not UTF-8 JSON' };
  }
  if (!isJsonObject(value)) return { kind: 'malformed', response: false, errcode: 'M_BAD_JSON', reason: 'frame is not a JSON object' };
  const id = isFrameId(value.id) ? value.id : undefined;
  const bad = (response: boolean, reason: string): ParsedFrame => ({ kind: 'malformed', id, response, errcode: 'M_BAD_JSON', reason });
  if ('status' in value && !('method' in value)) {
    const { status } = value;
    if (id === undefined) return bad(true, 'response frame without a valid id');
    if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 599) return bad(true, 'response status must be an HTTP status');
    return { kind: 'response', frame: { id, status, body: value.body === undefined ? null : value.body } };
  }
  if (id === undefined) return bad(false, 'request frame without a valid id (a positive integer)');
  const { method, path, body } = value;
  if (typeof method !== 'string' || !METHODS.has(method)) return bad(false, 'method must be GET, PUT, POST or DELETE');
  if (typeof path !== 'string' || !path.startsWith('/') || path.length > MAX_PATH_LENGTH) return bad(false, 'path must be an absolute path');
  if (body !== undefined && body !== null && !isJsonObject(body)) return bad(false, 'body must be a JSON object');
  const frame: RequestFrame = { id, method: method as FederationMethod, path };
  if (isJsonObject(body)) frame.body = body;
  return { kind: 'request', frame };
}
