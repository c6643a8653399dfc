import { z } from 'zod';
import ipaddr from 'ipaddr.js';

/**
 * The one configuration schema. Every setting has a default here (paths
 * that depend on the environment are filled in by load.ts), and every
 * source (file, environment, flags) is validated against it. Unknown keys
 * are errors, so a typo never silently falls back to a default.
 */

const cidr = z.string().refine(
  (value) => {
    try {
      ipaddr.parseCIDR(value);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'must be a CIDR range such as 10.0.0.0/8 or fd00::/8' },
);

const hostPattern = z
  .string()
  .min(1)
  .regex(/^(\*\.)?[a-z0-9.-]+$/i, { message: 'must be a host name, optionally starting with "*."' });

const port = z.number().int().min(1).max(65535);

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const configSchema = z.strictObject({
  /** Address the server listens on. */
  host: z.string().min(1).default('127.0.0.1'),
  /** Port the server listens on (0 picks a free one). */
  port: z.number().int().min(0).max(65535).default(8080),
  /** Dedicated cache directory, outside the app and any web root. */
  cacheDir: z.string().min(1),
  /** Where generated state (the first-start signing key) lives. */
  stateDir: z.string().min(1),
  /** The app's public web root, if any: the cache directory must not lie inside it. */
  publicDir: z.string().min(1).optional(),

  /** Signing keys (secret; environment only). The first signs, any verifies. */
  key: z.array(z.string().min(1)).default([]),
  /** File holding signing keys, one per line (secret file; must be mode 0600 or stricter). */
  keyFile: z.string().min(1).optional(),
  /** When false, the literal `unsafe` may stand in for a signature. */
  requireSignature: z.boolean().default(true),

  /** Allow plain http:// origins. */
  allowHttp: z.boolean().default(false),
  /** Allow every private, loopback, link-local, CGNAT and unique-local origin address. */
  allowPrivateNetworks: z.boolean().default(false),
  /** Allow just these private ranges (CIDR). */
  allowedPrivateRanges: z.array(cidr).default([]),
  /** Only these origin hosts (empty: any). `*.example.com` matches subdomains. */
  allowedHosts: z.array(hostPattern).default([]),
  /** Never these origin hosts. */
  deniedHosts: z.array(hostPattern).default([]),
  /** Origin ports allowed, or "*" for any. */
  allowedPorts: z.union([z.array(port).min(1), z.literal('*')]).default([80, 443]),
  /** Redirect hops followed at most. */
  maxRedirects: z.number().int().min(0).max(10).default(3),
  /** Largest source image accepted, in bytes. */
  maxSourceBytes: z.number().int().min(1).max(1024 * 1024 * 1024).default(25 * 1024 * 1024),
  /** Time to connect to an origin, ms. */
  connectTimeoutMs: z.number().int().min(1).default(5_000),
  /** Time until an origin's response headers arrive, ms. */
  headersTimeoutMs: z.number().int().min(1).default(10_000),
  /** Deadline for a whole origin fetch, body included, ms. */
  totalTimeoutMs: z.number().int().min(1).default(30_000),
  /** User-Agent sent to origins. */
  userAgent: z.string().min(1).default('fastimagecache'),

  /** max-age (seconds) in the Cache-Control header sent to clients and CDNs. */
  clientMaxAge: z.number().int().min(0).default(86_400),
  /** Log level. */
  logLevel: z.enum(LOG_LEVELS).default('info'),
});

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type SettingName = keyof Config;

/** Settings that are secrets: never taken from a config file or a flag, never printed. */
export const SECRET_SETTINGS: ReadonlySet<string> = new Set<SettingName>(['key']);
