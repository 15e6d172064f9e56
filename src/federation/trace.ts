/**
 * Stage timestamps of an event on its way from a local send to a remote user's /sync, for measuring where the
 * milliseconds go (bench/federation-sync.ts `--trace`). Off unless a host installs a sink (src/node/p2p.ts does
 * when HEARTH_FEDERATION_TRACE is set); when off, a trace point costs one comparison.
 *
 * Times are wall-clock milliseconds with sub-millisecond precision (`performance.timeOrigin + performance.now()`),
 * so marks from two processes on one machine can be put on one line.
 */

/** Receives one mark: which event, which stage, when. */
export type TraceSink = (eventId: string, stage: string, atMs: number) => void;

let sink: TraceSink | undefined;

/**
 * A sink that writes one `hearth-trace [eventId, stage, atMs]` line per mark, in batches: a mark costs an array
 * push, and `write` (a synchronous stderr write in Node, which measured ~1 ms of CPU per received message when
 * done per mark) runs at most every `flushMs`. Readers wait at least that long after the last event.
 */
export function batchedTraceSink(write: (text: string) => void, flushMs = 100): TraceSink {
  let lines: string[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    timer = undefined;
    const text = lines.join('');
    lines = [];
    write(text);
  };
  return (eventId, stage, atMs) => {
    lines.push(`hearth-trace ${JSON.stringify([eventId, stage, atMs])}\n`);
    if (timer === undefined) {
      timer = setTimeout(flush, flushMs);
      // Node: a pending flush does not keep the process alive.
      (timer as { unref?: () => void }).unref?.();
    }
  };
}

/** Installs (or, with undefined, removes) the process-wide sink. */
export function setFederationTrace(s: TraceSink | undefined): void {
  sink = s;
}

export function tracing(): boolean {
  return sink !== undefined;
}

/** Marks that `eventId` reached `stage` now. */
export function traceStage(eventId: string, stage: string): void {
  if (sink === undefined) return;
  sink(eventId, stage, traceNow());
}

/** The trace clock (see above). */
export function traceNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Marks a stage for every event of a batch, at `at` (default now). */
export function traceEach(ids: Iterable<string>, stage: string, at = traceNow()): void {
  if (sink === undefined) return;
  for (const id of ids) sink(id, stage, at);
}

/** Marks taken for a received PDU before its ID is known (computing it costs a hash), by the JSON object. */
const unnamed = new WeakMap<object, Array<[string, number]>>();

/** Marks that these received PDUs reached `stage`; emitted once their IDs are known (`traceIdentified`). */
export function traceArrival(pdus: readonly unknown[], stage: string): void {
  if (sink === undefined) return;
  const at = traceNow();
  for (const p of pdus) {
    if (typeof p !== 'object' || p === null) continue;
    const marks = unnamed.get(p) ?? [];
    marks.push([stage, at]);
    unnamed.set(p, marks);
  }
}

/** The received PDU `json` has the ID `eventId`: emits the marks taken before it was known. */
export function traceIdentified(json: object, eventId: string): void {
  if (sink === undefined) return;
  const marks = unnamed.get(json);
  if (marks === undefined) return;
  unnamed.delete(json);
  for (const [stage, at] of marks) sink(eventId, stage, at);
}
