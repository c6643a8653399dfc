import { ConfigError } from '../errors.ts';
import { originHostOf, type OriginCredentials } from '../download/origin-credentials.ts';
import type { Config } from './schema.ts';
import { readSecretFile } from './secrets.ts';

/** Headers the downloader owns (framing, loop detection, conditional requests): credentials may not replace them. */
const RESERVED_HEADERS = new Set([
  'host',
  'connection',
  'content-length',
  'transfer-encoding',
  'te',
  'upgrade',
  'user-agent',
  'accept',
  'accept-encoding',
  'if-none-match',
  'if-modified-since',
]);

/**
 * Reads the values of `originCredentials` from where the config says they
 * are: an environment variable or a file readable by its owner alone. The
 * config itself never holds a value. A missing variable or an unsafe file is
 * a configuration error (the server does not start; a reload is refused).
 */
export function resolveOriginCredentials(config: Config, env: Record<string, string | undefined>): OriginCredentials {
  const out = new Map<string, Record<string, string>>();
  for (const [hostKey, headers] of Object.entries(config.originCredentials)) {
    const setting = `originCredentials.${hostKey}`;
    let host: string;
    try {
      host = originHostOf(hostKey);
    } catch {
      throw new ConfigError(setting, 'not a valid host or host:port');
    }
    const values: Record<string, string> = {};
    for (const [name, source] of Object.entries(headers)) {
      const where = `${setting}.${name}`;
      if (RESERVED_HEADERS.has(name.toLowerCase())) throw new ConfigError(where, 'this header is set by fastimagecache itself');
      const raw = 'env' in source ? env[source.env] : readSecretFile(source.file, where);
      if (raw === undefined) throw new ConfigError(where, 'its environment variable is not set');
      const value = raw.trim();
      // A header value may not carry line breaks (header injection) and must not be empty.
      if (value === '' || /[\r\n\0]/.test(value)) throw new ConfigError(where, 'value is empty or contains a line break');
      values[name.toLowerCase()] = value;
    }
    out.set(host, { ...(out.get(host) ?? {}), ...values });
  }
  return out;
}
