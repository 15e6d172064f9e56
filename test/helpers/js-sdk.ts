/**
 * Shared pieces for tests that drive a real, unmodified matrix-js-sdk: a logger that keeps only warnings and
 * errors (they explain a failure), and waits on client events that re-check the client's state first, so nothing
 * depends on timing.
 */
import { ClientEvent, RoomEvent, createClient } from 'matrix-js-sdk';
import type { ICreateClientOpts, MatrixClient, MatrixEvent } from 'matrix-js-sdk';

type SdkLogger = NonNullable<ICreateClientOpts['logger']>;

/** A logger for `createClient`; `ignoreWarning` drops warnings that are known noise. */
export function quietLogger(ignoreWarning: (first: string) => boolean = () => false): SdkLogger {
  const logger: SdkLogger = {
    trace() {},
    debug() {},
    info() {},
    warn: (...msg: unknown[]) => {
      if (!ignoreWarning(String(msg[0]))) console.warn('[js-sdk]', ...msg);
    },
    error: (...msg: unknown[]) => console.error('[js-sdk]', ...msg),
    getChild: () => logger,
  };
  return logger;
}

export type Emitter = {
  on(e: string, f: (...a: any[]) => void): unknown;
  off(e: string, f: (...a: any[]) => void): unknown;
};

/**
 * Resolves with `check()`'s first truthy result: checked now and again every time `emitter` emits one of `events`.
 * Rejects after `waitMs` with `what` in the message, or when `check` throws.
 */
export function waitFor<T>(
  emitter: Emitter,
  events: readonly string[],
  check: () => T | undefined | null | false,
  what: string,
  waitMs: number,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const now = check();
    if (now) return resolve(now);
    const listener = () => {
      let v: T | undefined | null | false;
      try {
        v = check();
      } catch (e) {
        finish();
        reject(e);
        return;
      }
      if (v) {
        finish();
        resolve(v);
      }
    };
    const timer = setTimeout(() => {
      finish();
      reject(new Error(`timed out after ${waitMs} ms waiting for ${what}`));
    }, waitMs);
    const finish = () => {
      clearTimeout(timer);
      for (const e of events) emitter.off(e, listener);
    };
    for (const e of events) emitter.on(e, listener);
  });
}

export function timelineEvent(client: MatrixClient, roomId: string, eventId: string): MatrixEvent | undefined {
  return client.getRoom(roomId)?.getLiveTimeline().getEvents().find((e) => e.getId() === eventId);
}

export function waitForTimelineEvent(client: MatrixClient, roomId: string, eventId: string, waitMs: number): Promise<MatrixEvent> {
  return waitFor(
    client,
    [RoomEvent.Timeline],
    () => timelineEvent(client, roomId, eventId),
    `${eventId} in ${client.getUserId()}'s timeline`,
    waitMs,
  );
}

/** A client for an account on a served peer, recorded in `clients` so the test can stop them all. */
export function sdkClient(
  clients: MatrixClient[],
  baseUrl: string,
  account: { userId: string; accessToken: string; deviceId: string },
  logger: SdkLogger,
): MatrixClient {
  const client = createClient({
    baseUrl,
    userId: account.userId,
    accessToken: account.accessToken,
    deviceId: account.deviceId,
    logger,
    timelineSupport: true,
  });
  clients.push(client);
  return client;
}

/** Starts the client and waits for its first sync to complete. */
export async function startAndSync(client: MatrixClient, waitMs: number, initialSyncLimit = 20): Promise<void> {
  const prepared = waitFor(client, [ClientEvent.Sync], () => client.isInitialSyncComplete(), `${client.getUserId()}'s first sync`, waitMs);
  await client.startClient({ initialSyncLimit });
  await prepared;
}
