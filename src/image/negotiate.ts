import { effectiveQuality, type Fit, type OutputFormat, type TransformSpec } from './options.ts';

/**
 * `f:auto`: the client's Accept header picks AVIF or WebP, else the source's
 * own format. The variant records the negotiated outcome, never the Accept
 * string, so the thousands of Accept spellings share a handful of entries.
 */

/**
 * The output a variant asks for. `avif+webp` (a client taking both) means AVIF
 * for still images and WebP for animations, since AVIF output cannot animate.
 * Undefined: the source's own format.
 */
export type VariantFormat = Exclude<OutputFormat, 'gif'> | 'avif+webp';

/** A transform with its format decided: what the cache keys and the transformer runs. */
export interface Variant {
  width?: number;
  height?: number;
  fit?: Fit;
  format?: VariantFormat;
  quality?: number;
}

export interface AcceptedFormats {
  avif: boolean;
  webp: boolean;
}

/** Accept headers longer than this are read only this far (browsers send ~100 characters). */
const MAX_ACCEPT_LENGTH = 2048;

/**
 * Which of AVIF and WebP the Accept header names explicitly with q > 0.
 * Wildcards (`image/*`, `*\/*`) do not count: browsers that send only those
 * do not necessarily decode either format.
 */
export function acceptedFormats(accept: string | undefined): AcceptedFormats {
  const out: AcceptedFormats = { avif: false, webp: false };
  if (accept === undefined) return out;
  for (const range of accept.slice(0, MAX_ACCEPT_LENGTH).split(',')) {
    const [type = '', ...params] = range.split(';');
    const mediaType = type.trim().toLowerCase();
    if (mediaType !== 'image/avif' && mediaType !== 'image/webp') continue;
    if (qualityOf(params) > 0) out[mediaType === 'image/avif' ? 'avif' : 'webp'] = true;
  }
  return out;
}

/** The q parameter of a media range (RFC 9110 §12.4.2); 1 when absent, 0 when malformed. */
function qualityOf(params: string[]): number {
  for (const param of params) {
    const [name = '', value = ''] = param.split('=');
    if (name.trim().toLowerCase() !== 'q') continue;
    const text = value.trim();
    if (!/^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(text)) return 0;
    return Number(text);
  }
  return 1;
}

/** Decides `f:auto` (if any) and drops what the decided format makes redundant. */
export function resolveVariant(spec: TransformSpec, accepted: AcceptedFormats): Variant {
  const { format: requested, quality: requestedQuality, ...size } = spec;
  let format: VariantFormat | undefined;
  if (requested === 'auto') {
    if (accepted.avif && accepted.webp) format = 'avif+webp';
    else if (accepted.avif) format = 'avif';
    else if (accepted.webp) format = 'webp';
  } else {
    format = requested;
  }
  const variant: Variant = { ...size };
  if (format !== undefined) variant.format = format;
  const quality = format === 'avif+webp' ? requestedQuality : effectiveQuality(format, requestedQuality);
  if (quality !== undefined) variant.quality = quality;
  return variant;
}

/** The variant id of the source as stored (the cache's own convention). */
export const SOURCE_VARIANT = '_';

/**
 * The canonical cache variant id: sorted `key:value` pairs, e.g.
 * `f:webp,fit:contain,h:200,w:300`; an empty variant is the source itself.
 */
export function variantId(variant: Variant): string {
  const parts: string[] = [];
  if (variant.format !== undefined) parts.push(`f:${variant.format}`);
  if (variant.fit !== undefined) parts.push(`fit:${variant.fit}`);
  if (variant.height !== undefined) parts.push(`h:${variant.height}`);
  if (variant.quality !== undefined) parts.push(`q:${variant.quality}`);
  if (variant.width !== undefined) parts.push(`w:${variant.width}`);
  return parts.length > 0 ? parts.join(',') : SOURCE_VARIANT;
}
