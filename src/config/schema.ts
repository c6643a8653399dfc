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

/** A key of originCredentials: a host name or address, optionally with a port. */
const originHostKey = z
  .string()
  .regex(/^([a-z0-9.-]+|\[[0-9a-f:.]+\])(:\d{1,5})?$/i, { message: 'must be a host or host:port' });

/** An HTTP header name (RFC 9110 token). */
const headerName = z.string().regex(/^[!#$%&'*+.^_`|~0-9a-z-]+$/i, { message: 'must be an HTTP header name' });

/** Where a credential's value is read from: never the value itself. */
const credentialSource = z.union([
  z.strictObject({ env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { message: 'must be an environment variable name' }) }),
  z.strictObject({ file: z.string().min(1) }),
]);

/** A Redis URL: redis:// or rediss:// (TLS), nothing else. */
const redisUrl = z.string().refine(
  (value) => {
    try {
      const protocol = new URL(value).protocol;
      return protocol === 'redis:' || protocol === 'rediss:';
    } catch {
      return false;
    }
  },
  { message: 'must be a redis:// or rediss:// URL' },
);

/** A named output format (preset): size, fit, format and quality, each optional. */
const preset = z.strictObject({
  width: z.number().int().min(1).max(16383).optional(),
  height: z.number().int().min(1).max(16383).optional(),
  fit: z.enum(['cover', 'contain', 'inside', 'outside', 'fill']).optional(),
  format: z.enum(['jpeg', 'png', 'webp', 'avif', 'auto']).optional(),
  quality: z.number().int().min(1).max(100).optional(),
});
const presetName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, { message: 'must be letters, digits, - and _' });
/** Source formats sharp decodes here, each switchable. */
const INPUT_FORMATS = ['jpeg', 'png', 'gif', 'webp', 'avif', 'tiff'] as const;

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
  /**
   * Per-origin-host TLS (config file only), e.g. `{ "images.internal.example": { caFile: "/etc/fic/ca.pem",
   * pins: ["base64 SHA-256 of a SubjectPublicKeyInfo"] } }`: an extra CA bundle trusted for that host only, and
   * SPKI pins one of which must match a certificate of the verified chain.
   */
  originTls: z
    .record(
      hostPattern,
      z.strictObject({
        /** PEM file of extra CA certificates for this host, on top of the default roots. */
        caFile: z.string().min(1).optional(),
        /** SPKI pins: base64 SHA-256 of a SubjectPublicKeyInfo (optionally prefixed `sha256/`). */
        pins: z.array(z.string().regex(/^(sha256\/)?[A-Za-z0-9+/]{43}=$/, { message: 'must be a base64 SHA-256 pin' })).min(1).optional(),
      }),
    )
    .default({}),

  /** Largest total size of the cache directory's entries, bytes (metadata included); least recently used entries are evicted. */
  maxCacheBytes: z.number().int().min(1).default(1024 * 1024 * 1024),
  /** Most entries the cache directory may hold (no limit by default). */
  maxEntries: z.number().int().min(1).optional(),
  /** fsync every entry before it is renamed into place: keeps entries across a power failure (reads check integrity either way). */
  fsyncWrites: z.boolean().default(false),
  /** Size of the in-memory tier of hot, verified images in front of the disk, bytes (0 turns it off). */
  memoryCacheBytes: z.number().int().min(0).default(64 * 1024 * 1024),
  /** Shortest time (seconds) an image is served from the cache before asking the origin again, whatever the origin says. */
  minTtl: z.number().int().min(0).default(60),
  /** Longest time (seconds) an image is served from the cache before asking the origin again, whatever the origin says. */
  maxTtl: z.number().int().min(0).default(30 * 86_400),
  /** Freshness (seconds) when the origin sends no max-age, s-maxage, no-cache or Expires. */
  defaultTtl: z.number().int().min(0).default(86_400),
  /** Seconds past expiry an image is still served (X-Cache: STALE) while one background refresh runs, unless the origin says otherwise. */
  staleWhileRevalidate: z.number().int().min(0).default(60),
  /** Seconds past expiry an image is still served when the origin fails or times out, unless the origin says otherwise. */
  staleIfError: z.number().int().min(0).default(86_400),
  /** Seconds a lasting refusal (origin 404/410, not an image, too large) is remembered (0 turns it off). */
  negativeTtl: z.number().int().min(0).default(60),
  /** Store even no-store/private responses and give every image defaultTtl, whatever the origin's Cache-Control. */
  ignoreOriginCacheControl: z.boolean().default(false),
  /** Keys that encrypt cache entries at rest (secret; environment only), hex or base64, at least 32 bytes; the first encrypts, any decrypts. */
  storageKey: z.array(z.string().min(1)).default([]),
  /** File holding storage keys, one per line (secret file; must be mode 0600 or stricter). */
  storageKeyFile: z.string().min(1).optional(),

  /** max-age (seconds) in the Cache-Control header sent to clients and CDNs. */
  clientMaxAge: z.number().int().min(0).default(86_400),
  /** Log level. */
  logLevel: z.enum(LOG_LEVELS).default('info'),

  /** Named output formats clients ask for with `p:NAME` (config file or code only), e.g. `thumb: { width: 150, height: 150, fit: cover, format: webp }`. */
  presets: z.record(presetName, preset).default({}),
  /** Image transforms: what clients may ask for, and how much work runs at once. */
  transforms: z
    .strictObject({
      /** Allow options other than `p:NAME` (sizes, fit, format, quality, dpr) in signed URLs. */
      allowAdHoc: z.boolean().default(true),
      /** Largest output width in pixels (dpr included); larger is 400 bad_options. */
      maxWidth: z.number().int().min(1).max(16383).default(4096),
      /** Largest output height in pixels (dpr included); larger is 400 bad_options. */
      maxHeight: z.number().int().min(1).max(16383).default(4096),
      /** Transforms running at once; 0: one per CPU, always two below libuv's thread pool size. */
      concurrency: z.number().int().min(0).max(1024).default(0),
      /** Transforms waiting at most; beyond it 503 overloaded with Retry-After. */
      queueSize: z.number().int().min(0).max(100_000).default(64),
      /**
       * Bytes of fetched sources held at once between download and check, per process; 0: no limit. Past it, a
       * download waits after its headers, its body left in the socket, so a miss storm cannot fill memory with
       * sources queued for a transform slot. One source larger than this is held alone.
       */
      sourceBytesInFlight: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(16 * 1024 * 1024),
      /** Deadline of one transform or SVG rendering, ms; past it 413 too_large. */
      timeoutMs: z.number().int().min(1000).max(600_000).default(15_000),
    })
    .prefault({}),
  /** Largest source in pixels (one frame, or all frames of a kept animation), read from the header before decoding. */
  maxSourcePixels: z.number().int().min(1).max(268_402_689).default(50_000_000),
  /** Most frames (pages) a source image may have. */
  maxSourceFrames: z.number().int().min(1).max(100_000).default(1000),
  /** Strip EXIF, XMP, IPTC and colour profiles (converted to sRGB) from every image served, passthrough included. */
  stripMetadata: z.boolean().default(true),
  /** SVG sources: `refuse`, or `rasterize` to PNG (never served as SVG; external references never loaded). */
  svg: z.enum(['refuse', 'rasterize']).default('refuse'),
  /** Source formats accepted (others are 415 not_an_image); AVIF (libheif) and TIFF (libtiff) are opt-in. */
  inputFormats: z.array(z.enum(INPUT_FORMATS)).min(1).default(['jpeg', 'png', 'gif', 'webp']),

  /** Per-client-address request rate limit (cache hits count too; /healthz and /readyz never). perSecond 0 turns it off. */
  rateLimit: z
    .strictObject({
      /** Sustained requests per second per client address. */
      perSecond: z.number().int().min(0).max(1_000_000).default(50),
      /** Extra requests a client may make at once above perSecond; the allowance refills over burst/perSecond seconds. */
      burst: z.number().int().min(0).max(1_000_000).default(100),
    })
    .prefault({}),
  /** Peers (CIDR) allowed to say who the client is in X-Forwarded-For; empty: the socket address is the client. */
  trustedProxies: z.array(cidr).default([]),
  /** Limits on the listening side, so slow or oversized requests cannot pin the server. */
  server: z
    .strictObject({
      /** Time for a client to send the request headers, ms. */
      headersTimeoutMs: z.number().int().min(1).default(10_000),
      /** Time for a client to send the whole request, ms. */
      requestTimeoutMs: z.number().int().min(1).default(60_000),
      /** How long an idle keep-alive connection stays open, ms. */
      idleTimeoutMs: z.number().int().min(1).default(5_000),
      /** Largest request line plus headers, bytes (bigger: 431). */
      maxHeaderBytes: z.number().int().min(1024).max(1024 * 1024).default(16 * 1024),
      /** Longest request URL, characters (longer: 414 uri_too_long). */
      maxUrlLength: z.number().int().min(256).max(1024 * 1024).default(12 * 1024),
      /** On SIGTERM, how long in-flight requests may take to finish, ms. */
      shutdownGraceMs: z.number().int().min(0).default(10_000),
    })
    .prefault({}),
  /** Concurrent origin fetches: beyond the limits requests wait in a bounded queue, beyond the queue 503 overloaded. */
  originLimits: z
    .strictObject({
      /** Origin fetches running at once, all hosts together. */
      maxConcurrent: z.number().int().min(1).default(64),
      /** Fetches waiting for a global slot at most. */
      maxQueue: z.number().int().min(0).default(256),
      /** Origin fetches running at once to one origin host. */
      maxConcurrentPerHost: z.number().int().min(1).default(8),
      /** Fetches waiting for a slot of one origin host at most. */
      maxQueuePerHost: z.number().int().min(0).default(32),
    })
    .prefault({}),
  /** Per-origin-host circuit breaker: after `failures` consecutive 5xx, timeouts or connection failures the host is skipped for `cooldownMs`. */
  circuitBreaker: z
    .strictObject({
      /** Consecutive failures that open the breaker; 0 turns it off. */
      failures: z.number().int().min(0).default(5),
      /** How long an open breaker refuses before one probe request is let through, ms. */
      cooldownMs: z.number().int().min(1).default(30_000),
    })
    .prefault({}),
  /**
   * Headers attached to requests for one origin host (`host` or `host:port`), e.g.
   * `{ "images.example.com": { Authorization: { env: "IMAGES_AUTH" } } }`. Values come only from an
   * environment variable (`env`) or a file readable by its owner alone (`file`), never from this setting.
   */
  originCredentials: z.record(originHostKey, z.record(headerName, credentialSource)).default({}),
  /** The admin listener: off unless a token is set. */
  admin: z
    .strictObject({
      /** Address of the admin listener. */
      host: z.string().min(1).default('127.0.0.1'),
      /** Port of the admin listener. */
      port: z.number().int().min(0).max(65535).default(8081),
      /** Bearer token (secret; environment only), at least 16 characters. */
      token: z.string().min(16).optional(),
      /** File holding the bearer token (must be mode 0600 or stricter). */
      tokenFile: z.string().min(1).optional(),
    })
    .prefault({}),
  /** Prometheus metrics; always on the admin listener at /metrics. */
  metrics: z
    .strictObject({
      /** Also answer GET /metrics on the main listener. */
      onMainListener: z.boolean().default(false),
    })
    .prefault({}),
  /** Audit log (JSON lines, mode 0600) of reloads, purges and admin login failures; default `{stateDir}/audit.log`. */
  auditLog: z.string().min(1).optional(),
  /** Worker processes for `serve` (one port, one cache directory); 0 means one per CPU. */
  workers: z.number().int().min(0).max(1024).default(0),
  /** Several nodes, one cache: Redis (or Valkey) as the shared tier, lock and purge bus. Everything off without a URL. */
  redis: z
    .strictObject({
      /** `redis://` or `rediss://` (TLS) URL; a secret when it carries a password (then environment or urlFile only). */
      url: redisUrl.optional(),
      /** File holding the Redis URL (must be mode 0600 or stricter). */
      urlFile: z.string().min(1).optional(),
      /** Prefix of every key and channel, so deployments can share one Redis. */
      keyPrefix: z.string().min(1).max(100).default('fastimagecache:'),
      /** Largest image body shared through Redis, bytes; bigger ones stay in each node's local tiers. */
      maxEntryBytes: z.number().int().min(0).max(512 * 1024 * 1024).default(1024 * 1024),
      /** How long Redis keeps a shared entry, seconds. */
      entryTtlSeconds: z.number().int().min(1).default(86_400),
      /** Time to connect to Redis, ms. */
      connectTimeoutMs: z.number().int().min(1).default(2_000),
      /** Longest wait for one Redis command, ms; past it the node goes on with its local tiers. */
      commandTimeoutMs: z.number().int().min(1).default(500),
      /** Expiry of the cross-node fetch lock, ms: kept alive while its holder fetches, freed this long after a holder dies. */
      lockTtlMs: z.number().int().min(100).default(10_000),
    })
    .prefault({}),
});

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type SettingName = keyof Config;

export { SECRET_SETTINGS } from './secret-settings.ts';
