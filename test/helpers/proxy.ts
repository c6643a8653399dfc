import { join } from 'node:path';
import { loadConfig } from '../../src/config/index.ts';
import { createImageCache, type ImageCache } from '../../src/image-cache.ts';
import { buildImagePath } from '../../src/server/signature.ts';
import { startServer, type RunningServer } from '../../src/server/http-server.ts';
import { makeTempDir } from './tmp.ts';

export const TEST_KEY_HEX = '5f'.repeat(32);

/**
 * The settings a test proxy starts from: a private temp cache, a fixed key,
 * and the loopback origin allowed explicitly (plain HTTP, any port,
 * 127.0.0.1 only), as the security model requires an operator to do.
 */
export function testSettings(dir: string): Record<string, unknown> {
  return {
    cacheDir: join(dir, 'cache'),
    stateDir: join(dir, 'state'),
    allowHttp: true,
    allowedPorts: '*',
    allowedPrivateRanges: ['127.0.0.1/32'],
    port: 0,
    logLevel: 'silent',
  };
}

export interface TestProxy {
  url: string;
  imageCache: ImageCache;
  server: RunningServer;
  cacheDir: string;
  key: Buffer;
  /** Full signed URL on this proxy for a source URL. */
  signedUrl(sourceUrl: string, options?: string): string;
  close(): Promise<void>;
}

/** A real proxy server on 127.0.0.1 with the test settings plus `overrides`. */
export async function startProxy(overrides: Record<string, unknown> = {}): Promise<TestProxy> {
  const tmp = makeTempDir('fic-proxy-');
  // Keys are secrets, so they come in through the environment, as an operator would set them.
  const keys = Array.isArray(overrides.key) ? (overrides.key as string[]).join(',') : TEST_KEY_HEX;
  const settings = { ...overrides };
  delete settings.key;
  const { config } = loadConfig({
    env: { HOME: tmp.dir, FASTIMAGECACHE_KEY: keys },
    overrides: { ...testSettings(tmp.dir), ...settings },
  });
  const endpoints: Array<{ address: string; port: number }> = [];
  const imageCache = await createImageCache({ config, selfEndpoints: () => endpoints });
  const server = await startServer(imageCache, '127.0.0.1', 0);
  endpoints.push({ address: server.address.address, port: server.address.port });
  const key = Buffer.from(keys.split(',')[0] ?? '', 'hex');
  return {
    url: server.url,
    imageCache,
    server,
    cacheDir: config.cacheDir,
    key,
    signedUrl: (sourceUrl, options = '_') => server.url + buildImagePath(key, sourceUrl, options),
    async close() {
      await server.close(1000);
      await imageCache.close();
      tmp.cleanup();
    },
  };
}
