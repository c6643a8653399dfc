import cluster, { type Worker } from 'node:cluster';
import { CacheIndex } from '../cache/cache-index.ts';
import { FillLeaseTable } from '../cache/fill-lease.ts';
import { openCacheStorage } from '../cache-config.ts';
import { redactConfig } from '../config/redact.ts';
import type { Config } from '../config/schema.ts';
import type { SigningKeys } from '../config/secrets.ts';
import { CLUSTER_RESTART_SETTINGS, effectiveAfterReload } from '../config/reload.ts';
import { createLogger, type Logger } from '../log.ts';
import type { AdminBackend } from '../server/admin.ts';
import { auditedReload } from '../server/audited-reload.ts';
import { AuditLog } from '../server/audit-log.ts';
import type { RunningServer } from '../server/http-server.ts';
import { aggregateExposition, Metrics, type MetricSnapshot } from '../server/metrics.ts';
import type { ProxyService, PurgeTarget, ReloadOutcome, ServiceStats } from '../server/proxy-service.ts';
import { startRateLimitPrimary } from '../server/rate-limit.ts';
import { collectExternalGarbage, exposedGc } from './external-garbage.ts';
import { workerConfig, workerExecArgv, workerMallocEnv, type EarlyWorker } from './worker-settings.ts';
import { IpcRpc } from './ipc-rpc.ts';
import { cacheIndexHandlers, HeldReservations, RemoteCacheIndex } from './remote-cache-index.ts';
import { fillLeaseHandlers, RemoteFillLease } from './remote-fill-lease.ts';
import { auditLogPath, printBanner, startAdminIfConfigured, untilStopSignal, type ServeContext } from './serve-common.ts';

export { WORKER_EXPOSE_GC_FLAG, WORKER_MALLOC_ENV, WORKER_SEMI_SPACE_FLAG, workerConfig, workerExecArgv, workerMallocEnv } from './worker-settings.ts';

/** A worker that dies within this long of starting counts as crash-looping: its replacement waits longer each time. */
const QUICK_DEATH_MS = 2_000;
const MAX_RESPAWN_DELAY_MS = 30_000;
/**
 * A fill lease its holder stops renewing (alive but stuck) goes to the next
 * waiting worker after this long; one whose holder exits goes at once.
 */
const FILL_LEASE_TTL_MS = 5_000;

/** A full collection in a worker once its surviving Buffers have grown by this much (see collectExternalGarbage). */
const WORKER_GC_STEP_BYTES = 16 * 1024 * 1024;
const WORKER_GC_CHECK_MS = 25;

interface WorkerHandle {
  worker: Worker;
  rpc: IpcRpc;
  startedAt: number;
  /** Resolves with the worker's URL once it listens; rejects if it dies first. */
  listening: Promise<string>;
  ready: boolean;
}

/**
 * The cluster primary: takes over the `first` worker (forked already) and forks
 * the other `count - 1`, which share one port (node:cluster hands out
 * connections) and one cache directory, replaces any that die, and
 * owns what must exist once: the rate limit counters, the admin listener, the
 * audit log, reloads (validated here, then applied by every worker, or by
 * none) and the metrics sum.
 */
