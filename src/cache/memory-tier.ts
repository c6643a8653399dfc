import type { StoredEntry } from '../storage/types.ts';

/** Rough per-entry overhead (Map slot, objects, metadata strings), so many tiny entries cannot exceed the budget. */
const ENTRY_OVERHEAD_BYTES = 1024;

/**
 * A bounded in-memory LRU of verified entries in front of the disk, so the
 * hottest hits touch neither disk nor hash. Holds only entries that passed
 * their integrity check; bodies are shared, never copied.
 */
export class MemoryTier {
  readonly #maxBytes: number;
  readonly #maxEntryBytes: number;
  // Keyed by entry id. Map keeps insertion order: re-inserting on use makes the first key the least recently used.
  readonly #entries = new Map<string, StoredEntry>();
  #bytes = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = Math.max(0, maxBytes);
    // One image may not take more than an eighth of the tier, or a few large ones would flush it.
    this.#maxEntryBytes = Math.floor(this.#maxBytes / 8);
  }

  get(key: string): StoredEntry | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry;
  }

  set(key: string, entry: StoredEntry): void {
    this.delete(key);
    const size = sizeOf(entry);
    if (size > this.#maxEntryBytes) return;
    this.#entries.set(key, entry);
    this.#bytes += size;
    for (const [oldKey, old] of this.#entries) {
      if (this.#bytes <= this.#maxBytes) break;
      this.#entries.delete(oldKey);
      this.#bytes -= sizeOf(old);
    }
  }

  delete(key: string): void {
    const old = this.#entries.get(key);
    if (old === undefined) return;
    this.#entries.delete(key);
    this.#bytes -= sizeOf(old);
  }

  /** Drops every entry of a group (a source and its variants); ids are `<group>/<item>`. */
  deleteGroup(group: string): void {
    const prefix = `${group}/`;
    for (const id of [...this.#entries.keys()]) {
      if (id.startsWith(prefix)) this.delete(id);
    }
  }

  clear(): void {
    this.#entries.clear();
    this.#bytes = 0;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get size(): number {
    return this.#entries.size;
  }
}

/**
 * What an entry keeps alive: its body's whole buffer, which is more than the
 * body when the body is a view (a cleaned JPEG built inside its download,
 * a slice of Node's small-buffer pool).
 */
function sizeOf(entry: StoredEntry): number {
  return Math.max(entry.body.length, entry.body.buffer.byteLength) + ENTRY_OVERHEAD_BYTES;
}
