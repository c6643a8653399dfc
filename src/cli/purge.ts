import { purgeSource } from '../cache/maintenance.ts';
import { parse, UsageError } from './args.ts';
import { announceRemoved, openConfiguredCache } from './cache-dir-access.ts';
import type { Config } from '../config/index.ts';
import { purgeAcrossCluster } from '../cluster-config.ts';
import { silentLogger } from '../log.ts';

/**
 * `fastimagecache purge <source-url>...` removes each source with all its
 * variants; `purge --all` empties the cache. Running servers on the same
 * directory are told, so their memory tiers forget the entries too.
 */
export async function purgeCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { config: { type: 'string' }, all: { type: 'boolean' } });
  if (values.all === true && positionals.length > 0) throw new UsageError('give source URLs or --all, not both');
  if (values.all !== true && positionals.length === 0) throw new UsageError('purge needs a source URL (or --all)');
  for (const url of positionals) {
    try {
      new URL(url);
    } catch {
      throw new UsageError(`not an absolute URL: ${url}`);
    }
  }
  const { config, storage } = await openConfiguredCache(values.config);
  if (values.all === true) {
    await storage.clear();
    await announceRemoved(storage, 'all');
    await tellOtherNodes(config, storage.dir, { all: true });
    process.stdout.write('purged everything\n');
    return 0;
  }
  let total = 0;
  for (const url of positionals) {
    const removed = await purgeSource(storage, url);
    await announceRemoved(storage, removed);
    await tellOtherNodes(config, storage.dir, { sourceUrl: url });
    total += removed.length;
  }
  process.stdout.write(`purged ${total} entr${total === 1 ? 'y' : 'ies'}\n`);
  return 0;
}

/** With redis.url set, the purge also empties the shared tier and reaches every node. */
async function tellOtherNodes(config: Config, cacheDir: string, target: { sourceUrl: string } | { all: true }): Promise<void> {
  const outcome = await purgeAcrossCluster(config, cacheDir, target, silentLogger());
  if (outcome === 'owed') {
    process.stderr.write(
      'warning: Redis did not answer: purged on this machine; a server using this cache directory carries the purge to the other nodes once Redis is back (or the next one started over it)\n',
    );
  }
}
