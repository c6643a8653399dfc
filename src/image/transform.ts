import sharp from 'sharp';
import type { Metadata, Sharp } from 'sharp';
import { FastImageCacheError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Variant } from './negotiate.ts';
import type { OutputFormat } from './options.ts';
import { MIME_BY_FORMAT, sniffImageType } from './sniff.ts';
import { sharpError } from './sharp-errors.ts';
import { isSrgbProfile } from './srgb-profile.ts';
import { restoreInput, stripJpegForTransforms, stripMetadataLosslessly } from './strip-metadata.ts';
import type { ImageFormat } from './types.ts';
import type { InspectedHeader } from './verify.ts';

export interface TransformSettings {
  /** Pixels decoded at most: one frame, or all frames of a kept animation together. Checked from the header. */
  maxSourcePixels: number;
  /** Frames (pages) a source may have. */
  maxSourceFrames: number;
  /** Strip EXIF, XMP, IPTC and the ICC profile (converting to sRGB). */
  stripMetadata: boolean;
  /** Processing deadline (sharp's timeout has whole-second granularity). */
  timeoutMs: number;
  logger?: Logger | undefined;
}

export interface TransformedImage {
  body: Buffer;
  contentType: string;
  format: OutputFormat;
  width: number;
  /** One frame's height for animations. */
  height: number;
  frames: number;
}

export const MIME_BY_OUTPUT: Readonly<Record<OutputFormat, string>> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  avif: 'image/avif',
  gif: 'image/gif',
};

/**
 * libaom effort 1 (of 0-9; sharp's default is 4): measured on a 12 MP photo,
 * 3.9 s instead of 32 s for 4 % more bytes. imgproxy's default speed 8 is the same.
 */
const AVIF_EFFORT = 1;

/** Formats whose animations sharp reads and writes frame by frame. (APNG decodes as one frame; TIFF pages are not frames.) */
const ANIMATED_FORMATS: ReadonlySet<ImageFormat> = new Set(['gif', 'webp']);

/** What the source becomes when no format is asked for: itself, except TIFF, which browsers cannot show. */
function keptFormat(source: ImageFormat): OutputFormat {
  return source === 'tiff' ? 'png' : source;
}

/**
 * What a transform needs from sharp's metadata() of its source. Kept with a
 * stored source until its transform runs, so it holds none of the header's
 * EXIF, XMP or profile bytes.
 */
export type SourceHeader = Pick<Metadata, 'format' | 'width' | 'height' | 'pages' | 'pageHeight' | 'orientation'>;

export function sourceHeader(meta: InspectedHeader): SourceHeader {
  return {
    format: meta.format,
    width: meta.width,
    height: meta.height,
    ...(meta.pages === undefined ? {} : { pages: meta.pages }),
    ...(meta.pageHeight === undefined ? {} : { pageHeight: meta.pageHeight }),
    ...(meta.orientation === undefined ? {} : { orientation: meta.orientation }),
  };
}

/**
 * Applies a variant to a (verified) source image: EXIF orientation, resize,
 * sRGB conversion, metadata stripping, encoding. Animated GIF/WebP stay
 * animated when the output format can animate and the frames fit the pixel
 * limit together; otherwise the first frame is used. Throws only
 * FastImageCacheError: too_large (limits, timeout), not_an_image (decoding).
 */
export async function transformImage(
  source: Buffer,
  variant: Variant,
  settings: TransformSettings,
  /** sharp's metadata() of `source`, when already read (saves a pass through the thread pool). */
  knownHeader?: SourceHeader,
): Promise<TransformedImage> {
  const sniffed = sniffImageType(source);
  if (sniffed === undefined) throw new FastImageCacheError('not_an_image', 'transform source matches no supported format');

  const header = knownHeader ?? (await run(() => sharp(source, { limitInputPixels: settings.maxSourcePixels }).metadata()));
  const frames = header.pages ?? 1;
  if (frames > settings.maxSourceFrames) {
    throw new FastImageCacheError('too_large', `${frames} frames, limit ${settings.maxSourceFrames}`);
  }

  const isAnimation = ANIMATED_FORMATS.has(sniffed.format) && frames > 1;
  const format = outputFormat(variant, sniffed.format, isAnimation);

  const frameHeight = header.pageHeight ?? header.height;
  const animate =
    isAnimation && (format === 'gif' || format === 'webp') && header.width * frameHeight * frames <= settings.maxSourcePixels;

  try {
    return await encode(source, variant, format, animate, settings);
  } catch (err) {
    if (!animate || (err instanceof FastImageCacheError && err.detail?.startsWith('timeout'))) throw err;
    // Some animations cannot be re-encoded whole (WebP caps the stacked frame
    // height at 16383 px in some libvips versions): serve the first frame.
    settings.logger?.warn({ err, format, frames }, 'animation could not be re-encoded; serving its first frame');
    return encode(source, variant, format, false, settings);
  }
}

/** Quality of re-encoded sources (passthrough needing orientation or colour conversion): high, as later variants re-encode again. */
const SOURCE_QUALITY: Readonly<Partial<Record<OutputFormat, number>>> = { jpeg: 90, webp: 90, avif: 60 };

/**
 * What a stored source is for. 'serve': passthrough may serve it, so it is
 * fully clean. 'transform': it was fetched for a variant, so a JPEG keeps its
 * ICC profile and orientation (stripJpegForTransforms) instead of being
 * re-encoded, which costs about as much as the resize itself; passthrough
 * then serves a cleaned variant of it (ImageProcessor.needsPassthroughClean).
 */
export type SourceUse = 'serve' | 'transform';