export async function runPrimary(ctx: ServeContext, count: number, keys: SigningKeys, first: EarlyWorker): Promise<number> {
  const { logger } = ctx;
  let config = ctx.config;
  const metrics = new Metrics({ processMetrics: false });
  const audit = new AuditLog(auditLogPath(config), logger);
  const handles = new Map<number, WorkerHandle>();
  let shuttingDown = false;
  let quickDeaths = 0;
  startRateLimitPrimary();
  // The one index of the cache directory: workers reserve, commit and evict through it over IPC.
  const storage = await openCacheStorage(config, logger).catch((err: unknown) => {
    first.worker.process.kill();
    throw err;
  });
  const index = new CacheIndex({ storage, maxBytes: config.maxCacheBytes, maxEntries: config.maxEntries, logger });
  // The rebuild starts once the workers listen (below); until then the index is not ready either.
  let rebuildStarted = false;
  const indexStats = async () => ({ ...(await index.stats()), ...(rebuildStarted ? {} : { ready: false }) });
  // Cross-worker single-flight: one worker fetches a cold source, the others wait and read it from disk.
  const leases = new FillLeaseTable({
    ttlMs: FILL_LEASE_TTL_MS,
    onGrant: (cacheKey, owner) => {
      logger.debug({ cacheKey, worker: owner, pid: handles.get(owner)?.worker.process.pid }, 'fill lease granted');
    },
    onWait: (cacheKey, owner) => {
      logger.debug({ cacheKey, worker: owner, pid: handles.get(owner)?.worker.process.pid }, 'waiting for the fill lease');
    },
    onHandOver: (cacheKey, from, to, why) => {
      logger.warn({ cacheKey, from, to, why }, 'fill lease taken from its holder');
    },
  });
  const closeIndex = async () => {
    leases.close();
    index.stopRebuild();
    await storage.close();
  };

  const readyHandles = () => [...handles.values()].filter((h) => h.ready);

  async function aggregateMetrics(): Promise<{ contentType: string; body: string }> {
    const snapshots = await Promise.all(readyHandles().map((h) => h.rpc.call<MetricSnapshot>('metrics').catch(() => [])));
    return aggregateExposition([await metrics.snapshot(), ...snapshots]);
  }

  cluster.setupPrimary({ execArgv: workerExecArgv() });
  const workerEnv = workerMallocEnv();

  /** A new worker, or the first one, forked early (forkFirstWorker): what it said or did meanwhile is replayed once wired. */
  function spawn(early?: EarlyWorker): WorkerHandle {
    const worker = early?.worker ?? cluster.fork(workerEnv);
    const { promise: listening, resolve: onListening, reject: onFailed } = Promise.withResolvers<string>();
    const heldReservations = new HeldReservations(index);
    listening.catch(() => {}); // observed by whoever awaits it
    const handle: WorkerHandle = {
      worker,
      startedAt: Date.now(),
      listening,
      ready: false,
      rpc: new IpcRpc(worker, {
        config: () => workerConfig(config, count),
        listening: (params) => {
          handle.ready = true;
          onListening((params as { url: string }).url);
          return null;
        },
        metrics: () => aggregateMetrics(),
        ...cacheIndexHandlers(index, heldReservations),
        'index.stats': indexStats,
        ...fillLeaseHandlers(leases.viewFor(worker.id)),
      }, {
        onNoteError: (method, err) => {
          logger.warn({ err, method, worker: worker.id }, 'a worker\'s index or lease notification failed');
        },
      }),
    };
    worker.on('error', (err) => { logger.warn({ err, worker: worker.id }, 'worker IPC error'); });
    worker.once('exit', (code, signal) => {
      handle.rpc.close('worker exited');
      handles.delete(worker.id);
      // Its leases go to the workers waiting on them now, not after they expire.
      leases.dropOwner(worker.id);
      // And the space of writes it had reserved but never finished.
      heldReservations.releaseAll().catch((err: unknown) => {
        logger.warn({ err, worker: worker.id }, 'could not release an exited worker\'s cache reservations');
      });
      onFailed(new Error(`worker ${worker.id} exited (code ${String(code)}, signal ${signal}) before listening`));
      // Exit code 0 is a worker's own graceful stop (e.g. Ctrl-C reached the whole process group).
      if (shuttingDown || code === 0) return;
      metrics.workerRestarts.inc();
      quickDeaths = Date.now() - handle.startedAt < QUICK_DEATH_MS ? quickDeaths + 1 : 0;
      const delay = quickDeaths === 0 ? 0 : Math.min(MAX_RESPAWN_DELAY_MS, 250 * 2 ** quickDeaths);
      logger.error({ worker: worker.id, pid: worker.process.pid, code, signal, respawnInMs: delay }, 'worker died; starting a replacement');
      setTimeout(() => {
        if (!shuttingDown) track(spawn());
      }, delay).unref();
    });
    if (early !== undefined) {
      const { messages, errors, exit } = early.takeOver();
      for (const err of errors) worker.emit('error', err);
      for (const message of messages) worker.emit('message', message);
      if (exit !== undefined) worker.emit('exit', exit.code, exit.signal);
    }
    return handle;
  }

  function track(handle: WorkerHandle): void {
    handles.set(handle.worker.id, handle);
  }

  async function stopWorkers(graceMs: number): Promise<void> {
    const all = [...handles.values()];
    const exited = all.map(
      (h) =>
        new Promise<void>((resolve) => {
          if (h.worker.isDead()) resolve();
          else h.worker.once('exit', () => { resolve(); });
        }),
    );
    for (const h of all) h.rpc.call('shutdown', { graceMs }, graceMs + 5_000).catch(() => {});
    const deadline = setTimeout(() => {
      for (const h of all) if (!h.worker.isDead()) h.worker.process.kill('SIGKILL');
    }, graceMs + 5_000);
    await Promise.all(exited);
    clearTimeout(deadline);
  }

  // The first worker alone, then the others once it listens: started together, they would share the CPUs with it
  // while it loads its modules, and the first request would wait for all of them. One failing to start fails the start.
  const firstHandle = spawn(first);
  track(firstHandle);
  const initial = [firstHandle];
  let url: string;
  try {
    url = await firstHandle.listening;
    for (let i = 1; i < count; i++) {
      const handle = spawn();
      track(handle);
      initial.push(handle);
    }
    await Promise.all(initial.map((h) => h.listening));
  } catch (err) {
    shuttingDown = true;
    await stopWorkers(0);
    await closeIndex();
    throw err;
  }
  // Only now: reading a large directory (1M entries: seconds of CPU) would slow the workers' start-up. The index
  // serves meanwhile; it counts only new entries until the scan is done.
  rebuildStarted = true;
  void index.rebuild().catch((err: unknown) => { logger.error({ err }, 'cache index rebuild failed'); });

  /** Applies a validated config on every worker, or (if one refuses) puts back the old one everywhere. */
  async function reloadWorkers(loaded: Config): Promise<ReloadOutcome> {
    const targets = readyHandles();
    const results = await Promise.all(
      targets.map((h) =>
        h.rpc.call<ReloadOutcome>('reload', workerConfig(loaded, count), 60_000).catch((err: unknown): ReloadOutcome => ({ outcome: 'refused', reason: (err as Error).message })),
      ),
    );
    const refused = results.find((r) => r.outcome === 'refused');
    if (refused) {
      const applied = targets.filter((_, i) => results[i]?.outcome === 'applied');
      await Promise.all(applied.map((h) => h.rpc.call('reload', workerConfig(config, count), 60_000).catch(() => null)));
      return refused;
    }
    config = effectiveAfterReload(config, loaded, CLUSTER_RESTART_SETTINGS).config;
    logger.level = config.logLevel;
    return results[0] ?? { outcome: 'refused', reason: 'no worker is running' };
  }

  const backend: AdminBackend = {
    async stats() {
      const all = await Promise.all(readyHandles().map((h) => h.rpc.call<ServiceStats>('stats')));
      const sum = (pick: (s: ServiceStats) => number) => all.reduce((n, s) => n + pick(s), 0);
      const idx = await index.stats();
      return {
        workers: all.length,
        cache: {
          // The directory as the one index sees it…
          entries: idx.entries,
          bytes: idx.bytes,
          maxBytes: idx.maxBytes,
          maxEntries: idx.maxEntries,
          evictions: idx.evictions,
          evictedBytes: idx.evictedBytes,
          oldestMs: idx.oldestMs,
          indexReady: idx.ready,
          // …and the answers of every worker, summed.
          hits: sum((s) => s.cache.hits),
          misses: sum((s) => s.cache.misses),
          stale: sum((s) => s.cache.stale),
          revalidated: sum((s) => s.cache.revalidated),
          negativeHits: sum((s) => s.cache.negativeHits),
          storeFailures: sum((s) => s.cache.storeFailures),
          corruptEntries: sum((s) => s.cache.corruptEntries),
        },
        unhealthyOrigins: all.flatMap((s) => s.unhealthyOrigins.map((o) => ({ ...o, pid: s.pid }))),
        perWorker: all,
      };
    },
    async purge(target: PurgeTarget) {
      // Every worker purges, so none keeps anything of it in memory; files removed by one are gone for all.
      const results = await Promise.all(readyHandles().map((h) => h.rpc.call<{ removed: number | 'all' }>('purge', target, 60_000)));
      if ('all' in target) return { removed: 'all' as const };
      return { removed: Math.max(0, ...results.map((r) => (typeof r.removed === 'number' ? r.removed : 0))) };
    },
    config: () => redactConfig(config),
    async reload() {
      let loaded: Config;
      try {
        loaded = ctx.load();
      } catch (err) {
        return { outcome: 'refused', reason: err instanceof Error ? err.message : String(err) };
      }
      return reloadWorkers(loaded);
    },
    metrics: aggregateMetrics,
  };

  let admin: RunningServer | undefined;
  try {
    admin = await startAdminIfConfigured(ctx, backend, audit, metrics, () => config);
  } catch (err) {
    shuttingDown = true;
    await stopWorkers(0);
    await closeIndex();
    throw err;
  }

  printBanner(ctx, url, keys, [`workers:  ${count} processes`, ...(admin ? [`admin:    ${admin.url} (bearer token)`] : [])]);
  logger.info({ config: redactConfig(config), url, admin: admin?.url, workers: count }, 'started');

  await untilStopSignal(logger, () => void auditedReload(() => backend.reload(), 'signal:SIGHUP', audit, metrics));
  shuttingDown = true;
  await admin?.close(1000);
  await stopWorkers(config.server.shutdownGraceMs);
  await closeIndex();
  await audit.close();
  logger.info('stopped');
  logger.flush();
  return 0;
}

