import type { StoredEntry } from '../storage/types.ts';
import { FrequencySketch } from './frequency-sketch.ts';

/** Rough per-entry overhead (Map slot, objects, metadata strings), so many tiny entries cannot exceed the budget. */
const ENTRY_OVERHEAD_BYTES = 1024;

/** Sketch counters per byte of tier (one per 16 KB), within bounds: about as many as the entries it can hold. */
const SKETCH_BYTES_PER_COUNTER = 16 * 1024;
const SKETCH_MIN_WIDTH = 1024;
const SKETCH_MAX_WIDTH = 65536;

/**
 * A bounded in-memory LRU of verified entries in front of the disk, so the
 * hottest hits touch neither disk nor hash. Holds only entries that passed
 * their integrity check; bodies are shared, never copied.
 *
 * Entries read back from disk are admitted as in TinyLFU (see admits()): once
 * the tier is full, one comes in only if it was asked for more often lately
 * than the entry it would push out. Otherwise a working set larger than the
 * tier, or one scan through many cold images, replaces entries on every disk
 * hit, and each replaced body is garbage for the collector.
 */
export class MemoryTier {
  readonly #maxBytes: number;
  readonly #maxEntryBytes: number;
  /** Lookups of every key, kept or not. */
  readonly #asked: FrequencySketch;
  // Keyed by entry id. Map keeps insertion order: re-inserting on use makes the first key the least recently used.
  readonly #entries = new Map<string, StoredEntry>();
  #bytes = 0;

  constructor(maxBytes: number) {
    this.#maxBytes = Math.max(0, maxBytes);
    // One image may not take more than an eighth of the tier, or a few large ones would flush it.
    this.#maxEntryBytes = Math.floor(this.#maxBytes / 8);
    this.#asked = new FrequencySketch(Math.min(SKETCH_MAX_WIDTH, Math.max(SKETCH_MIN_WIDTH, this.#maxBytes / SKETCH_BYTES_PER_COUNTER)));
  }

  /** The entry of `key`, if held; counts the lookup either way (see admits()). */
  get(key: string): StoredEntry | undefined {
    this.#asked.increment(key);
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry;
  }

  /** Whether set() keeps a body of `bodySize` bytes (at least for a while). */
  accepts(bodySize: number): boolean {
    return bodySize + ENTRY_OVERHEAD_BYTES <= this.#maxEntryBytes;
  }

  /**
   * Whether an entry of `key` read back from disk should be kept (set()):
   * always while there is room for it, else only when its key was asked for
   * more often lately than the least recently used entry's (a tie keeps what
   * is held).
   */
  admits(key: string, bodySize: number): boolean {
    if (!this.accepts(bodySize)) return false;
    if (this.#bytes + bodySize + ENTRY_OVERHEAD_BYTES <= this.#maxBytes) return true;
    const victim = this.#entries.keys().next().value;
    return victim === undefined || this.#asked.frequency(key) > this.#asked.frequency(victim);
  }

  /** Keeps the entry (new ones always: see admits() for those read back from disk), pushing out the least recently used. */
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
