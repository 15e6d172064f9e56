/**
 * One long-lived `/hearth/federation/1` stream to a peer, carrying requests in both directions at once
 * (multiplexed by frame id, see framing.ts). Opening a stream costs a round trip or more (~2.5 ms on TCP, ~10 ms
 * on WebRTC: shared/PLATFORM-NOTES.md), so a channel is opened once per connection and reused for every request.
 *
 * The channel knows nothing about libp2p connections or server names beyond the authenticated `remote` it is given:
 * inbound requests go to `handler` (bound to that origin by the transport), outbound ones wait for their response,
 * a timeout, an abort or the stream's end.
 */
import type { Stream } from '@libp2p/interface';
import type { JsonValue } from '../core/json.js';
import type { FederationRequest, FederationResponse } from '../federation/transport.js';
import { UnreachableError } from '../federation/transport.js';
import type { Logger } from '../services/context.js';
import { silentLogger } from '../services/context.js';
import type { RequestFrame, ResponseFrame } from './framing.js';
import { FRAME_HEADER_BYTES, FrameDecoder, encodeFrame, parseFrame, peekFrame } from './framing.js';

export interface RpcChannelInit {
  /** The authenticated server name of the other end (for errors and logs). */
  remote: string;
  /** Answers the remote's requests. */
  handler: (req: FederationRequest) => Promise<FederationResponse>;
  /** Largest frame accepted (and sent), in bytes of JSON. */
  maxFrameBytes: number;
  /** Inbound requests handled at once; more are answered 429 until some finish. */
  maxConcurrentInbound: number;
  logger?: Logger;
  /** Called once when the stream has ended, for any reason. */
  onClose?: (channel: RpcChannel) => void;
}

interface Pending {
  resolve(res: FederationResponse): void;
  reject(err: Error): void;
}

function errorBody(errcode: string, error: string, extra: Record<string, JsonValue> = {}): JsonValue {
  return { errcode, error, ...extra };
}

export class RpcChannel {
  readonly remote: string;
  private readonly stream: Stream;
  private readonly init: RpcChannelInit;
  private readonly logger: Logger;
  private readonly decoder: FrameDecoder;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private inflight = 0;
  private closed = false;
  private outbox: Uint8Array[] = [];
  private outboxBytes = 0;

  constructor(stream: Stream, init: RpcChannelInit) {
    this.stream = stream;
    this.init = init;
    this.remote = init.remote;
    this.logger = init.logger ?? silentLogger;
    this.decoder = new FrameDecoder(init.maxFrameBytes);
    stream.addEventListener('message', (ev) => {
      const data = ev.data instanceof Uint8Array ? ev.data : ev.data.subarray();
      this.onBytes(data);
    });
    stream.addEventListener('close', (ev) => this.shutdown(ev.error ? `stream closed: ${ev.error.message}` : 'stream closed'));
    // The remote will send nothing more (no responses either): this channel is done.
    stream.addEventListener('remoteCloseWrite', () => {
      this.shutdown('remote closed the stream');
      void stream.close().catch(() => stream.abort(new Error('close failed')));
    });
    if (stream.status !== 'open') this.shutdown('stream closed');
  }

  /** Whether requests can still be sent. */
  get isOpen(): boolean {
    return !this.closed && this.stream.status === 'open' && this.stream.writeStatus === 'writable';
  }

