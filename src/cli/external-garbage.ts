import { constants, PerformanceObserver } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';

/**
 * A serving worker's image bytes (downloads, sources, variants, memory-tier
 * entries it evicts) are Buffers: memory outside V8's heap, which V8 counts
 * but collects late. Buffers that die young are freed by the next young
 * collection, cheaply; those that outlived a few (every source waiting for a
 * transform slot, every evicted tier entry) die in the old generation, and
 * V8 starts a full collection for them only once external memory has grown
 * by about 64 MB over what the last one left. In a miss storm that is 64 MB
 * of dead images on top of a full memory tier, in each worker.
 *
 * So this runs a full collection when external memory has been `stepBytes`
 * above its floor (what the last full collection left, or less) through two
 * young collections: what is still there then is live or died old. Buffers
 * that die young (a disk hit's read, a response) are gone after the first,
 * so hits start nothing; in a miss storm it is a collection every few
 * seconds, a few ms each on a worker's small heap.
 */
export interface ExternalGarbageOptions {
  /** External memory above its floor, through two young collections, that starts a full one. */
  stepBytes: number;
  /** How often external memory is read (v8.getHeapStatistics(), about 2 µs). */
  intervalMs: number;
  /** The collector: `globalThis.gc` of a process started with --expose-gc. */
  gc: () => void;
}

/**
 * A check that sees no young collection for this many turns stops until the
 * next one: an idle process does not wake up for it (a wakeup costs 50-150 µs
 * of CPU on a small VM, and the timer ran 40 times a second in every worker).
 */
const IDLE_CHECKS_BEFORE_PAUSE = 40;

/** Starts watching; returns the function that stops it. Nothing here keeps the process alive. */
export function collectExternalGarbage(options: ExternalGarbageOptions): () => void {
  const external = () => getHeapStatistics().external_memory;
  let youngCollections = 0;
  let timer: NodeJS.Timeout | undefined;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if ((entry as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) youngCollections += 1;
    }
    if (timer === undefined) {
      timer = setInterval(check, options.intervalMs);
      timer.unref();
    }
  });

  let floor: number | undefined = external();
  /** youngCollections when external memory was first seen over the step (undefined: it is not). */
  let overSince: number | undefined;
  let seen = youngCollections;
  let quietChecks = 0;
  const check = () => {
    const now = external();
    // Backing stores are freed just after a collection: the floor is read one tick after ours.
    if (floor === undefined || now < floor) floor = now;
    if (now - floor < options.stepBytes) {
      overSince = undefined;
    } else if (overSince === undefined) {
      overSince = youngCollections;
    } else if (youngCollections >= overSince + 2) {
      options.gc();
      floor = undefined;
      overSince = undefined;
    }
    quietChecks = youngCollections === seen ? quietChecks + 1 : 0;
    seen = youngCollections;
    if (quietChecks >= IDLE_CHECKS_BEFORE_PAUSE && overSince === undefined && floor !== undefined) {
      clearInterval(timer);
      timer = undefined;
      quietChecks = 0;
    }
  };
  observer.observe({ entryTypes: ['gc'] });
  return () => {
    clearInterval(timer);
    observer.disconnect();
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
