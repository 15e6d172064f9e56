/**
 * Child process of the crash-durability test (level.test.ts): 8 concurrent writers commit transactions in a loop
 * and print each key right after its write() resolved — an acknowledged write. The test kills it with SIGKILL.
 * Each transaction writes two rows, so the test can also check that no transaction landed half.
 * Usage: node --import tsx/esm test/storage/crash-writer.ts <dir>
 */
import { openLevelKv } from '../../src/storage/level-kv.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: crash-writer.ts <dir>');
const kv = await openLevelKv({ name: dir, stores: ['events'] });
let next = 0;
const body = 'x'.repeat(300);

async function writer(w: number): Promise<void> {
  for (;;) {
    const i = next++;
    // key: ['e', i] → event; key: ['by', w, i] → i (the pair must land together)
    await kv.write(async (tx) => {
      await tx.put('events', ['e', i], { i, w, body });
      await tx.put('events', ['by', w, i], i);
    });
    process.stdout.write(`${i}\n`);
  }
}

process.stdout.write('ready\n');
for (let w = 0; w < 8; w++) void writer(w);
