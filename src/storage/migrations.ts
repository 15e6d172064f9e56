/**
 * Schema migrations: an append-only list of functions. The schema version is the number of migrations applied,
 * stored in the database (key: [META_STORE, 'schemaVersion'] → number). Migration i runs in its own write
 * transaction together with the version bump to i + 1, so a crash leaves the database at a whole step and the
 * next start carries on from there; running the list again is a no-op.
 *
 * Rules for the list: only ever append; never edit or reorder an entry that has shipped; never delete a user's
 * data (rewrite it into the new shape instead). A database whose version is beyond the list (opened by an older
 * build after a newer one ran) is refused rather than touched.
 */
import { META_STORE, StorageError } from './kv.js';
import type { Kv, ReadTx, WriteTx } from './kv.js';

/** One step. Runs inside a write transaction: it may await only `tx`'s operations. */
export type Migration = (tx: WriteTx) => Promise<void>;

// key: [META_STORE, 'schemaVersion'] → number of migrations applied
const VERSION_KEY = ['schemaVersion'];

/** The newer-than-this-build database was left untouched. */
export class SchemaTooNewError extends StorageError {
  override name = 'SchemaTooNewError';
}

async function versionIn(tx: ReadTx): Promise<number> {
  const v = await tx.get(META_STORE, VERSION_KEY);
  if (v === undefined) return 0;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new StorageError(`bad schema version ${String(v)}`);
  return v;
}

/** The schema version stored in `kv` (0 for a new database). */
export function getSchemaVersion(kv: Kv): Promise<number> {
  return kv.read(versionIn);
}

/** Applies the migrations not applied yet, one transaction each. Returns the versions before and after. */
export async function runMigrations(kv: Kv, migrations: readonly Migration[]): Promise<{ from: number; to: number }> {
  const from = await getSchemaVersion(kv);
  const tooNew = (v: number): SchemaTooNewError =>
    new SchemaTooNewError(`database schema version ${v} is newer than this build knows (${migrations.length}); refusing to touch it`);
  if (from > migrations.length) throw tooNew(from);
  if (from === migrations.length) return { from, to: from };
  for (;;) {
    // Read the version inside the transaction: another context may have applied steps meanwhile.
    const next = await kv.write(async (tx) => {
      const v = await versionIn(tx);
      if (v > migrations.length) throw tooNew(v);
      if (v === migrations.length) return undefined;
      await migrations[v](tx);
      await tx.put(META_STORE, VERSION_KEY, v + 1);
      return v + 1;
    });
    if (next === undefined) return { from, to: migrations.length };
  }
}
