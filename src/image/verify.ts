import sharp from 'sharp';
import type { Metadata, Sharp } from 'sharp';
import { FastImageCacheError } from '../errors.ts';
import { readJpegHeader } from './jpeg-header.ts';
import { sniffImageType } from './sniff.ts';
import type { ImageFormat, SniffedType, VerifiedImage } from './types.ts';

export interface VerifyImageOptions {
  /** Formats to accept (default: all that sniffImageType knows). Others are not_an_image. */
  allowedFormats?: readonly ImageFormat[];
  /** Largest pixel count of one frame, checked from the header before decoding (default: sharp's 268 MP). */
  maxPixels?: number;
  /** Most frames (pages) an image may have (default: no limit). Over it: too_large. */
  maxFrames?: number;
}

/** What sharp's metadata() calls each format; libheif decodes AVIF, so sharp says 'heif'. */
const SHARP_FORMAT: Readonly<Record<ImageFormat, string>> = {
  jpeg: 'jpeg',
  png: 'png',
  gif: 'gif',
  webp: 'webp',
  avif: 'heif',
  tiff: 'tiff',
};

/** What inspectImage() tells of an image's header: the fields of sharp's metadata() a transform and the strip use. */
export type InspectedHeader = Pick<Metadata, 'format' | 'width' | 'height' | 'pages' | 'pageHeight' | 'orientation' | 'icc'>;

/** sharp's limitInputPixels when none is given (0x3FFF squared). */
const SHARP_DEFAULT_PIXEL_LIMIT = 0x3fff * 0x3fff;

/** sharp/libvips messages that mean "too big to decode", not "broken". */
const LIMIT_ERROR = /exceeds (?:the )?(?:pixel|channel) limit|security limit exceeded|image too large/i;

/**
 * Proves that `buf` is a decodable raster image of a supported type.
 *
 * The type comes from the magic bytes only; sharp then decodes every pixel
 * (metadata() alone succeeds on many truncated or corrupt files). Sharp's
 * default limitInputPixels stays on: pixel bombs are refused from the header,
 * before any allocation. Throws FastImageCacheError: not_an_image for unknown,
 * disallowed, truncated or corrupt input; too_large for images over sharp's
 * pixel/channel limits.
 */
export async function verifyImage(buf: Buffer, opts: VerifyImageOptions = {}): Promise<VerifiedImage> {
  const sniffed = sniffAllowed(buf, opts);
  const { image, meta } = await checkHeader(buf, sniffed, opts);
  await withSharpErrors(() => decodeAllPixels(image, sniffed.format, meta));
  checkComplete(buf, sniffed);
  return { format: sniffed.format, mime: sniffed.mime, width: meta.width, height: meta.height };
}

/**
 * Everything verifyImage checks except decoding the pixels: the type from
 * the magic bytes, the allowed formats, the header (pixel and frame limits,
 * the decoder agreeing with the magic bytes) and, for JPEG, that the file is
 * not cut short. For a source about to be transformed anyway: the transform
 * decodes it (failing on the same decoder warnings), so it is decoded once.
 * A plain JPEG's header is read from its segments (readJpegHeader) instead of
 * by sharp's metadata(), a trip through the thread pool of about 1.2 ms on
 * every cold resize of a photo.
 */
export async function inspectImage(buf: Buffer, opts: VerifyImageOptions = {}): Promise<VerifiedImage & { header: InspectedHeader }> {
  const sniffed = sniffAllowed(buf, opts);
  const quick = sniffed.format === 'jpeg' ? inspectJpegSegments(buf, sniffed, opts) : undefined;
  if (quick !== undefined) return quick;
  const { meta } = await checkHeader(buf, sniffed, opts);
  checkComplete(buf, sniffed);
  return { format: sniffed.format, mime: sniffed.mime, width: meta.width, height: meta.height, header: meta };
}

/**
 * inspectImage() of a plain JPEG (`sniffed` as one) without sharp: the
 * header from its segments (readJpegHeader), the same checks. Undefined for a
 * JPEG that reader does not vouch for: sharp's metadata() decides those.
 */
function inspectJpegSegments(buf: Buffer, sniffed: SniffedType, opts: VerifyImageOptions): (VerifiedImage & { header: InspectedHeader }) | undefined {
  const jpeg = readJpegHeader(buf);
  if (jpeg === undefined) return undefined;
  const limit = opts.maxPixels ?? SHARP_DEFAULT_PIXEL_LIMIT;
  if (limit > 0 && jpeg.width * jpeg.height > limit) {
    throw new FastImageCacheError('too_large', `${jpeg.width}x${jpeg.height} exceeds the pixel limit (${limit})`);
  }
  checkComplete(buf, sniffed);
  const header: InspectedHeader = {
    format: 'jpeg',
    width: jpeg.width,
    height: jpeg.height,
    ...(jpeg.orientation === undefined ? {} : { orientation: jpeg.orientation }),
    ...(jpeg.icc === undefined ? {} : { icc: jpeg.icc }),
  };
  return { format: sniffed.format, mime: sniffed.mime, width: jpeg.width, height: jpeg.height, header };
}

