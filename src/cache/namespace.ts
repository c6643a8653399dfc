import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { FORMAT_VERSION } from './cache-key.ts';

/**
 * A fingerprint of everything that changes the bytes a variant is made into:
 * the entry format, sharp and every library version it ships (libvips and the
 * encoders: a new mozjpeg writes different JPEGs), and `extra`, which the
 * composition root fills with whatever else shapes variants (e.g. preset
 * definitions). Variant keys include it, so an upgrade or a new preset
 * invalidates old variants instead of serving them.
 */
export function namespaceFingerprint(extra = ''): string {
  // Code-unit order, not localeCompare: the same on every machine, and no ICU collator (about 6 MB per process).
  const versions = Object.entries(sharp.versions as Record<string, string | undefined>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash('sha256')
    .update(JSON.stringify({ format: FORMAT_VERSION, versions, extra }))
    .digest('hex')
    .slice(0, 32);
}
