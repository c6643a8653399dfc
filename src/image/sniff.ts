import type { ImageFormat, SniffedType } from './types.ts';

/**
 * Decides an image type from its leading bytes only. A claimed Content-Type or
 * file name is never consulted: upstreams lie, and serving text/html or SVG
 * under an image/* type we did not check would be stored XSS.
 *
 * Only the raster formats the prebuilt sharp decodes are recognised; anything
 * else (HEIC, BMP, ICO, JPEG 2000, JPEG XL, SVG, HTML, PDF, empty…) is
 * undefined. Binary magic is checked at fixed offsets, so text inside a binary
 * file (e.g. "<svg" in a WebP chunk) cannot change the answer.
 *
 * Works on a prefix too: every read is bounds-checked, and a buffer too short
 * to hold a signature is simply not recognised.
 */
export function sniffImageType(buf: Uint8Array): SniffedType | undefined {
  const format = sniffFormat(buf);
  return format === undefined ? undefined : { format, mime: MIME_BY_FORMAT[format] };
}

export const MIME_BY_FORMAT: Readonly<Record<ImageFormat, string>> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  gif: 'image/gif',
  webp: 'image/webp',
  avif: 'image/avif',
  tiff: 'image/tiff',
};

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] as const;
const JPEG_SOI = [0xff, 0xd8, 0xff] as const;
const TIFF_LE = [0x49, 0x49, 0x2a, 0x00] as const; // "II*\0"
const TIFF_BE = [0x4d, 0x4d, 0x00, 0x2a] as const; // "MM\0*"

/** Brands that mark an ISO-BMFF file as AVIF: still images and image sequences. */
const AVIF_BRANDS: ReadonlySet<string> = new Set(['avif', 'avis']);

function sniffFormat(buf: Uint8Array): ImageFormat | undefined {
  if (startsWith(buf, 0, JPEG_SOI)) return 'jpeg';
  if (startsWith(buf, 0, PNG_SIGNATURE)) return 'png';
  if (asciiAt(buf, 0, 6) === 'GIF87a' || asciiAt(buf, 0, 6) === 'GIF89a') return 'gif';
  if (asciiAt(buf, 0, 4) === 'RIFF' && asciiAt(buf, 8, 4) === 'WEBP') return 'webp';
  if (startsWith(buf, 0, TIFF_LE) || startsWith(buf, 0, TIFF_BE)) return 'tiff';
  if (isAvif(buf)) return 'avif';
  return undefined;
}

/**
 * An AVIF file starts with an ISO-BMFF `ftyp` box: size (u32 BE), "ftyp",
 * major brand, minor version (u32), then compatible brands up to the box end.
 * HEIC/HEIF files share the container but lack the avif/avis brands.
 */
function isAvif(buf: Uint8Array): boolean {
  if (asciiAt(buf, 4, 4) !== 'ftyp') return false;
  const boxSize = readU32BE(buf, 0);
  // 16 = size + type + major brand + minor version. Size 0 ("to end of file")
  // and 1 (64-bit size) are legal for boxes in general but never used for ftyp.
  if (boxSize === undefined || boxSize < 16) return false;
  if (AVIF_BRANDS.has(asciiAt(buf, 8, 4) ?? '')) return true;
  // Only scan compatible brands that are both inside the box and inside the buffer.
  const end = Math.min(boxSize, buf.length);
  for (let offset = 16; offset + 4 <= end; offset += 4) {
    if (AVIF_BRANDS.has(asciiAt(buf, offset, 4) ?? '')) return true;
  }
  return false;
}

function startsWith(buf: Uint8Array, offset: number, bytes: readonly number[]): boolean {
  if (buf.length < offset + bytes.length) return false;
  return bytes.every((byte, i) => buf[offset + i] === byte);
}

/** The bytes at [offset, offset+length) as Latin-1 text, or undefined if the buffer is too short. */
function asciiAt(buf: Uint8Array, offset: number, length: number): string | undefined {
  if (buf.length < offset + length) return undefined;
  return String.fromCharCode(...buf.subarray(offset, offset + length));
}

function readU32BE(buf: Uint8Array, offset: number): number | undefined {
  if (buf.length < offset + 4) return undefined;
  return new DataView(buf.buffer, buf.byteOffset + offset, 4).getUint32(0, false);
}
