import { availableParallelism } from 'node:os';
import type { Logger } from '../log.ts';
import { parse, UsageError } from './args.ts';
import type { ServeContext } from './serve-common.ts';
import { forkFirstWorker, workerConfig, workerCountBeforeConfig, type EarlyWorker } from './worker-settings.ts';

/*
 * Start-up time is mostly module loading, so each kind of process loads only
 * what it runs: a cluster primary never loads the image pipeline (sharp,
 * undici, …), only its workers and a single process do. And the first worker
 * is forked before anything else is loaded here, when the command line and
 * the environment already say there will be workers (see forkFirstWorker).
 */

export async function serveCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    config: { type: 'string' },
    host: { type: 'string' },
    port: { type: 'string' },
    'cache-dir': { type: 'string' },
    workers: { type: 'string' },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0] ?? ''}`);
  const early = (workerCountBeforeConfig(values) ?? 0) > 1 ? forkFirstWorker() : undefined;
  try {
    return await serveWith(values, early);
  } catch (err) {
    early?.worker.process.kill();
    throw err;
  }
}

async function serveWith(
  values: { config?: string | undefined; host?: string | undefined; port?: string | undefined; 'cache-dir'?: string | undefined; workers?: string | undefined },
  early: EarlyWorker | undefined,
): Promise<number> {
  const [{ loadConfig, resolveSigningKeys }, { createLogger }, { validateForReload }] = await Promise.all([
    import('../config/index.ts'),
    import('../log.ts'),
    import('../server/reload-validation.ts'),
  ]);
  const port = values.port === undefined ? undefined : Number(values.port);
  const workers = values.workers === undefined ? undefined : Number(values.workers);
  const loadOptions = {
    configFile: values.config,
    flags: { host: values.host, port, cacheDir: values['cache-dir'], workers },
  };
  const { config, configFile } = loadConfig(loadOptions);
  const logger: Logger = createLogger(config.logLevel);
  const ctx: ServeContext = {
    config,
    configFile,
    load: () => validateForReload(() => loadConfig(loadOptions).config, process.env),
    logger,
  };

  const count = config.workers === 0 ? availableParallelism() : config.workers;
  if (count > 1) {
    // Made once here, before any worker asks for its configuration, so they cannot race to generate different keys.
    const keys = resolveSigningKeys(config);
    const first = early ?? forkFirstWorker();
    // Its configuration now: it need not wait for the primary's own modules (workers.ts) to load.
    first.answer('config', workerConfig(config, count));
    return (await import('./workers.ts')).runPrimary(ctx, count, keys, first);
  }
  // Not reached while workerCountBeforeConfig agrees with the configuration (test/cli/worker-count.test.ts).
  early?.worker.process.kill();
  return (await import('./serve-single.ts')).runSingleProcess(ctx);
}
