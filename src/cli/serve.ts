import { availableParallelism } from 'node:os';
import { loadConfig, resolveSigningKeys } from '../config/index.ts';
import { createLogger, type Logger } from '../log.ts';
import { validateForReload } from '../server/reload-validation.ts';
import { parse, UsageError } from './args.ts';
import type { ServeContext } from './serve-common.ts';

/*
 * Start-up time is mostly module loading, so each kind of process loads only
 * what it runs: a cluster primary never loads the image pipeline (sharp,
 * undici, …), only its workers and a single process do.
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
    // Made once here, before any worker starts, so they cannot race to generate different keys.
    const keys = resolveSigningKeys(config);
    // The workers load their code while this process loads its own (start-up is mostly module loading).
    const forked = (await import('./worker-settings.ts')).forkWorkersEarly(count);
    return (await import('./workers.ts')).runPrimary(ctx, count, keys, forked);
  }
  return (await import('./serve-single.ts')).runSingleProcess(ctx);
}
