import { availableParallelism } from 'node:os';

/**
 * Sizes libuv's thread pool for the server, unless the operator already did.
 * sharp pipelines, fs (cache reads) and DNS lookups share this pool, which
 * starts with 4 threads at its first use: imported first by the CLI entry so
 * the size is set before then. Transforms take at most the pool minus two
 * (see transform-queue.ts), so with CPUs + 4 threads each CPU can resize while
 * cache reads still find free threads.
 */
process.env.UV_THREADPOOL_SIZE ??= String(Math.min(1024, Math.max(4, availableParallelism() + 4)));
