import type { Logger } from '../log.ts';
import { loadOriginTls } from './tls-options.ts';
import type { Downloader, DownloadPolicy } from './types.ts';

/**
 * Fetches source images from origins: the only component that opens outbound
 * connections (undici-downloader.ts does the work).
 *
 * undici is loaded on the first fetch, or by preload(), not with this module:
 * it is about 150 ms of module loading, the largest single part of a server's
 * start-up, and only misses need it. A server listens, and answers hits,
 * before it has loaded it, and calls preload() once it listens. What can be
 * wrong with the policy (the origin TLS files) is still checked here, at
 * construction.
 */
export function createDownloader(policy: DownloadPolicy, logger: Logger): Downloader {
  const originTls = policy.originTls ? loadOriginTls(policy.originTls, logger) : undefined;
  let inner: Promise<Downloader> | undefined;
  let closed = false;
  const load = (): Promise<Downloader> => {
    // Closed before its first fetch: no client is made that nothing would close (a closed one refuses, as undici's does).
    if (closed && inner === undefined) return Promise.reject(new Error('downloader closed'));
    inner ??= import('./undici-downloader.ts').then(
      (m) => m.createUndiciDownloader(policy, logger, originTls),
      (err: unknown) => {
        inner = undefined; // the next fetch tries again
        throw err;
      },
    );
    return inner;
  };
  return {
    async fetch(req) {
      return (await load()).fetch(req);
    },
    async preload() {
      await load();
    },
    async close() {
      closed = true;
      if (inner !== undefined) await (await inner).close();
    },
  };
}