/**
 * The source as the cache should keep it when metadata is stripped: metadata
 * segments dropped byte for byte where that is enough, else re-encoded in its
 * own format (TIFF as PNG) at high quality with the orientation applied and
 * colours converted to sRGB; animations stay animated. Expects a source that
 * passed inspectImage() or verifyImage(); a re-encode decodes it strictly.
 */
export async function cleanSource(
  source: Buffer,
  settings: TransformSettings,
  use: SourceUse = 'serve',
  /** sharp's metadata() of `source` (or inspectImage()'s header), when already read. */
  knownHeader?: InspectedHeader,
  /** `source` is the caller's own (a download nothing else holds): the result may be built inside it. */
  reuseSource = false,
): Promise<{ body: Buffer; contentType: string; header?: SourceHeader }> {
  const sniffed = sniffImageType(source);
  if (sniffed === undefined) throw new FastImageCacheError('not_an_image', 'source matches no supported format');
  const header = knownHeader ?? (await run(() => sharp(source, { limitInputPixels: settings.maxSourcePixels }).metadata()));

  if (use === 'transform' && sniffed.format === 'jpeg') {
    const kept = stripJpegForTransforms(source, header.orientation, reuseSource);
    // Not read back with a second metadata() (about 1 ms of every cold resize): the walker copies the frame
    // header and every scan byte for byte, and sharp reads its one-tag orientation block back in the tests. The
    // transform that follows decodes the result with failOn 'warning': a rebuild that does not decode cleanly is refused.
    if (kept !== undefined) return { body: kept, contentType: MIME_BY_FORMAT.jpeg, header: sourceHeader(header) };
  } else {
    // A JPEG whose profile only restates sRGB needs no conversion: dropped losslessly, not re-encoded (a full decode).
    const srgbProfile = sniffed.format === 'jpeg' && header.icc !== undefined && isSrgbProfile(header.icc);
    const stripped =
      header.icc === undefined || srgbProfile
        ? stripMetadataLosslessly(source, sniffed.format, header.orientation, reuseSource, srgbProfile)
        : undefined;
    if (stripped !== undefined) {
      // Passthrough serves this as it is: check that it still reads as the same image, with no profile left.
      const check = await run(() => sharp(stripped, { limitInputPixels: settings.maxSourcePixels }).metadata());
      if (check.format === header.format && check.width === header.width && check.height === header.height && check.icc === undefined) {
        return { body: stripped, contentType: MIME_BY_FORMAT[sniffed.format], header: sourceHeader(check) };
      }
      restoreInput(stripped); // the re-encode below reads the source as fetched
      settings.logger?.warn({ format: sniffed.format }, 'lossless metadata strip changed the image header; re-encoding instead');
    }
  }
  const format = keptFormat(sniffed.format);
  const quality = SOURCE_QUALITY[format];
  const stripAll = { ...settings, stripMetadata: true };
  try {
    const made = await transformImage(source, { format: format === 'gif' ? undefined : format, ...(quality ? { quality } : {}) }, stripAll);
    return { body: made.body, contentType: made.contentType };
  } catch (err) {
    // Over the format's own size limit (AVIF and WebP stop near 16383 px, which their decoders can exceed): lossless PNG has none.
    if (!(err instanceof FastImageCacheError && err.code === 'too_large' && format !== 'png' && !err.detail?.startsWith('timeout'))) throw err;
    settings.logger?.info({ format, detail: err.detail }, 'source too large for its own format; keeping it as PNG');
    const made = await transformImage(source, { format: 'png' }, stripAll);
    return { body: made.body, contentType: made.contentType };
  }
}

function outputFormat(variant: Variant, source: ImageFormat, isAnimation: boolean): OutputFormat {
  if (variant.format === 'avif+webp') return isAnimation ? 'webp' : 'avif';
  return variant.format ?? keptFormat(source);
}

async function encode(
  source: Buffer,
  variant: Variant,
  format: OutputFormat,
  animated: boolean,
  settings: TransformSettings,
): Promise<TransformedImage> {
  let image: Sharp = sharp(source, {
    limitInputPixels: settings.maxSourcePixels,
    animated,
    autoOrient: true, // orientation first, so stripping EXIF cannot turn the picture
    failOn: 'warning',
  }).timeout({ seconds: Math.max(1, Math.ceil(settings.timeoutMs / 1000)) });

  if (variant.width !== undefined || variant.height !== undefined) {
    image = image.resize({ width: variant.width, height: variant.height, fit: variant.fit ?? 'cover' });
  }
  // Without keepMetadata, sharp converts to sRGB through any embedded profile and writes no EXIF/XMP/IPTC/ICC.
  if (!settings.stripMetadata) image = image.keepMetadata();

  const quality = variant.quality;
  switch (format) {
    case 'jpeg':
      // JPEG has no alpha: transparent areas become white rather than black.
      image = image.flatten({ background: '#ffffff' }).jpeg(quality === undefined ? {} : { quality });
      break;
    case 'png':
      image = image.png();
      break;
    case 'webp':
      image = image.webp(quality === undefined ? {} : { quality });
      break;
    case 'avif':
      image = image.avif({ effort: AVIF_EFFORT, ...(quality === undefined ? {} : { quality }) });
      break;
    case 'gif':
      image = image.gif();
      break;
  }

  const { data, info } = await run(() => image.toBuffer({ resolveWithObject: true }));
  return {
    body: data,
    contentType: MIME_BY_OUTPUT[format],
    format,
    width: info.width,
    height: info.pageHeight ?? info.height,
    frames: info.pages ?? 1,
  };
}

async function run<T>(task: () => Promise<T>): Promise<T> {
  try {
    return await task();
  } catch (err) {
    throw sharpError(err);
  }
}
