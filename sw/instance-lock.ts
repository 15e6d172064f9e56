/**
 * One homeserver instance at a time per origin, across service worker versions.
 *
 * Why: the homeserver keeps caches that assume it is the only writer (RoomsService's room heads and per-room locks,
 * recent txn IDs, AccountsService's token cache). One service worker serves every tab, so normally there is one
 * instance. But during an update the old worker may still be finishing requests (a /sync long poll, a send) when
 * the new one activates and starts its own homeserver: two writers on one IndexedDB, each trusting a cached room
 * head the other just made stale — a state event could be dropped from the room's state group. So an instance
 * holds the Web Lock {@link LOCK_NAME} while it serves, and a new instance takes it over by handover:
 *
 * 1. The newcomer announces itself on the BroadcastChannel {@link CHANNEL_NAME} and queues for the lock.
 * 2. The holder stops taking requests, ends its long polls early (an early, empty /sync answer is valid), waits for
 *    the requests already running (writes included) to finish, closes its database and releases the lock.
 * 3. The newcomer gets the lock and opens the database, so its caches start from what is on disk.
 *
 * A holder that does not answer within `stealAfterMs` (hung, or an old build that does not speak this protocol) has
 * the lock stolen (`steal: true`), which makes it retire at once. A stopped worker's locks are released by the
 * browser, so after an idle stop the lock is free and start-up does not wait.
 *
 * https://w3c.github.io/web-locks/ · https://html.spec.whatwg.org/multipage/web-messaging.html#broadcasting-to-other-browsing-contexts
 */

export const LOCK_NAME = 'hearth-homeserver';
export const CHANNEL_NAME = 'hearth-homeserver';

export interface HeldLock {
  /** How it was obtained: free (or freed by handover) or stolen from an unresponsive holder; 'none' without Web Locks. */
  readonly how: 'acquired' | 'stolen' | 'none';
  release(): void;
}

export interface AcquireInit {
  locks: LockManager | undefined;
  /** Posts the "I am taking over" announcement to the current holder. */
  announce(): void;
  /** Called if another instance steals the lock from us later: retire at once. */
  onLost(): void;
  stealAfterMs: number;
}

/** Waits for the instance lock (announcing ourselves so the holder hands over), stealing it after a timeout. */
export async function acquireInstanceLock(init: AcquireInit): Promise<HeldLock> {
  const { locks } = init;
  if (!locks) return { how: 'none', release() {} };

  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let granted!: (how: 'acquired' | 'stolen') => void;
  const grant = new Promise<'acquired' | 'stolen'>((r) => (granted = r));
  let got = false;
  // Each request knows whether it was granted: an abort before the grant is our own (the timeout below), an
  // abort after it means another instance stole the lock.
  const ask = (options: LockOptions, how: 'acquired' | 'stolen'): void => {
    let mine = false;
    locks
      .request(LOCK_NAME, options, () => {
        mine = true;
        got = true;
        granted(how);
        return held;
      })
      .catch((e: unknown) => {
        if (mine && (e as { name?: string } | null)?.name === 'AbortError') init.onLost();
      });
  };

  const waiting = new AbortController();
  ask({ mode: 'exclusive', signal: waiting.signal }, 'acquired');
  init.announce();

  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), init.stealAfterMs)));
  const first = await Promise.race([grant, timedOut]);
  clearTimeout(timer);
  if (first === 'timeout' && !got) {
    waiting.abort();
    ask({ mode: 'exclusive', steal: true }, 'stolen');
  }
  const how = await grant;
  return { how, release };
}
