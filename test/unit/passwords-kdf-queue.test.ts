// Password KDF runs are serialised (src/services/passwords.ts `oneAtATime`): each scrypt run holds an 8 MiB table,
// so concurrent logins must not hold several at once (the Node peer's peak RSS, bench/README.md).
import { afterEach, describe, expect, it } from 'vitest';
import { nodeScrypt } from '../../src/node/crypto-backend.js';
import type { ScryptBackend } from '../../src/services/passwords.js';
import { hashPassword, setScryptBackend, verifyPassword } from '../../src/services/passwords.js';

/** A backend that delegates to node:crypto after a delay, recording how many runs overlap. */
function countingBackend(opts: { failFor?: string } = {}) {
  const stats = { running: 0, maxRunning: 0, runs: 0 };
  const backend: ScryptBackend = async (password, salt, params) => {
    stats.runs++;
    stats.running++;
    stats.maxRunning = Math.max(stats.maxRunning, stats.running);
    try {
      await new Promise((resolve) => setTimeout(resolve, 15));
      if (opts.failFor !== undefined && new TextDecoder().decode(password) === opts.failFor) throw new Error('backend failed');
      return await nodeScrypt(password, salt, params);
    } finally {
      stats.running--;
    }
  };
  return { backend, stats };
}

describe('password KDF queue', () => {
  afterEach(() => setScryptBackend(nodeScrypt));

  it('runs one KDF at a time when several hashes and verifications arrive at once', async () => {
    const { backend, stats } = countingBackend();
    setScryptBackend(backend);
    const stored = await hashPassword('first');
    const results = await Promise.all([
      hashPassword('a'),
      hashPassword('b'),
      verifyPassword('first', stored),
      verifyPassword('wrong', stored),
      verifyPassword('first', undefined), // unknown user: still one hash's worth of work, through the same queue
      hashPassword('c'),
    ]);
    expect(stats.maxRunning).toBe(1);
    expect(results.slice(2, 5)).toEqual([true, false, false]);
    for (const h of [results[0], results[1], results[5]]) expect(h).toMatch(/^scrypt\$13\$8\$1\$/);
    expect(await verifyPassword('b', results[1] as string)).toBe(true);
  });

  it('keeps going after a KDF run fails', async () => {
    const { backend, stats } = countingBackend({ failFor: 'boom' });
    setScryptBackend(backend);
    const [failed, ok] = await Promise.allSettled([hashPassword('boom'), hashPassword('fine')]);
    expect(failed.status).toBe('rejected');
    expect(ok.status).toBe('fulfilled');
    expect(await verifyPassword('fine', (ok as PromiseFulfilledResult<string>).value)).toBe(true);
    expect(stats.maxRunning).toBe(1);
  });
});
