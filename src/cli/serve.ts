import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { loadConfig, redactConfig, resolveSigningKeys } from '../config/index.ts';
import { createLogger, type Logger } from '../log.ts';
import { auditedReload, serviceAdminBackend } from '../server/admin.ts';
import { AuditLog } from '../server/audit-log.ts';
import type { RunningServer } from '../server/http-server.ts';
import { Metrics } from '../server/metrics.ts';
import { ProxyService, validateForReload } from '../server/proxy-service.ts';
import { parse, UsageError } from './args.ts';
import { auditLogPath, printBanner, startAdminIfConfigured, untilStopSignal, type ServeContext } from './serve-common.ts';
import { runPrimary, runWorker } from './workers.ts';

/** One process serves everything: the main listener, the admin listener and the signals. */
async function runSingleProcess(ctx: ServeContext): Promise<number> {
  const { logger } = ctx;
  const metrics = new Metrics();
  const service = await ProxyService.start({ config: ctx.config, logger, metrics, loadConfig: ctx.load });
  const audit = new AuditLog(auditLogPath(ctx.config), logger);
  const backend = serviceAdminBackend(service, metrics);
  let admin: RunningServer | undefined;
  try {
    admin = await startAdminIfConfigured(ctx, backend, audit, metrics, () => service.config);
  } catch (err) {
    await service.shutdown(0);
    throw err;
  }

  printBanner(ctx, service.url, service.imageCache.signingKeys, admin ? [`admin:    ${admin.url} (bearer token)`] : []);
  logger.info({ config: redactConfig(ctx.config), url: service.url, admin: admin?.url, workers: 1 }, 'started');

  await untilStopSignal(logger, () => void auditedReload(() => service.reload(), 'signal:SIGHUP', audit, metrics));
  await admin?.close(1000);
  await service.shutdown();
  await audit.close();
  logger.info('stopped');
  logger.flush();
  return 0;
}

export async function serveCommand(argv: string[]): Promise<number> {
  // A cluster worker is forked with the primary's arguments; it takes its configuration from the primary.
  if (cluster.isWorker) return runWorker();

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
    return runPrimary(ctx, count, keys);
  }
  return runSingleProcess(ctx);
}