  /** Requests waiting for their response. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Sends a request and waits for its response. Rejects with UnreachableError when the stream ends or `timeoutMs`
   * passes first, and with the signal's reason when `signal` aborts.
   */
  request(req: FederationRequest, timeoutMs: number, signal?: AbortSignal): Promise<FederationResponse> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (!this.isOpen) return Promise.reject(new UnreachableError(this.remote, 'connection closed'));
    const id = this.nextId++;
    const frame: RequestFrame = req.body === undefined ? { id, method: req.method, path: req.path } : { id, method: req.method, path: req.path, body: req.body };
    const bytes = encodeFrame(frame);
    if (bytes.length - FRAME_HEADER_BYTES > this.init.maxFrameBytes) {
      // The remote would refuse it the same way; do not spend the bandwidth.
      return Promise.resolve({ status: 413, body: errorBody('M_TOO_LARGE', `request exceeds ${this.init.maxFrameBytes} bytes`) });
    }
    return new Promise<FederationResponse>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.pending.delete(id);
      };
      const onAbort = () => {
        done();
        reject(signal!.reason);
      };
      const timer = setTimeout(() => {
        done();
        reject(new UnreachableError(this.remote, `no response within ${timeoutMs} ms`));
      }, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        resolve: (res) => {
          done();
          resolve(res);
        },
        reject: (err) => {
          done();
          reject(err);
        },
      });
      this.write(bytes);
    });
  }

  /** Closes our side gracefully (pending requests fail once the remote closes too). */
  async close(): Promise<void> {
    this.shutdown('channel closed');
    try {
      await this.stream.close();
    } catch {
      this.stream.abort(new Error('close failed'));
    }
  }

  /** Resets the stream at once. */
  abort(reason: string): void {
    this.shutdown(reason);
    this.stream.abort(new Error(reason));
  }

  /**
   * Queues a frame; the frames queued in one turn of the event loop go out as one send (one muxer frame, one
   * encryption, one socket write) — a burst of 100 requests or answers costs about as much as one.
   */
  private write(bytes: Uint8Array): void {
    this.outbox.push(bytes);
    this.outboxBytes += bytes.length;
    if (this.outbox.length === 1) queueMicrotask(this.flush);
  }

  private readonly flush = (): void => {
    const frames = this.outbox;
    const total = this.outboxBytes;
    this.outbox = [];
    this.outboxBytes = 0;
    if (frames.length === 0 || this.stream.writeStatus !== 'writable') return;
    let data = frames[0];
    if (frames.length > 1) {
      data = new Uint8Array(total);
      let off = 0;
      for (const f of frames) {
        data.set(f, off);
        off += f.length;
      }
    }
    try {
      // send() buffers when the transport is busy (returns false); frames stay in order either way.
      this.stream.send(data);
    } catch (e) {
      this.logger.debug(`federation stream to ${this.remote}: send failed`, e);
      this.shutdown('stream not writable');
    }
  };

  private shutdown(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of [...this.pending.values()]) p.reject(new UnreachableError(this.remote, reason));
    this.pending.clear();
    this.init.onClose?.(this);
  }

  private onBytes(chunk: Uint8Array): void {
    let frames;
    try {
      frames = this.decoder.push(chunk);
    } catch (e) {
      this.logger.warn(`federation stream from ${this.remote}: undecodable bytes`, e);
      this.abort('undecodable bytes');
      return;
    }
    for (const f of frames) {
      if (f.kind === 'oversize') {
        const head = peekFrame(f.head);
        this.logger.warn(`federation stream from ${this.remote}: frame of ${f.length} bytes over the limit`);
        if (head === undefined) {
          this.abort('oversize frame without an id');
          return;
        }
        // An oversize response fails its request; an oversize request gets a 413.
        if (head.response) this.pending.get(head.id)?.reject(new UnreachableError(this.remote, `response of ${f.length} bytes exceeds the ${this.init.maxFrameBytes}-byte limit`));
        else this.respond(head.id, 413, errorBody('M_TOO_LARGE', `frame exceeds ${this.init.maxFrameBytes} bytes`));
        continue;
      }
      const parsed = parseFrame(f.payload);
      switch (parsed.kind) {
        case 'request':
          this.onRequest(parsed.frame);
          break;
        case 'response':
          this.pending.get(parsed.frame.id)?.resolve({ status: parsed.frame.status, body: parsed.frame.body });
          break;
        case 'malformed': {
          this.logger.warn(`federation stream from ${this.remote}: ${parsed.reason}`);
          if (parsed.id === undefined) {
            // Nothing to answer and no way to tell what it was: a peer speaking garbage loses the stream.
            this.abort(`malformed frame: ${parsed.reason}`);
            return;
          }
          // Ids of our requests and of the remote's are separate spaces: only a response may fail a pending request.
          if (parsed.response) this.pending.get(parsed.id)?.reject(new UnreachableError(this.remote, `malformed response: ${parsed.reason}`));
          else this.respond(parsed.id, 400, errorBody(parsed.errcode, parsed.reason));
          break;
        }
      }
    }
  }

  private onRequest(frame: RequestFrame): void {
    if (this.inflight >= this.init.maxConcurrentInbound) {
      this.respond(frame.id, 429, errorBody('M_LIMIT_EXCEEDED', 'too many concurrent requests', { retry_after_ms: 100 }));
      return;
    }
    this.inflight++;
    const req: FederationRequest = frame.body === undefined ? { method: frame.method, path: frame.path } : { method: frame.method, path: frame.path, body: frame.body };
    let result: Promise<FederationResponse>;
    try {
      result = this.init.handler(req);
    } catch (e) {
      result = Promise.reject(e);
    }
    result
      .then(
        (res) => this.respond(frame.id, res.status, res.body),
        (e: unknown) => {
          this.logger.error(`federation request ${frame.method} ${frame.path} from ${this.remote} failed`, e);
          this.respond(frame.id, 500, errorBody('M_UNKNOWN', 'Internal server error'));
        },
      )
      .finally(() => this.inflight--);
  }

  private respond(id: number, status: number, body: JsonValue): void {
    if (this.closed || this.stream.writeStatus !== 'writable') return;
    const frame: ResponseFrame = { id, status, body: body === undefined ? null : body };
    let bytes: Uint8Array;
    try {
      bytes = encodeFrame(frame);
    } catch (e) {
      this.logger.error(`federation response to ${this.remote} is not serialisable`, e);
      bytes = encodeFrame({ id, status: 500, body: errorBody('M_UNKNOWN', 'Internal server error') });
    }
    if (bytes.length - FRAME_HEADER_BYTES > this.init.maxFrameBytes) {
      this.logger.warn(`federation response to ${this.remote} is ${bytes.length} bytes, over the frame limit`);
      bytes = encodeFrame({ id, status: 500, body: errorBody('M_TOO_LARGE', 'response exceeds the frame limit') });
    }
    this.write(bytes);
  }
}