/**
 * A cluster worker: asks the primary for the configuration, serves on the
 * shared port, and answers the primary's calls (reload, stats, purge,
 * metrics, shutdown). Rate limits are counted in the primary, so N workers
 * still allow each client one budget.
 */
export async function runWorker(): Promise<number> {
  // The image pipeline is the bulk of a worker's start-up: load it while the primary answers for the configuration.
  const loadingService = import('../server/proxy-service.ts');
  loadingService.catch(() => {}); // awaited below, where a failure is reported
  // Filled in once the primary has sent the configuration; signals may arrive before.
  const running: { service?: ProxyService; logger?: Logger } = {};
  const metrics = new Metrics();
  let stopping: Promise<void> | undefined;
  let release!: () => void;
  const stopped = new Promise<void>((resolve) => {
    release = resolve;
  });

  const stop = (graceMs?: number): Promise<void> => {
    stopping ??= (async () => {
      await running.service?.shutdown(graceMs);
      running.logger?.flush();
      release();
    })();
    return stopping;
  };

  const rpc = new IpcRpc(process as unknown as ConstructorParameters<typeof IpcRpc>[0], {
    reload: (loaded) => running.service?.apply(loaded as Config) ?? { outcome: 'refused', reason: 'worker not started' },
    stats: () => running.service?.stats(),
    purge: (target) => running.service?.purge(target as PurgeTarget),
    metrics: () => metrics.snapshot(),
    shutdown: async (params) => {
      await stop((params as { graceMs?: number } | null)?.graceMs);
      return null;
    },
  });

  // Signals reach workers too when sent to the whole process group (Ctrl-C, a closing terminal).
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  process.on('SIGHUP', () => {}); // reloads are the primary's business
  // Without a primary there is nobody to answer to: stop.
  process.on('disconnect', () => void stop(0));

  try {
    const config = await rpc.call<Config>('config');
    const { ProxyService } = await loadingService;
    const logger = createLogger(config.logLevel).child({ worker: cluster.worker?.id });
    running.logger = logger;
    const gc = exposedGc();
    if (gc) collectExternalGarbage({ stepBytes: WORKER_GC_STEP_BYTES, intervalMs: WORKER_GC_CHECK_MS, gc });
    else logger.debug('started without --expose-gc: external garbage is left to V8');
    const service = await ProxyService.start({
      config,
      logger,
      metrics,
      rateLimitStore: 'cluster',
      exposition: async () => rpc.call('metrics'),
      cacheIndex: new RemoteCacheIndex(rpc, logger),
      // Past an origin fetch's and a transform's deadlines, the holder is not coming back with it: fetch here.
      fillLease: new RemoteFillLease(rpc, logger, { maxWaitMs: config.totalTimeoutMs + config.transforms.timeoutMs + FILL_LEASE_TTL_MS }),
      restartSettings: CLUSTER_RESTART_SETTINGS,
    });
    running.service = service;
    await rpc.call('listening', { url: service.url });
  } catch (err) {
    // The IPC channel would keep a worker that failed to start alive forever: say why and leave.
    process.stderr.write(`fastimagecache: worker ${String(cluster.worker?.id)} could not start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }

  await stopped;
  rpc.close();
  // The IPC channel (and the rate limiter's listener on it) would keep this process alive: leave explicitly.
  process.disconnect?.();
  process.exit(0);
}
