export { createAddressPolicy } from './address-policy.ts';
export type { AddressPolicy, AddressPolicyOptions, AddressVerdict } from './address-policy.ts';
export { checkSourceUrl, hostMatches, matchesAnyHost, normalizeHost, MAX_URL_LENGTH } from './url-policy.ts';
export { createGuardedConnector } from './guarded-connector.ts';
export type { GuardedConnectorOptions, Resolver, ResolvedAddress } from './guarded-connector.ts';
export { createDownloader } from './downloader.ts';
export { loadOriginTls, spkiPin, type OriginTls, type OriginTlsConfig, type OriginTlsSettings } from './tls-options.ts';
export type { Downloader, DownloadPolicy, FetchRequest, FetchResult, OriginHeaders } from './types.ts';
