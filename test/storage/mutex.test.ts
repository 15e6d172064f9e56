// The storage backends' FIFO lock (src/storage/overlay.ts): order, hand-over, and a release called twice.
import { describe, expect, it } from 'vitest';
import { Mutex } from '../../src/storage/overlay.js';

describe('Mutex', () => {
  it('runs holders one at a time, in the order they asked', async () => {
    const mutex = new Mutex();
    const log: string[] = [];
    let inside = 0;
    const worker = async (name: string) => {
      const release = await mutex.lock();
      inside++;
      expect(inside).toBe(1);
      log.push(`${name}+`);
      await new Promise((r) => setTimeout(r, 2));
      log.push(`${name}-`);
      inside--;
      release();
    };
    await Promise.all(['a', 'b', 'c', 'd'].map(worker));
    expect(log).toEqual(['a+', 'a-', 'b+', 'b-', 'c+', 'c-', 'd+', 'd-']);
  });

  it('ignores a second release of the same hold', async () => {
    const mutex = new Mutex();
    const first = await mutex.lock();
    const second = mutex.lock();
    const third = mutex.lock();
    first();
    const releaseSecond = await second;
    first(); // must not hand the lock on while the second holder has it
    let thirdHolds = false;
    void third.then(() => (thirdHolds = true));
    await new Promise((r) => setTimeout(r, 5));
    expect(thirdHolds).toBe(false);
    releaseSecond();
    (await third)();
    // Free again: taken at once.
    const again = await mutex.lock();
    again();
  });
});
