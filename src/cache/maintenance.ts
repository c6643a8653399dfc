import type { Logger } from '../log.ts';
import type { EntryId, EntryMeta, StorageBackend } from '../storage/types.ts';
import { CacheIndex } from './cache-index.ts';
import { SOURCE_VARIANT, sourceKey } from './cache-key.ts';
import { usableUntil } from './freshness.ts';
import { normalizeSourceUrl } from './normalize-url.ts';
import { sha256Hex } from '../hash.ts';

/**
 * Whole-directory operations for the CLI (`purge`, `verify`, `prune`,
 * `stats`) and the library, working on the storage directly: no server,
 * loader or memory tier needed. Every removal is returned by id, so it can be
 * announced to running servers.
 */

/** Called as work advances: entries done so far, out of `total` (0 when unknown). */
export type Progress = (done: number, total: number) => void;

/** Removes a source and every variant of it; resolves to the ids removed. */
export async function purgeSource(storage: StorageBackend, sourceUrl: string | URL): Promise<EntryId[]> {
  const key = sourceKey(normalizeSourceUrl(sourceUrl));
  return storage.deleteGroup(storage.groupOf(storage.entryId(key, key)));
}

/** How many entries the directory holds (one listing, nothing opened). */
export async function countEntries(storage: StorageBackend): Promise<number> {
  let n = 0;
  for await (const batch of storage.scan()) n += batch.length;
  return n;
}

export interface VerifySummary {
  checked: number;
  ok: number;
  /** Damaged, unauthenticated (wrong key or tampered) or misplaced entries, removed. */
  removed: EntryId[];
  bytesRemoved: number;
}

/**
 * Re-reads every entry, re-hashes its body against its recorded SHA-256, and
 * checks that it lives where its keys say; removes every entry that fails.
 * With encryption at rest, an entry that fails authentication fails here.
 */
export async function verifyEntries(storage: StorageBackend, opts: { onProgress?: Progress; total?: number } = {}): Promise<VerifySummary> {
  const summary: VerifySummary = { checked: 0, ok: 0, removed: [], bytesRemoved: 0 };
  for await (const batch of storage.scan()) {
    for (const scanned of batch) {
      const entry = await storage.read(scanned.id);
      const sound =
        entry !== undefined &&
        storage.entryId(entry.meta.sourceKey, entry.meta.key) === scanned.id &&
        entry.meta.size === entry.body.length &&
        sha256Hex(entry.body) === entry.meta.sha256;
      summary.checked += 1;
      if (sound) {
        summary.ok += 1;
      } else if (await storage.delete(scanned.id)) {
        summary.removed.push(scanned.id);
        summary.bytesRemoved += scanned.bytes;
      }
      opts.onProgress?.(summary.checked, opts.total ?? 0);
    }
  }
  return summary;
}

export interface PruneSummary {
  checked: number;
  /** Past their freshness and every stale window (and their source's), or unreadable. */
  expired: EntryId[];
  /** Evicted, least recently written first, to bring the directory within the limits. */
  evicted: EntryId[];
  bytesFreed: number;
}

export interface PruneOptions {
  now?: () => number;
  maxBytes: number;
  maxEntries?: number | undefined;
  logger: Logger;
  onProgress?: Progress;
  total?: number;
}

/**
 * Removes entries that can no longer be served without the origin (past
 * freshness, stale-while-revalidate and stale-if-error, for the entry and
 * its source alike; a variant of a source that is still fresh stays), then
 * evicts until the limits hold, oldest writes first.
 */
export async function pruneEntries(storage: StorageBackend, opts: PruneOptions): Promise<PruneSummary> {
  const now = (opts.now ?? Date.now)();
  const summary: PruneSummary = { checked: 0, expired: [], evicted: [], bytesFreed: 0 };
  for await (const batch of storage.scan()) {
    // A scan batch holds whole groups: a variant is judged with its source.
    const metas = new Map<EntryId, EntryMeta | undefined>();
    await Promise.all(batch.map(async (e) => metas.set(e.id, await storage.readMeta(e.id))));
    const sourceUsable = new Map<string, number>();
    for (const [id, meta] of metas) {
      if (meta !== undefined && meta.variant === SOURCE_VARIANT) sourceUsable.set(storage.groupOf(id), usableUntil(meta.freshness));
    }
    for (const scanned of batch) {
      const meta = metas.get(scanned.id);
      const usable = meta === undefined ? -Infinity : Math.max(usableUntil(meta.freshness), sourceUsable.get(storage.groupOf(scanned.id)) ?? -Infinity);
      summary.checked += 1;
      if (now >= usable && (await storage.delete(scanned.id))) {
        summary.expired.push(scanned.id);
        summary.bytesFreed += scanned.bytes;
      }
      opts.onProgress?.(summary.checked, opts.total ?? 0);
    }
  }

  // The same index and policy the server uses, fed from the directory: it evicts the oldest until the limits hold.
  const index = new CacheIndex({ storage, maxBytes: opts.maxBytes, maxEntries: opts.maxEntries, logger: opts.logger });
  summary.evicted = await index.rebuild();
  summary.bytesFreed += (await index.stats()).evictedBytes;
  return summary;
}

export interface DirectoryStats {
  entries: number;
  bytes: number;
  /** Oldest entry's last write (ms since epoch), or null when empty. */
  oldestMs: number | null;
}

export async function directoryStats(storage: StorageBackend): Promise<DirectoryStats> {
  const { entries, bytes, oldestMs } = await storage.stats();
  return { entries, bytes, oldestMs: oldestMs ?? null };
}
