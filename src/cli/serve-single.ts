import { redactConfig } from '../config/redact.ts';
import { auditedReload } from '../server/audited-reload.ts';
import { serviceAdminBackend } from '../server/admin.ts';
import { AuditLog } from '../server/audit-log.ts';
import type { RunningServer } from '../server/http-server.ts';
import { Metrics } from '../server/metrics.ts';
import { ProxyService } from '../server/proxy-service.ts';
import { auditLogPath, printBanner, startAdminIfConfigured, untilStopSignal, type ServeContext } from './serve-common.ts';

/** One process serves everything: the main listener, the admin listener and the signals. */
export async function runSingleProcess(ctx: ServeContext): Promise<number> {
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
