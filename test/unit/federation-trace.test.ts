/**
 * Stage marks for bench/federation-sync.ts --trace (src/federation/trace.ts): the batched sink writes every mark,
 * as one `hearth-trace` JSON line each, in one write per batch and not while the traced code runs.
 */
import { expect, test } from 'vitest';
import { batchedTraceSink } from '../../src/federation/trace.js';

test('marks are written later, together, one line each, in order', async () => {
  const writes: string[] = [];
  const sink = batchedTraceSink((text) => writes.push(text), 20);
  sink('$a', 'B receive', 1.5);
  sink('$a', 'B written', 2.25);
  sink('$b', 'B receive', 3);
  expect(writes).toEqual([]);
  await new Promise((r) => setTimeout(r, 60));
  expect(writes).toHaveLength(1);
  const lines = writes[0].split('\n');
  expect(lines.pop()).toBe('');
  expect(lines.map((l) => JSON.parse(l.slice('hearth-trace '.length)))).toEqual([
    ['$a', 'B receive', 1.5],
    ['$a', 'B written', 2.25],
    ['$b', 'B receive', 3],
  ]);
  expect(lines.every((l) => l.startsWith('hearth-trace '))).toBe(true);
  // A later mark starts a new batch.
  sink('$c', 'B notified', 4);
  await new Promise((r) => setTimeout(r, 60));
  expect(writes).toHaveLength(2);
  expect(writes[1]).toBe(`hearth-trace ${JSON.stringify(['$c', 'B notified', 4])}\n`);
});
