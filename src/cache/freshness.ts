import CachePolicy from 'http-cache-semantics';
import type { Freshness, OriginInfo } from '../storage/types.ts';

/**
 * The project's freshness policy on top of http-cache-semantics (which does
 * the RFC 9111 / 5861 reading of the headers): origin lifetimes clamped
 * between minTtl and maxTtl, defaultTtl when the origin is silent, windows for
 * serving stale that the origin may set and the operator defaults.
 */
export interface FreshnessSettings {
  minTtlMs: number;
  maxTtlMs: number;
  /** Lifetime when the origin names none (no max-age, s-maxage, no-cache or Expires). */
  defaultTtlMs: number;
  /** stale-while-revalidate window when the origin names none. */
  staleWhileRevalidateMs: number;
  /** stale-if-error window when the origin names none. */
  staleIfErrorMs: number;
  /** Store even no-store / private responses, and use defaultTtl for everything. */
  ignoreOriginCacheControl: boolean;
}

export const DEFAULT_FRESHNESS: FreshnessSettings = {
  minTtlMs: 60_000,
  maxTtlMs: 30 * 86_400_000,
  defaultTtlMs: 86_400_000,
  staleWhileRevalidateMs: 60_000,
  staleIfErrorMs: 86_400_000,
  ignoreOriginCacheControl: false,
};

export interface ResponseVerdict {
  /** False for no-store / private (unless ignored): serve it, do not keep it. */
  storable: boolean;
  freshness: Freshness;
  /** The headers to keep for the next revalidation. */
  origin: OriginInfo;
}

/** A fetched image: may it be stored, and for how long is it fresh. */
export function judgeResponse(origin: OriginInfo, now: number, settings: FreshnessSettings): ResponseVerdict {
  return verdict(policyAt(now, origin), origin, now, settings);
}

/**
 * The origin answered 304 to a revalidation: the stored headers updated with
 * the new ones (the library's merge), and a new lifetime from now. `matches`
 * is false when the 304 names another validator than the stored entry's,
 * which then must not be refreshed (RFC 9111 §4.3.4).
 */
export function judgeRevalidation(
  stored: OriginInfo,
  notModified: OriginInfo,
  now: number,
  settings: FreshnessSettings,
): ResponseVerdict & { matches: boolean } {
  // The Age of the first response says nothing about the 304's; only the new one counts.
  const kept: OriginInfo = { ...stored };
  delete kept.age;
  const previous = policyAt(now, kept);
  const { policy, matches } = previous.revalidatedPolicy(REQUEST, { status: 304, headers: toHeaders(notModified) });
  const merged = fromHeaders(policy.toObject().resh);
  return { ...verdict(policy, merged, now, settings), matches };
}

export type FreshnessState = 'fresh' | 'stale-while-revalidate' | 'stale';

/** fresh: serve. stale-while-revalidate: serve and refresh in the background. stale: refresh first. */
export function freshnessState(freshness: Freshness, now: number): FreshnessState {
  if (now < freshness.freshUntil) return 'fresh';
  if (!freshness.mustRevalidate && now < freshness.staleWhileRevalidateUntil) return 'stale-while-revalidate';
  return 'stale';
}

/** May this expired entry be served because the origin failed or timed out (stale-if-error)? */
export function mayServeStaleOnError(freshness: Freshness, now: number): boolean {
  return !freshness.mustRevalidate && now < freshness.staleIfErrorUntil;
}

/** Last moment the entry may be served without a successful answer from the origin. */
export function usableUntil(freshness: Freshness): number {
  return Math.max(freshness.freshUntil, freshness.staleWhileRevalidateUntil, freshness.staleIfErrorUntil);
}

// Revalidations never carry client headers; the policy only needs a plain GET.
const REQUEST: CachePolicy.Request = { method: 'GET', url: '/', headers: {} };

/** A CachePolicy whose clock is `now`, so rules can be tested with a clock that moves. */
function policyAt(now: number, origin: OriginInfo): CachePolicy {
  class PolicyAt extends CachePolicy {
    now(): number {
      return now;
    }
  }
  // shared: we are a proxy cache (s-maxage, private, proxy-revalidate apply).
  // cacheHeuristic 0: a silent origin gets defaultTtl, not a guess from Last-Modified.
  return new PolicyAt(REQUEST, { status: 200, headers: toHeaders(origin) }, { shared: true, cacheHeuristic: 0 });
}

function verdict(policy: CachePolicy, origin: OriginInfo, now: number, settings: FreshnessSettings): ResponseVerdict {
  let storable = true;
  let lifetimeMs = settings.defaultTtlMs;
  let mustRevalidate = false;
  let swrMs = settings.staleWhileRevalidateMs;
  let sieMs = settings.staleIfErrorMs;

  if (!settings.ignoreOriginCacheControl) {
    // The library's parse of Cache-Control; the decisions below are ours.
    const directives: Record<string, string | boolean | undefined> = policy.toObject().rescc;
    const has = (name: string) => Object.hasOwn(directives, name);
    storable = policy.storable();
    const originSaysLifetime =
      has('max-age') || has('s-maxage') || has('no-cache') || has('proxy-revalidate') || origin.expires !== undefined;
    // maxAge() applies s-maxage > max-age > Expires, no-cache and proxy-revalidate; minus the Age already spent.
    if (originSaysLifetime) lifetimeMs = Math.max(0, policy.maxAge() - policy.age()) * 1000;
    mustRevalidate = has('must-revalidate') || has('proxy-revalidate') || has('no-cache');
    swrMs = seconds(directives['stale-while-revalidate']) ?? swrMs;
    sieMs = seconds(directives['stale-if-error']) ?? sieMs;
  }

  const ttlMs = Math.min(settings.maxTtlMs, Math.max(settings.minTtlMs, lifetimeMs));
  const freshUntil = now + ttlMs;
  return {
    storable,
    origin,
    freshness: {
      freshUntil,
      staleWhileRevalidateUntil: mustRevalidate ? freshUntil : freshUntil + swrMs,
      staleIfErrorUntil: mustRevalidate ? freshUntil : freshUntil + sieMs,
      mustRevalidate,
    },
  };
}

/** A directive's delta-seconds value in ms, or undefined when absent or not a number. */
function seconds(value: string | boolean | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? n * 1000 : undefined;
}

const HEADER_NAMES: ReadonlyArray<[keyof OriginInfo, string]> = [
  ['etag', 'etag'],
  ['lastModified', 'last-modified'],
  ['cacheControl', 'cache-control'],
  ['expires', 'expires'],
  ['date', 'date'],
  ['age', 'age'],
];

function toHeaders(origin: OriginInfo): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [field, name] of HEADER_NAMES) {
    const value = origin[field];
    if (value !== undefined) headers[name] = value;
  }
  return headers;
}

function fromHeaders(headers: CachePolicy.Headers): OriginInfo {
  const origin: OriginInfo = {};
  for (const [field, name] of HEADER_NAMES) {
    const value = headers[name];
    if (typeof value === 'string') origin[field] = value;
    else if (Array.isArray(value)) origin[field] = value.join(', ');
  }
  return origin;
}
