import { Writable } from 'node:stream';
import { loadConfig, type Config } from '../../src/config/index.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import { Metrics } from '../../src/server/metrics.ts';
import { ProxyService } from '../../src/server/proxy-service.ts';
import { buildImagePath } from '../../src/server/signature.ts';
import { TEST_KEY_HEX, testSettings } from '../helpers/proxy.ts';
import { makeTempDir } from '../helpers/tmp.ts';

export const TEST_KEY = Buffer.from(TEST_KEY_HEX, 'hex');

/** A logger whose JSON lines are kept, so tests can check what was (and was not) logged. */
export function capturingLogger(): { logger: Logger; lines: string[]; text: () => string } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      callback();
    },
  });
  return { logger: createLogger('debug', sink), lines, text: () => lines.join('\n') };
}

export interface TestService {
  service: ProxyService;
  metrics: Metrics;
  config: Config;
  dir: string;
  env: Record<string, string>;
  url: string;
  signedUrl(sourceUrl: string): string;
  close(): Promise<void>;
}

export interface StartOptions {
  settings?: Record<string, unknown>;
  env?: Record<string, string>;
  logger?: Logger;
  /** Settings file re-read on reload (YAML/JSON path). */
  configFile?: string;
  dir?: { dir: string; cleanup: () => void };
}

/** A real ProxyService (front door, rate limits, origin limits, breakers) on 127.0.0.1 with the test settings. */
export async function startService(options: StartOptions = {}): Promise<TestService> {
  const tmp = options.dir ?? makeTempDir('fic-ops-');
  const env = { HOME: tmp.dir, FASTIMAGECACHE_KEY: TEST_KEY_HEX, ...(options.env ?? {}) };
  const overrides = { ...testSettings(tmp.dir), ...(options.settings ?? {}) };
  const load = () => loadConfig({ env, overrides, configFile: options.configFile }).config;
  const config = load();
  const metrics = new Metrics({ processMetrics: false });
  const logger = options.logger ?? createLogger('silent');
  const service = await ProxyService.start({ config, logger, metrics, loadConfig: load, env });
  return {
    service,
    metrics,
    config,
    dir: tmp.dir,
    env,
    url: service.url,
    signedUrl: (sourceUrl) => service.url + buildImagePath(TEST_KEY, sourceUrl),
    async close() {
      await service.shutdown(500);
      tmp.cleanup();
    },
  };
}