/** The type from the magic bytes, if it is one of the allowed formats. */
function sniffAllowed(buf: Buffer, opts: VerifyImageOptions): SniffedType {
  const sniffed = sniffImageType(buf);
  if (sniffed === undefined) {
    throw new FastImageCacheError('not_an_image', 'magic bytes match no supported image format');
  }
  if (opts.allowedFormats !== undefined && !opts.allowedFormats.includes(sniffed.format)) {
    throw new FastImageCacheError('not_an_image', `format ${sniffed.format} is not allowed`);
  }
  return sniffed;
}

/** The header as sharp reads it, for a file whose magic bytes said `sniffed` (sniffAllowed). */
async function checkHeader(buf: Buffer, sniffed: SniffedType, opts: VerifyImageOptions): Promise<{ image: Sharp; meta: Metadata }> {

  // failOn 'warning' is sharp's default, spelled out because truncation often
  // surfaces only as a decoder warning (libjpeg "premature end of data").
  const image = sharp(buf, { failOn: 'warning', ...(opts.maxPixels === undefined ? {} : { limitInputPixels: opts.maxPixels }) });
  const meta = await withSharpErrors(() => image.metadata());
  checkAgreesWithSniff(sniffed, meta);
  const frames = meta.pages ?? 1;
  if (opts.maxFrames !== undefined && frames > opts.maxFrames) {
    throw new FastImageCacheError('too_large', `${frames} frames, limit ${opts.maxFrames}`);
  }
  return { image, meta };
}

/** Structural completeness the decoder may not notice (see decodeAllPixels). */
function checkComplete(buf: Buffer, sniffed: SniffedType): void {
  if (sniffed.format === 'jpeg' && !jpegEndsAfterLastScan(buf)) {
    throw new FastImageCacheError('not_an_image', 'JPEG has no end-of-image marker after its last scan (truncated)');
  }
}

/**
 * Decodes the whole (first) image while allocating only a 64x64 result.
 *
 * Shrink-on-load is switched off, except for WebP and JPEG, with an identity
 * extract (sharp skips shrink-on-load when a pre-resize extract is set):
 * measured on the corpus, JPEG shrink-on-load left the last rows unread, so
 * files cut in their final 1% (and a lossless JPEG cut at 90%) still
 * "decoded". A truncated JPEG lacks its end-of-image marker, so
 * jpegEndsAfterLastScan() refuses those first and JPEG keeps the cheap path
 * (5 MP: ~10 ms instead of ~55 ms; it is the check of every cold request).
 * libwebp decodes the whole frame even when scaling, so WebP keeps the cheap
 * path (16.8 MP WebP: ~70 ms instead of ~280 ms) and still refused all 520
 * truncations tried.
 *
 * No rotate(): orientation does not affect validity, and rotating by 90°
 * before resizing would need the full image in memory.
 */
async function decodeAllPixels(image: Sharp, format: ImageFormat, meta: Metadata): Promise<void> {
  const pipeline =
    format === 'webp' || format === 'jpeg' ? image : image.extract({ left: 0, top: 0, width: meta.width, height: meta.height });
  await pipeline.resize(64, 64, { fit: 'inside', withoutEnlargement: true }).raw().toBuffer();
}

/**
 * True when an end-of-image marker (FF D9) follows the last start-of-scan
 * (FF DA). Entropy-coded data cannot contain FF D9 (0xFF is stuffed), and an
 * embedded EXIF thumbnail's markers come before the main image's scans, so a
 * file cut anywhere after its first scan fails this. Bytes after EOI are fine.
 */
function jpegEndsAfterLastScan(buf: Buffer): boolean {
  const lastScan = buf.lastIndexOf(JPEG_SOS);
  return lastScan >= 0 && buf.lastIndexOf(JPEG_EOI) > lastScan;
}
const JPEG_SOS = Buffer.from([0xff, 0xda]);
const JPEG_EOI = Buffer.from([0xff, 0xd9]);

/** Defence in depth: the decoder libvips picked must be the one the magic bytes named. */
function checkAgreesWithSniff(sniffed: SniffedType, meta: Metadata): void {
  if (meta.format !== SHARP_FORMAT[sniffed.format]) {
    throw new FastImageCacheError(
      'not_an_image',
      `magic bytes say ${sniffed.format} but sharp reads ${meta.format}`,
    );
  }
  if (!(meta.width > 0 && meta.height > 0)) {
    throw new FastImageCacheError('not_an_image', `bad dimensions ${meta.width}x${meta.height}`);
  }
}

async function withSharpErrors<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof FastImageCacheError) throw err;
    const message = err instanceof Error ? err.message : String(err);
    const code = LIMIT_ERROR.test(message) ? 'too_large' : 'not_an_image';
    throw new FastImageCacheError(code, `sharp: ${message}`, { cause: err });
  }
}
