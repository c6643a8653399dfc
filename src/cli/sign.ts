import { loadConfig, resolveSigningKeys } from '../config/index.ts';
import { FastImageCacheError } from '../errors.ts';
import { checkOptionsSegment } from '../image/options.ts';
import { buildImagePath } from '../server/index.ts';
import { parse, UsageError } from './args.ts';

/** Prints `/i/{signature}/{options}/{source}` for each source URL, one per line. */
export function signCommand(argv: string[]): number {
  const { values, positionals } = parse(argv, {
    config: { type: 'string' },
    options: { type: 'string', default: '_' },
  });
  if (positionals.length === 0) throw new UsageError('sign needs at least one source URL');
  const { config } = loadConfig({ configFile: values.config });
  const key = resolveSigningKeys(config).keys[0];
  if (!key) throw new UsageError('no signing key');
  const options = values.options;
  try {
    checkOptionsSegment(options, { presets: config.presets, ...config.transforms });
  } catch (err) {
    if (err instanceof FastImageCacheError) throw new UsageError(`invalid --options "${options}": ${err.detail ?? err.message}`);
    throw err;
  }
  const lines = positionals.map((source) => {
    try {
      new URL(source);
    } catch {
      throw new UsageError(`not an absolute URL: ${source}`);
    }
    return buildImagePath(key, source, options);
  });
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
