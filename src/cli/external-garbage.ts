import { PerformanceObserver } from 'node:perf_hooks';
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
/** How long after a collection external memory is read: the sweeper has freed what died by then. */
const SWEEP_DELAY_MS = 10;

export interface ExternalGarbageOptions {
  /** External memory above its floor, through two young collections, that starts a full one. */
  stepBytes: number;
  /** The collector: `globalThis.gc` of a process started with --expose-gc. */
  gc: () => void;
}

/**
 * Starts watching; returns the function that stops it. Nothing here keeps the
 * process alive, and nothing runs between collections: external memory is
 * read (v8.getHeapStatistics(), about 2 µs) just after V8 reports one. A timer
 * polling it every 25 ms had woken every idle worker 40 times a second, and a
 * wakeup costs 50-150 µs of CPU on a small VM.
 */
export function collectExternalGarbage(options: ExternalGarbageOptions): () => void {
  const external = () => getHeapStatistics().external_memory;
  let floor = external();
  /** Young collections in a row after which external memory was still over the step. */
  let overFor = 0;
  let pending: NodeJS.Timeout | undefined;
  /** Whether our own full collection ran since the last look: what it left is the new floor. */
  let collected = false;
  /** After a collection: young ones free dead backing stores a moment later (the sweeper), so look then. */
  const look = () => {
    pending = undefined;
    const now = external();
    if (collected) {
      collected = false;
      floor = now;
      overFor = 0;
      return;
    }
    // V8's own full collections only ever lower it: growth that outlived one still counts against the step.
    if (now < floor) floor = now;
    if (now - floor < options.stepBytes) {
      overFor = 0;
    } else if (++overFor >= 2) {
      overFor = 0;
      options.gc();
      collected = true;
    }
  };
  const observer = new PerformanceObserver(() => {
    if (pending !== undefined) return; // collections come in bursts: one look after them
    pending = setTimeout(look, SWEEP_DELAY_MS);
    pending.unref();
  });
  observer.observe({ entryTypes: ['gc'] });
  return () => {
    clearTimeout(pending);
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
