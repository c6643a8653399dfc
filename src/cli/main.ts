import { ConfigError } from '../errors.ts';
import { UsageError } from './args.ts';
import { configCheckCommand } from './config-check.ts';
import { serveCommand } from './serve.ts';
import { signCommand } from './sign.ts';

export const HELP = `fastimagecache: a secure caching proxy for remote images

Usage:
  fastimagecache serve [--config FILE] [--host H] [--port P] [--cache-dir DIR]
      Start the server (default 127.0.0.1:8080, cache in $XDG_CACHE_HOME/fastimagecache
      or ~/.cache/fastimagecache). On first start without a key, a signing key is
      generated in the state directory (~/.local/state/fastimagecache/signing.key).
  fastimagecache sign <source-url>... [--options OPTS] [--config FILE]
      Print the signed path /i/{signature}/{options}/{source} for each URL, one per line.
  fastimagecache config check [--config FILE]
      Print the effective configuration as JSON (secrets redacted); exit 1 naming
      the bad setting if any setting is invalid or unknown.
  fastimagecache help

Settings come from: defaults < config file (YAML or JSON) < FASTIMAGECACHE_* environment < flags.
The config file may also be named by FASTIMAGECACHE_CONFIG. See README.md for every setting.
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'serve':
        return await serveCommand(rest);
      case 'sign':
        return signCommand(rest);
      case 'config':
        if (rest[0] !== 'check') throw new UsageError('expected: fastimagecache config check');
        return configCheckCommand(rest.slice(1));
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(HELP);
        return command === undefined ? 1 : 0;
      default:
        throw new UsageError(`unknown command: ${command}`);
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`fastimagecache: invalid configuration: ${err.message}\n`);
      return 1;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`fastimagecache: ${err.message}\n\n${HELP}`);
      return 2;
    }
    process.stderr.write(`fastimagecache: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

// Run when executed directly (bin shim or `node src/cli/main.ts`), not when imported.
if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
