import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import type { Config } from '../config/schema.ts';
import { defaultTransformConcurrency, threadPoolSize } from '../image/transform-queue.ts';
import { answerCall } from './ipc-rpc.ts';

/*
 * How cluster workers are started: their environment and node flags, and the
 * early fork. Kept apart from workers.ts, which loads the primary's and the
 * workers' code, so that the primary can fork before loading it.
 */

/**
 * glibc malloc settings for the workers, where sharp runs. glibc reads them
 * only at process start, so they go into each forked worker's environment.
 * By default glibc gives each thread of libuv's pool (where libvips runs) an
 * arena of its own, up to 8 per CPU, which keep the memory of freed pixel
 * buffers; and it raises its mmap threshold to the largest block freed, after
 * which big buffers come from (and stay in) the arenas too. Two arenas and
 * the threshold fixed at its 128 KiB default each cut a worker's peak RSS in
 * a miss storm by 40–60 MB (bench/README.md, "Memory"). Other C libraries
 * ignore them.
 */
export const WORKER_MALLOC_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072' };
/** Young-generation cap for the workers: under load V8 grows it to two 32 MB semi-spaces, and keeps their RSS. */
export const WORKER_SEMI_SPACE_FLAG = '--max-semi-space-size=8';

/** WORKER_MALLOC_ENV, less what the operator set (also through GLIBC_TUNABLES). */
export function workerMallocEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  if (/glibc\.malloc\./.test(env.GLIBC_TUNABLES ?? '')) return {};
  return Object.fromEntries(Object.entries(WORKER_MALLOC_ENV).filter(([name]) => env[name] === undefined));
}

/** Gives the workers `gc()`, for collectExternalGarbage (external-garbage.ts). */
export const WORKER_EXPOSE_GC_FLAG = '--expose-gc';

/**
 * The workers' node flags: the primary's, plus WORKER_SEMI_SPACE_FLAG unless a semi-space size is given
 * already, plus WORKER_EXPOSE_GC_FLAG.
 */
export function workerExecArgv(execArgv: readonly string[] = process.execArgv, env: NodeJS.ProcessEnv = process.env): string[] {
  const given = (flag: RegExp) => [...execArgv, env.NODE_OPTIONS ?? ''].some((arg) => flag.test(arg));
  return [
    ...execArgv,
    ...(given(/--max-semi-space-size\b/) ? [] : [WORKER_SEMI_SPACE_FLAG]),
    ...(given(/--expose[-_]gc\b/) ? [] : [WORKER_EXPOSE_GC_FLAG]),
  ];
}

/**
 * The configuration as a worker gets it: automatic transform concurrency
 * (0) resolved to the worker's share of the CPUs, so that N workers run about
 * one transform per CPU between them rather than N per CPU, which would add
 * libvips working memory in every worker and no speed (each transform keeps
 * one CPU busy).
 */
export function workerConfig(config: Config, workers: number): Config {
  if (config.transforms.concurrency !== 0) return config;
  return { ...config, transforms: { ...config.transforms, concurrency: defaultTransformConcurrency(threadPoolSize(), workers) } };
}

/** A worker forked before the primary was ready to talk to it (forkFirstWorker). */
export interface EarlyWorker {
  worker: Worker;
  /**
   * Answers the worker's calls of `method` with `value` from now until the
   * take-over, those it made already included: the worker can go on (with
   * its configuration) while the primary still loads its own modules.
   */
  answer(method: string, value: unknown): void;
  /**
   * Stops keeping the worker's messages and exit for later and returns them:
   * the caller, now listening, replays them (runPrimary's spawn() in workers.ts).
   */
  takeOver(): { messages: unknown[]; errors: Error[]; exit: { code: number | null; signal: string | null } | undefined };
}

/**
 * The number of workers `serve` will run, when it is known without reading
 * the configuration (zod, YAML and the schema: a quarter of a second of the
 * primary's start-up): from `--workers`, else FASTIMAGECACHE_WORKERS, else,
 * when there is no config file, the default (0: one per CPU). Undefined when
 * only the config file can tell, or when the value given is not a plain
 * count (loading the configuration then reports it). The same precedence as
 * loadConfig: flags, environment, file, defaults.
 */
export function workerCountBeforeConfig(
  flags: { workers?: string | undefined; config?: string | undefined },
  env: NodeJS.ProcessEnv = process.env,
  cpus: number = availableParallelism(),
): number | undefined {
  const given = flags.workers ?? env.FASTIMAGECACHE_WORKERS;
  if (given !== undefined) return /^\d{1,4}$/.test(given) ? Number(given) || cpus : undefined;
  const configFile = flags.config ?? env.FASTIMAGECACHE_CONFIG;
  return configFile ? undefined : cpus;
}

/**
 * Forks the first worker before the primary loads its configuration and its
 * own modules (its index, metrics, admin listener): a process's start-up is
 * mostly module loading, and the worker's then runs beside the primary's
 * instead of after it. What it says or does before the primary takes it over
 * is kept. The other workers start once it listens (runPrimary).
 */
export function forkFirstWorker(): EarlyWorker {
  cluster.setupPrimary({ execArgv: workerExecArgv() });
  const worker = cluster.fork(workerMallocEnv());
  let messages: unknown[] = [];
  const answers = new Map<string, unknown>();
  const errors: Error[] = [];
  let exit: { code: number | null; signal: string | null } | undefined;
  const answered = (message: unknown) => [...answers].some(([method, value]) => answerCall(worker, message, method, value));
  const onMessage = (message: unknown) => {
    if (!answered(message)) messages.push(message);
  };
  const onError = (err: Error) => {
    errors.push(err);
  };
  const onExit = (code: number | null, signal: string | null) => {
    exit = { code, signal };
  };
  worker.on('message', onMessage);
  worker.on('error', onError);
  worker.once('exit', onExit);
  return {
    worker,
    answer(method, value) {
      answers.set(method, value);
      messages = messages.filter((message) => !answered(message));
    },
    takeOver() {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
      return { messages, errors, exit };
    },
  };
}
