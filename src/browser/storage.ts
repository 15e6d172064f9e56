/**
 * Page-side storage helpers for the in-page homeserver: ask the browser to keep our IndexedDB (persistent storage,
 * so it is not evicted under storage pressure) and report how much is used.
 *
 * https://storage.spec.whatwg.org/#persistence · https://storage.spec.whatwg.org/#usage-and-quota
 */

export interface StorageStatus {
  /** Bytes used by this origin (IndexedDB, caches, …), as the browser estimates it; undefined if unknown. */
  usage?: number;
  /** Bytes this origin may use; undefined if unknown. */
  quota?: number;
  /** Whether the browser promised not to evict this origin's data. */
  persisted: boolean;
}

function storageManager(): StorageManager | undefined {
  return (navigator as Navigator & { storage?: StorageManager }).storage;
}

/**
 * Asks for persistent storage (`navigator.storage.persist()`). Browsers may grant it silently (Chromium does for
 * installed or often-used sites), prompt, or refuse; refusal is not an error — the data stays, it is just evictable
 * under pressure. Resolves to whether storage is persistent now.
 */
export async function requestPersistentStorage(): Promise<boolean> {
  const sm = storageManager();
  if (!sm?.persist) return false;
  try {
    if (await sm.persisted()) return true;
    return await sm.persist();
  } catch {
    return false;
  }
}

/** Usage, quota and persistence of this origin's storage. */
export async function storageStatus(): Promise<StorageStatus> {
  const sm = storageManager();
  if (!sm) return { persisted: false };
  const [estimate, persisted] = await Promise.all([
    sm.estimate ? sm.estimate().catch(() => undefined) : undefined,
    sm.persisted ? sm.persisted().catch(() => false) : false,
  ]);
  return { usage: estimate?.usage, quota: estimate?.quota, persisted };
}
