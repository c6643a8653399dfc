import { FastImageCacheError } from '../errors.ts';

/**
 * Image request options: the `{options}` URL segment (`w:300,f:webp`) and the
 * library's object form, parsed, checked and normalized into a TransformSpec
 * whose canonical id is the cache variant. Equal meanings give equal ids, so
 * `dpr:2,w:150` and `w:300` share one cache entry.
 */

/** Formats the proxy encodes. TIFF and SVG are inputs only: browsers do not show TIFF, and SVG can carry script. */
export const OUTPUT_FORMATS = ['jpeg', 'png', 'webp', 'avif', 'gif'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** What a client may ask for with `f:`; `auto` negotiates AVIF/WebP from Accept. (GIF is kept, never chosen.) */
export const REQUESTABLE_FORMATS = ['jpeg', 'png', 'webp', 'avif', 'auto'] as const;
export type RequestedFormat = (typeof REQUESTABLE_FORMATS)[number];

export const FITS = ['cover', 'contain', 'inside', 'outside', 'fill'] as const;
export type Fit = (typeof FITS)[number];

/** sharp's encoder defaults, which we use: a `q` equal to them changes nothing. */
export const DEFAULT_QUALITY: Readonly<Record<'jpeg' | 'webp' | 'avif', number>> = { jpeg: 80, webp: 80, avif: 50 };

export const MAX_DPR = 4;
/** Longest options segment accepted; real ones are a few dozen characters. */
export const MAX_OPTIONS_LENGTH = 256;

/** The options of one request, as the library takes them (and as the URL segment parses). */
export interface ImageOptions {
  /** A named format (preset) from the `presets` setting. */
  preset?: string;
  width?: number;
  height?: number;
  fit?: Fit;
  format?: RequestedFormat;
  quality?: number;
  /** Device pixel ratio, 1 to 4: multiplies width and height. */
  dpr?: number;
  /** UNIX time (seconds) after which a signed URL answers 410 expired. */
  expires?: number;
}

/** A preset as configured: any of the size and format fields. */
export interface PresetDefinition {
  width?: number | undefined;
  height?: number | undefined;
  fit?: Fit | undefined;
  format?: RequestedFormat | undefined;
  quality?: number | undefined;
}

export interface OptionRules {
  presets: Readonly<Record<string, PresetDefinition>>;
  /** When false, only `p:` (and `exp:`) may be used. */
  allowAdHoc: boolean;
  maxWidth: number;
  maxHeight: number;
}

/**
 * A normalized transform: defaults dropped, dpr folded into the sizes.
 * `format` undefined means "the source's own format"; `fit` is present only
 * where it changes the output.
 */
export interface TransformSpec {
  width?: number;
  height?: number;
  fit?: Fit;
  format?: RequestedFormat;
  quality?: number;
}

/** URL key → option name. */
const URL_KEYS = {
  p: 'preset',
  w: 'width',
  h: 'height',
  fit: 'fit',
  f: 'format',
  q: 'quality',
  dpr: 'dpr',
  exp: 'expires',
} as const satisfies Record<string, keyof ImageOptions>;
type UrlKey = keyof typeof URL_KEYS;

const URL_KEY_BY_OPTION = Object.fromEntries(Object.entries(URL_KEYS).map(([k, v]) => [v, k])) as Record<
  keyof ImageOptions,
  UrlKey
>;

const PRESET_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const INTEGER = /^(0|[1-9][0-9]{0,9})$/;
const DPR = /^[0-9](\.[0-9]{1,2})?$/;

function bad(key: string, why: string): FastImageCacheError {
  return new FastImageCacheError('bad_options', `${key}: ${why}`);
}

/**
 * Parses the options segment (`_` or comma-separated `key:value` pairs, any
 * order). Checks syntax only: unknown keys, duplicates, empty items and
 * malformed values are bad_options naming the key; ranges are checked by
 * normalizeOptions so the library's object form gets the same checks.
 */
export function parseOptionsSegment(segment: string): ImageOptions {
  if (segment === '_') return {};
  if (segment.length > MAX_OPTIONS_LENGTH) throw bad('options', `longer than ${MAX_OPTIONS_LENGTH} characters`);
  const out: Record<string, unknown> = {};
  for (const item of segment.split(',')) {
    const colon = item.indexOf(':');
    if (colon <= 0) throw bad(printable(item) || '(empty)', 'expected key:value');
    const key = item.slice(0, colon);
    const value = item.slice(colon + 1);
    if (!Object.hasOwn(URL_KEYS, key)) throw bad(printable(key), 'unknown option');
    const name = URL_KEYS[key as UrlKey];
    if (name in out) throw bad(key, 'given twice');
    out[name] = parseValue(key as UrlKey, value);
  }
  return out;
}

function parseValue(key: UrlKey, value: string): string | number {
  switch (key) {
    case 'p':
      if (!PRESET_NAME.test(value)) throw bad(key, 'not a preset name');
      return value;
    case 'fit':
    case 'f':
      if (!/^[a-z]{1,16}$/.test(value)) throw bad(key, 'malformed value');
      return value; // the set of values is checked in normalizeOptions
    case 'dpr':
      if (!DPR.test(value)) throw bad(key, 'expected a number such as 2 or 1.5');
      return Number(value);
    case 'w':
    case 'h':
    case 'q':
    case 'exp':
      if (!INTEGER.test(value)) throw bad(key, 'expected a whole number');
      return Number(value);
  }
}

/** A short, log-safe rendering of client text. */
function printable(text: string): string {
  return text.slice(0, 32).replace(/[^\x20-\x7e]/g, '?');
}

/**
 * Checks options against the rules and returns the normalized transform.
 * Accepts anything (the library's callers may be plain JavaScript) and throws
 * only FastImageCacheError('bad_options') with the offending key named.
 */
export function normalizeOptions(options: unknown, rules: OptionRules): TransformSpec {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object' || Array.isArray(options)) throw bad('options', 'expected an object');
  const given = options as Record<string, unknown>;
  for (const name of Object.keys(given)) {
    if (!Object.hasOwn(URL_KEY_BY_OPTION, name)) throw bad(printable(name), 'unknown option');
  }
  const opt = {
    preset: optionalString(given, 'preset'),
    width: optionalInteger(given, 'width'),
    height: optionalInteger(given, 'height'),
    fit: optionalEnum(given, 'fit', FITS),
    format: optionalEnum(given, 'format', REQUESTABLE_FORMATS),
    quality: optionalInteger(given, 'quality'),
    dpr: optionalNumber(given, 'dpr'),
  };
  optionalInteger(given, 'expires'); // checked when the request is served; here only its type

  const adHoc = (['width', 'height', 'fit', 'format', 'quality', 'dpr'] as const).filter((k) => opt[k] !== undefined);
  if (adHoc.length > 0 && !rules.allowAdHoc) {
    throw bad(URL_KEY_BY_OPTION[adHoc[0] as keyof ImageOptions], 'ad-hoc options are turned off (transforms.allowAdHoc); use p:NAME');
  }

  let preset: PresetDefinition = {};
  if (opt.preset !== undefined) {
    if (!PRESET_NAME.test(opt.preset) || !Object.hasOwn(rules.presets, opt.preset)) throw bad('p', 'no such preset');
    preset = rules.presets[opt.preset] ?? {};
  }

  const dpr = opt.dpr ?? 1;
  if (!(dpr >= 1 && dpr <= MAX_DPR)) throw bad('dpr', `out of range 1..${MAX_DPR}`);
  if (opt.quality !== undefined && !(opt.quality >= 1 && opt.quality <= 100)) throw bad('q', 'out of range 1..100');

  const scaled = (value: number | undefined): number | undefined =>
    value === undefined ? undefined : Math.round(value * dpr);
  const width = scaled(opt.width ?? preset.width);
  const height = scaled(opt.height ?? preset.height);
  if (width !== undefined && !(width >= 1 && width <= rules.maxWidth)) {
    throw bad(opt.width !== undefined ? 'w' : 'p', `width ${width} out of range 1..${rules.maxWidth}`);
  }
  if (height !== undefined && !(height >= 1 && height <= rules.maxHeight)) {
    throw bad(opt.height !== undefined ? 'h' : 'p', `height ${height} out of range 1..${rules.maxHeight}`);
  }

  const spec: TransformSpec = {};
  if (width !== undefined) spec.width = width;
  if (height !== undefined) spec.height = height;
  const fit = effectiveFit(width, height, opt.fit ?? preset.fit);
  if (fit !== undefined) spec.fit = fit;
  const format = opt.format ?? preset.format;
  if (format !== undefined) spec.format = format;
  const quality = effectiveQuality(format, opt.quality ?? preset.quality);
  if (quality !== undefined) spec.quality = quality;
  return spec;
}

/**
 * `fit` only matters with both sizes given (cover is sharp's default); with
 * one size every fit but `fill` keeps the aspect ratio, and `fill` keeps the
 * source's other dimension.
 */
function effectiveFit(width: number | undefined, height: number | undefined, fit: Fit | undefined): Fit | undefined {
  if (width === undefined && height === undefined) return undefined;
  if (width !== undefined && height !== undefined) return fit === 'cover' ? undefined : fit;
  return fit === 'fill' ? 'fill' : undefined;
}

/** Drops a quality that changes nothing: the encoder's default, or any quality for PNG/GIF (lossless here). */
export function effectiveQuality(format: RequestedFormat | OutputFormat | undefined, quality: number | undefined): number | undefined {
  if (quality === undefined) return undefined;
  if (format === 'png' || format === 'gif') return undefined;
  if ((format === 'jpeg' || format === 'webp' || format === 'avif') && quality === DEFAULT_QUALITY[format]) return undefined;
  return quality;
}

function optionalString(given: Record<string, unknown>, name: keyof ImageOptions): string | undefined {
  const value = given[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw bad(URL_KEY_BY_OPTION[name], 'expected a string');
  return value;
}

function optionalNumber(given: Record<string, unknown>, name: keyof ImageOptions): number | undefined {
  const value = given[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw bad(URL_KEY_BY_OPTION[name], 'expected a number');
  return value;
}

function optionalInteger(given: Record<string, unknown>, name: keyof ImageOptions): number | undefined {
  const value = optionalNumber(given, name);
  if (value !== undefined && !Number.isSafeInteger(value)) throw bad(URL_KEY_BY_OPTION[name], 'expected a whole number');
  return value;
}

function optionalEnum<T extends string>(given: Record<string, unknown>, name: keyof ImageOptions, values: readonly T[]): T | undefined {
  const value = given[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !(values as readonly string[]).includes(value)) {
    throw bad(URL_KEY_BY_OPTION[name], `expected one of ${values.join('|')}`);
  }
  return value as T;
}

/** The URL segment for options given as an object (what `sign --options` and the library's sign() print). */
export function formatOptionsSegment(options: ImageOptions): string {
  const parts: string[] = [];
  for (const [name, key] of Object.entries(URL_KEY_BY_OPTION) as Array<[keyof ImageOptions, UrlKey]>) {
    const value = options[name];
    if (value !== undefined) parts.push(`${key}:${String(value)}`);
  }
  return parts.length === 0 ? '_' : parts.join(',');
}

/** Throws bad_options (naming the key) unless the server would accept this options segment. */
export function checkOptionsSegment(segment: string, rules: OptionRules): void {
  const transform = parseOptionsSegment(segment);
  delete transform.expires; // checked when the request is served
  normalizeOptions(transform, rules);
}
