import { loadConfig, redactConfig, type Config } from '../config/index.ts';
import { createImageCache } from '../image-cache.ts';
import { createLogger, type Logger } from '../log.ts';
import { startServer } from '../server/index.ts';
import { parse, UsageError } from './args.ts';
import { isLoopbackHost } from './loopback.ts';

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

export async function serveCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    config: { type: 'string' },
    host: { type: 'string' },
    port: { type: 'string' },
    'cache-dir': { type: 'string' },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0] ?? ''}`);
  const port = values.port === undefined ? undefined : Number(values.port);
  const { config, configFile } = loadConfig({
    configFile: values.config,
    flags: { host: values.host, port, cacheDir: values['cache-dir'] },
  });
  const logger: Logger = createLogger(config.logLevel);

  const endpoints: Array<{ address: string; port: number }> = [];
  const imageCache = await createImageCache({ config, logger, selfEndpoints: () => endpoints });
  const running = await startServer(imageCache, config.host, config.port);
  endpoints.push({ address: running.address.address, port: running.address.port });

  const keys = imageCache.signingKeys;
  const banner = [
    `fastimagecache listening on ${running.url}`,
    `cache:    ${config.cacheDir}`,
    `config:   ${configFile ?? '(embedded defaults)'}${Object.keys(process.env).some((k) => k.startsWith('FASTIMAGECACHE_')) ? ' + FASTIMAGECACHE_* environment' : ''}`,
    ...describePolicy(config),
    `key:      ${keys.source === 'generated' ? `generated a new signing key in ${keys.path ?? ''}` : keys.source === 'state' ? `from ${keys.path ?? ''}` : `from ${keys.source}`}`,
    `sign a URL:  npx fastimagecache sign https://example.com/cat.jpg   → then GET ${running.url}<printed path>`,
  ];
  process.stderr.write(`${banner.join('\n')}\n`);
  if (!config.requireSignature) logger.warn('signatures are not required: anyone can make this server fetch any allowed URL');
  if (!isLoopbackHost(config.host) && !config.requireSignature) {
    logger.warn({ host: config.host }, 'listening beyond loopback without signatures');
  }
  logger.info({ config: redactConfig(config), url: running.url }, 'started');

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutting down');
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      resolve();
    };
    const onTerm = () => stop('SIGTERM');
    const onInt = () => stop('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
  });
  await running.close();
  await imageCache.close();
  return 0;
}
