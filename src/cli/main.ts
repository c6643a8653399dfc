// First import: sizes libuv's thread pool before anything can start it.
import './threadpool.ts';
import cluster from 'node:cluster';
import { ConfigError } from '../errors.ts';
import { UsageError } from './args.ts';
import { enableCompileCache } from './compile-cache.ts';
// Each command is loaded when it runs: start-up time is mostly module loading (every cluster worker pays it too).

export const HELP = `fastimagecache: a secure caching proxy for remote images

Usage:
  fastimagecache serve [--config FILE] [--host H] [--port P] [--cache-dir DIR] [--workers N]
      Start the server (default 127.0.0.1:8080, cache in $XDG_CACHE_HOME/fastimagecache
      or ~/.cache/fastimagecache). On first start without a key, a signing key is
      generated in the state directory (~/.local/state/fastimagecache/signing.key).
      --workers N runs N processes on one port (default: one per CPU). SIGTERM or
      SIGINT stops it gracefully; SIGHUP reloads the configuration.
  fastimagecache sign <source-url>... [--options OPTS] [--config FILE]
      Print the signed path /i/{signature}/{options}/{source} for each URL, one per line.
  fastimagecache config check [--config FILE]
      Print the effective configuration as JSON (secrets redacted); exit 1 naming
      the bad setting if any setting is invalid or unknown.
  fastimagecache doctor [--config FILE] [--json]
      Check a deployment (directory modes, keys, signing, listeners, origin policy,
      decoders) and print each finding with its severity and a fix; exit 1 on any high one.
  fastimagecache version [--json]
      Print the versions that matter for security: fastimagecache, Node, sharp, libvips
      and each codec library, undici.
  fastimagecache stats [--config FILE] [--json]
      Entries, bytes, limit and oldest entry of the cache directory, and the hit ratio
      since start of the servers running on it.
  fastimagecache purge <source-url>... | --all [--config FILE]
      Remove a source with all its variants (or everything); running servers forget them too.
  fastimagecache verify [--config FILE] [--json]
      Re-hash every entry, remove those that do not match, print a summary.
  fastimagecache prune [--config FILE] [--json]
      Remove expired entries and enforce maxCacheBytes / maxEntries now.
  fastimagecache help

Settings come from: defaults < config file (YAML or JSON) < FASTIMAGECACHE_* environment < flags.
The config file may also be named by FASTIMAGECACHE_CONFIG. See README.md for every setting.
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'serve':
        // A cluster worker is forked with the primary's arguments and takes its configuration from the primary:
        // it goes straight to its own code, without the configuration loader (zod, yaml) serve.ts brings.
        if (cluster.isWorker) return await (await import('./workers.ts')).runWorker();
        return await (await import('./serve.ts')).serveCommand(rest);
      case 'sign':
        return (await import('./sign.ts')).signCommand(rest);
      case 'config':
        if (rest[0] !== 'check') throw new UsageError('expected: fastimagecache config check');
        return (await import('./config-check.ts')).configCheckCommand(rest.slice(1));
      case 'stats':
        return await (await import('./stats.ts')).statsCommand(rest);
      case 'purge':
        return await (await import('./purge.ts')).purgeCommand(rest);
      case 'verify':
        return await (await import('./verify.ts')).verifyCommand(rest);
      case 'prune':
        return await (await import('./prune.ts')).pruneCommand(rest);
      case 'doctor':
        return (await import('./doctor.ts')).doctorCommand(rest);
      case 'version':
      case '--version':
        return await (await import('./version.ts')).versionCommand(rest);
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
  enableCompileCache();
  process.exitCode = await main(process.argv.slice(2));
}
