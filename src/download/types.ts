import type { OriginTlsConfig } from './tls-options.ts';

/** What the Download Manager needs to know; mapped from the config by the composition root. */
export interface DownloadPolicy {
  /** Allow plain http:// origins (https only otherwise). */
  allowHttp: boolean;
  /** Destination ports allowed, or '*' for any. */
  allowedPorts: readonly number[] | '*';
  /** Host allow-list; empty means any host. Entries may be `*.example.com` (subdomains only). */
  allowedHosts: readonly string[];
  /** Host deny-list, same syntax; checked before the allow-list. */
  deniedHosts: readonly string[];
  /** Allow every private/loopback/link-local range (never cloud metadata addresses). */
  allowPrivateNetworks: boolean;
  /** CIDR ranges carved out of the denied set, e.g. ['127.0.0.1/32']. */
  allowedPrivateRanges: readonly string[];
  /** Redirect hops followed at most (each re-checked like the first). */
  maxRedirects: number;
  /** Body size limit in bytes, enforced while streaming. */
  maxBytes: number;
  connectTimeoutMs: number;
  /** Time allowed until the response headers arrive. */
  headersTimeoutMs: number;
  /** Deadline for the whole fetch, body included. */
  totalTimeoutMs: number;
  userAgent: string;
  /** Per-origin-host TLS: extra CA bundle and SPKI pins (files are read when the downloader is created). */
  originTls?: OriginTlsConfig;
  /** Addresses this proxy itself listens on; connecting to one is a request loop. */
  selfEndpoints?: () => ReadonlyArray<{ address: string; port: number }>;
  /** Extra headers (per-origin credentials) for a request to exactly this URL's host; asked again at every redirect hop. */
  originHeaders?: (url: URL) => Readonly<Record<string, string>>;
}

/** The origin response headers that matter to caching; nothing else is kept. */
export interface OriginHeaders {
  contentType?: string;
  etag?: string;
  lastModified?: string;
  cacheControl?: string;
  expires?: string;
  date?: string;
  age?: string;
}

export interface FetchRequest {
  url: URL;
  /** Validators for a conditional request; a 304 then comes back with an empty body. */
  conditional?: { etag?: string; lastModified?: string };
  signal?: AbortSignal;
  /**
   * Called once a 200's headers are in and checked, before its body is read,
   * with the Content-Length (undefined when the origin sent none). While it
   * waits the body stays in the socket: the origin feels TCP backpressure and
   * nothing is buffered here. If the fetch's deadline passes meanwhile the
   * fetch fails with `overloaded` (the wait was ours, not the origin's);
   * anything it throws fails the fetch as it is.
   */
  beforeBody?: (declaredBytes: number | undefined, signal: AbortSignal) => Promise<void>;
}

export interface FetchResult {
  status: 200 | 304;
  body: Buffer;
  finalUrl: string;
  headers: OriginHeaders;
  redirects: number;
}

export interface Downloader {
  fetch(req: FetchRequest): Promise<FetchResult>;
  /** Loads what the first fetch would load (its HTTP client), ahead of it. */
  preload?(): Promise<void>;
  close(): Promise<void>;
}
