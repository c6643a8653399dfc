/**
 * Headers attached to requests for one origin host, e.g. an Authorization
 * token. Keyed by the URL's `host` (host name plus the port when it is not
 * the scheme's default), so credentials for `images.example.com` go to
 * https://images.example.com/ (and http on port 80) but never to another
 * port of the same machine, another host, or wherever a redirect points.
 */
export type OriginCredentials = ReadonlyMap<string, Readonly<Record<string, string>>>;

/** Lower-cased `host` or `host:port` of a credentials key, spelled as WHATWG URL spells `url.host`. */
export function originHostOf(key: string): string {
  // Parsing through URL gives the same normalisation (case, IDN, IPv6 brackets) as the request URL;
  // a default port (80 or 443) is dropped, as url.host drops it for its own scheme.
  const url = new URL(`http://${key}`);
  return url.port === '443' ? url.hostname : url.host;
}

/** The extra headers for a request to `url`: those configured for exactly its host, else none. */
export function credentialHeadersFor(credentials: OriginCredentials, url: URL): Readonly<Record<string, string>> {
  if (credentials.size === 0) return {};
  return credentials.get(url.host) ?? {};
}
