import { getHeapStatistics } from 'node:v8';

/**
 * A serving worker's image bytes (downloads, sources, variants, memory-tier
 * entries it evicts) are Buffers: memory outside V8's heap, which V8 counts
 * but collects late. Those that outlive a few young collections (every source
 * waiting for a transform slot does) die in the old generation, and V8 starts
 * a full collection for them only once external memory has grown by about
 * 64 MB over what the last one left. In a miss storm that is 64 MB of dead
 * images on top of a full memory tier, in each worker.
 *
 * This runs a full collection whenever external memory has grown by
 * `stepBytes` since the last one (or since its lowest point after it). Under
 * hits nothing grows, so nothing runs; in a miss storm it is a collection
 * every few seconds (a few ms each on a worker's small heap).
 */
export interface ExternalGarbageOptions {
  /** Growth of external memory that starts a full collection. */
  stepBytes: number;
  /** How often external memory is read (v8.getHeapStatistics(), about 2 µs). */
  intervalMs: number;
  /** The collector: `globalThis.gc` of a process started with --expose-gc. */
  gc: () => void;
  /** External memory now (default: V8's own count). */
  externalBytes?: () => number;
}

/** Starts watching; returns the function that stops it. The timer never keeps the process alive. */
export function collectExternalGarbage(options: ExternalGarbageOptions): () => void {
  const external = options.externalBytes ?? (() => getHeapStatistics().external_memory);
  let base = external();
  const timer = setInterval(() => {
    const now = external();
    if (now < base) {
      base = now; // freed meanwhile (a collection of V8's own): measure growth from here
    } else if (now - base >= options.stepBytes) {
      options.gc();
      base = external();
    }
  }, options.intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
  };
}

/** The gc function of a process started with --expose-gc, if it was. */
export function exposedGc(): (() => void) | undefined {
  const gc = (globalThis as { gc?: unknown }).gc;
  if (typeof gc !== 'function') return undefined;
  return () => {
    (gc as () => unknown)();
  };
}
