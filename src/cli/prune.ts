import { countEntries, pruneEntries } from '../cache/maintenance.ts';
import { silentLogger } from '../log.ts';
import { parse, UsageError } from './args.ts';
import { announceRemoved, openConfiguredCache } from './cache-dir-access.ts';
import { progressBar } from './progress.ts';
import { formatBytes } from './stats.ts';

/** `fastimagecache prune`: removes expired entries and enforces maxCacheBytes / maxEntries now. */
export async function pruneCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { config: { type: 'string' }, json: { type: 'boolean' } });
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0] ?? ''}`);
  const { config, storage } = await openConfiguredCache(values.config);
  const bar = progressBar('pruning');
  const summary = await pruneEntries(storage, {
    maxBytes: config.maxCacheBytes,
    maxEntries: config.maxEntries,
    logger: silentLogger(),
    total: await countEntries(storage),
    onProgress: (d, t) => {
      bar.update(d, t);
    },
  });
  bar.finish();
  await announceRemoved(storage, [...summary.expired, ...summary.evicted]);
  if (values.json === true) {
    process.stdout.write(
      `${JSON.stringify({ checked: summary.checked, expired: summary.expired.length, evicted: summary.evicted.length, bytesFreed: summary.bytesFreed })}\n`,
    );
  } else {
    process.stdout.write(
      `pruned ${summary.checked} entries: ${summary.expired.length} expired and ${summary.evicted.length} evicted for the limits removed (${formatBytes(summary.bytesFreed)} freed)\n`,
    );
  }
  return 0;
}
