import { join } from 'node:path';
import { resolveAdminToken } from '../config/admin-token.ts';
import type { Config, SigningKeys } from '../config/index.ts';
import type { Logger } from '../log.ts';
import type { AdminBackend } from '../server/admin.ts';
import type { AuditLog } from '../server/audit-log.ts';
import type { RunningServer } from '../server/http-server.ts';
import type { Metrics } from '../server/metrics.ts';
import { isLoopbackHost } from './loopback.ts';

/* What a serving process does the same way alone or as the cluster primary: banner, admin listener, signals. */

function describePolicy(config: Config): string[] {
  const ports = config.allowedPorts === '*' ? 'any port' : `ports ${config.allowedPorts.join(',')}`;
  const privateNets = config.allowPrivateNetworks
    ? 'ALL private networks ALLOWED'
    : config.allowedPrivateRanges.length > 0
      ? `private ranges allowed: ${config.allowedPrivateRanges.join(', ')}`
      : 'private networks denied';
  return [
    `origins:  ${config.allowHttp ? 'https and plain HTTP' : 'https only'}, ${ports}, ${privateNets}`,
    `hosts:    ${config.allowedHosts.length ? `only ${config.allowedHosts.join(', ')}` : 'any public host'}` +
      (config.deniedHosts.length ? `, except ${config.deniedHosts.join(', ')}` : ''),
    `signing:  ${config.requireSignature ? 'required' : 'NOT required ("unsafe" accepted)'}`,
  ];
}

/** Everything a serving process needs to know about how it was started. */
export interface ServeContext {
  config: Config;
  configFile: string | undefined;
  /** Re-reads the configuration the same way (file, environment, flags), for reloads. */
  load: () => Config;
  logger: Logger;
}

/** The human start-up banner (stderr); the JSON logs carry the same facts. */
export function printBanner(ctx: ServeContext, url: string, keys: SigningKeys, extra: string[] = []): void {
  const { config, configFile } = ctx;
  const banner = [
    `fastimagecache listening on ${url}`,
    `cache:    ${config.cacheDir}`,
    `config:   ${configFile ?? '(embedded defaults)'}${Object.keys(process.env).some((k) => k.startsWith('FASTIMAGECACHE_')) ? ' + FASTIMAGECACHE_* environment' : ''}`,
    ...describePolicy(config),
    `key:      ${keys.source === 'generated' ? `generated a new signing key in ${keys.path ?? ''}` : keys.source === 'state' ? `from ${keys.path ?? ''}` : `from ${keys.source}`}`,
    ...extra,
    `sign a URL:  npx fastimagecache sign https://example.com/cat.jpg   → then GET ${url}<printed path>`,
  ];
  process.stderr.write(`${banner.join('\n')}\n`);
  if (!config.requireSignature) ctx.logger.warn('signatures are not required: anyone can make this server fetch any allowed URL');
  if (!isLoopbackHost(config.host) && !config.requireSignature) {
    ctx.logger.warn({ host: config.host }, 'listening beyond loopback without signatures');
  }
}

/** Where audit lines go: `auditLog`, else `{stateDir}/audit.log`. */
export function auditLogPath(config: Config): string {
  return config.auditLog ?? join(config.stateDir, 'audit.log');
}

/** The admin listener, when a token is configured (it is off otherwise). */
export async function startAdminIfConfigured(
  ctx: ServeContext,
  backend: AdminBackend,
  audit: AuditLog,
  metrics: Metrics,
  currentConfig: () => Config,
): Promise<RunningServer | undefined> {
  if (resolveAdminToken(ctx.config) === undefined) return undefined;
  // Loaded only when it runs: most deployments have no admin listener.
  const { startAdminServer } = await import('../server/admin.ts');
  return startAdminServer({
    host: ctx.config.admin.host,
    port: ctx.config.admin.port,
    // Re-resolved per request from the running config, so a reload can rotate the token.
    token: () => {
      try {
        return resolveAdminToken(currentConfig());
      } catch {
        return undefined;
      }
    },
    backend,
    audit,
    metrics,
    logger: ctx.logger,
  });
}

/** Resolves when SIGTERM or SIGINT arrives; SIGHUP calls `onReload` meanwhile. */
export function untilStopSignal(logger: Logger, onReload: () => void): Promise<string> {
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutting down');
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      process.off('SIGHUP', onHup);
      resolve(signal);
    };
    const onTerm = () => { stop('SIGTERM'); };
    const onInt = () => { stop('SIGINT'); };
    const onHup = () => {
      logger.info({ signal: 'SIGHUP' }, 'reloading configuration');
      onReload();
    };
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    process.on('SIGHUP', onHup);
  });
}
