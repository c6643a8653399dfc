import { directoryStats } from '../cache/maintenance.ts';
import { readStatuses } from '../storage/status-board.ts';
import { parse, UsageError } from './args.ts';
import { openConfiguredCache } from './cache-dir-access.ts';

/**
 * `fastimagecache stats`: what the cache directory holds (entries, bytes,
 * limit, oldest entry), and, from the counters each running server
 * publishes, the hit ratio since it started.
 */
export async function statsCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { config: { type: 'string' }, json: { type: 'boolean' } });
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0] ?? ''}`);
  const { config, storage } = await openConfiguredCache(values.config);
  const dir = await directoryStats(storage);
  const servers = (await readStatuses(storage.dir)).map(({ pid, status }) => ({ pid, ...pickCounters(status) }));
  const totals = servers.reduce(
    (t, s) => ({ hits: t.hits + s.hits, stale: t.stale + s.stale, revalidated: t.revalidated + s.revalidated, misses: t.misses + s.misses, evictions: t.evictions + s.evictions }),
    { hits: 0, stale: 0, revalidated: 0, misses: 0, evictions: 0 },
  );
  const answers = totals.hits + totals.stale + totals.revalidated + totals.misses;
  const report = {
    cacheDir: storage.dir,
    entries: dir.entries,
    bytes: dir.bytes,
    maxBytes: config.maxCacheBytes,
    maxEntries: config.maxEntries ?? null,
    oldestEntry: dir.oldestMs === null ? null : new Date(dir.oldestMs).toISOString(),
    encrypted: config.storageKey.length > 0 || config.storageKeyFile !== undefined,
    servers,
    hitRatio: answers === 0 ? null : (totals.hits + totals.stale + totals.revalidated) / answers,
    evictions: totals.evictions,
  };
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return 0;
  }
  const pct = (n: number) => `${(n * 100).toFixed(1)}%`;
  const lines = [
    `cache:        ${report.cacheDir}${report.encrypted ? ' (encrypted at rest)' : ''}`,
    `entries:      ${report.entries}${report.maxEntries === null ? '' : ` of at most ${report.maxEntries}`}`,
    `size:         ${formatBytes(report.bytes)} of ${formatBytes(report.maxBytes)} (${pct(report.bytes / report.maxBytes)})`,
    `oldest entry: ${report.oldestEntry ?? '(none)'}`,
    servers.length === 0
      ? 'hit ratio:    (no server running on this directory)'
      : `hit ratio:    ${report.hitRatio === null ? '(no requests yet)' : pct(report.hitRatio)} since start, ${answers} answers, ${totals.evictions} evictions (${servers.length} server process${servers.length === 1 ? '' : 'es'})`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

function pickCounters(status: Record<string, unknown>) {
  const num = (k: string): number => {
    const v = status[k];
    return typeof v === 'number' ? v : 0;
  };
  return {
    startedAt: typeof status.startedAt === 'number' ? new Date(status.startedAt).toISOString() : null,
    hits: num('hits'),
    stale: num('stale'),
    revalidated: num('revalidated'),
    misses: num('misses'),
    memoryHits: num('memoryHits'),
    diskHits: num('diskHits'),
    evictions: num('evictions'),
  };
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit] ?? 'B'}`;
}
