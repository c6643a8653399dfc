import { countEntries, verifyEntries } from '../cache/maintenance.ts';
import { parse, UsageError } from './args.ts';
import { announceRemoved, openConfiguredCache } from './cache-dir-access.ts';
import { progressBar } from './progress.ts';
import { formatBytes } from './stats.ts';

/** `fastimagecache verify`: re-hashes every entry, removes those that do not match, prints a summary. */
export async function verifyCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { config: { type: 'string' }, json: { type: 'boolean' } });
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0] ?? ''}`);
  const { storage } = await openConfiguredCache(values.config);
  const bar = progressBar('verifying');
  const summary = await verifyEntries(storage, { total: await countEntries(storage), onProgress: (d, t) => {
      bar.update(d, t);
    } });
  bar.finish();
  await announceRemoved(storage, summary.removed);
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({ checked: summary.checked, ok: summary.ok, removed: summary.removed.length, bytesRemoved: summary.bytesRemoved })}\n`);
  } else {
    process.stdout.write(
      `verified ${summary.checked} entries: ${summary.ok} ok, ${summary.removed.length} damaged and removed (${formatBytes(summary.bytesRemoved)})\n`,
    );
  }
  return 0;
}
