import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { ConfigError, FastImageCacheError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { acceptedFormats, resolveVariant, SOURCE_VARIANT, variantId, type Variant } from './negotiate.ts';
import { normalizeOptions, type OptionRules, type PresetDefinition } from './options.ts';
import { ByteBudget, type ByteReservation } from './byte-budget.ts';
import { sniffImageType } from './sniff.ts';
import { carriesTransformOnlyMetadata } from './strip-metadata.ts';
import { looksLikeSvg, rasterizeSvg } from './svg.ts';
import { cleanSource, sourceHeader, transformImage, type SourceHeader, type TransformSettings } from './transform.ts';
import { defaultTransformConcurrency, TransformQueue } from './transform-queue.ts';
import type { ImageFormat } from './types.ts';
import { inspectImage, verifyImage } from './verify.ts';
import { sha256Hex } from '../hash.ts';

/** Variant id of a source cleaned for passthrough (see needsPassthroughClean); no options string spells it. */
export const CLEANED_SOURCE_VARIANT = 'src:clean';
/** Bump when transform code changes the bytes it makes, so stored variants are made again. */
const TRANSFORM_VERSION = 1;
/** Reserved for a source whose origin sent no Content-Length, until its body is in. */
const UNDECLARED_SOURCE_BYTES = 1024 * 1024;
/** Sources known to decode, remembered by SHA-256 (about 100 bytes each). */
const MAX_DECODED_REMEMBERED = 100_000;

export interface ImageProcessorSettings {
  presets: Readonly<Record<string, PresetDefinition>>;
  transforms: {
    allowAdHoc: boolean;
    maxWidth: number;
    maxHeight: number;
    /** 0: automatic (see defaultTransformConcurrency). */
    concurrency: number;
    queueSize: number;
    /** Bytes of fetched sources held at once until prepareSource() is done with them; 0 or absent: no limit. */
    sourceBytesInFlight?: number;
    timeoutMs: number;
  };
  maxSourcePixels: number;
  maxSourceFrames: number;
  stripMetadata: boolean;
  svg: 'refuse' | 'rasterize';
  inputFormats: readonly ImageFormat[];
  logger?: Logger | undefined;
}

/** What to serve for one request: the cache variant id and how to make it. */
export interface VariantPlan {
  /** Canonical id; `_` is the source bytes as fetched (no transform needed). */
  id: string;
  variant: Variant;
  /** The choice depended on the Accept header (`f:auto`): the response must say `Vary: Accept`. */
  varyAccept: boolean;
}

/**
 * The image side of the proxy, for the composition root: checks fetched
 * sources, turns request options into variants, and makes variants. All
 * decoding runs through one bounded queue.
 */
export class ImageProcessor {
  readonly queue: TransformQueue;
  /** Changes whenever stored variants would come out differently: the cache namespace. */
  readonly fingerprint: string;
  readonly #settings: ImageProcessorSettings;
  readonly #rules: OptionRules;
  /** The variant the current request asks for, seen by the loader the cache calls on its behalf. */
  readonly #request = new AsyncLocalStorage<VariantPlan>();
  /** SHA-256 of stored sources whose pixels decoded (insertion order: the oldest are forgotten first). */
  readonly #decoded = new Set<string>();
  /** Decodes running now, by SHA-256: a stampede on a source not yet decoded here (read from disk) decodes it once. */
  readonly #decoding = new Map<string, Promise<void>>();
  /** Headers read while preparing sources, by the very buffer stored (gone with it). */
  readonly #headers = new WeakMap<Buffer, SourceHeader>();
  /** Fetched sources held between download and prepareSource() (see reserveSourceBytes). */
  readonly #sourceBudget: ByteBudget;

  constructor(settings: ImageProcessorSettings) {
    checkPresets(settings);
    this.#settings = settings;
    this.#rules = {
      presets: settings.presets,
      allowAdHoc: settings.transforms.allowAdHoc,
      maxWidth: settings.transforms.maxWidth,
      maxHeight: settings.transforms.maxHeight,
    };
    this.queue = new TransformQueue({
      concurrency: settings.transforms.concurrency || defaultTransformConcurrency(),
      maxQueue: settings.transforms.queueSize,
    });
    this.#sourceBudget = new ByteBudget(settings.transforms.sourceBytesInFlight ?? 0);
    // Preset definitions are not part of it: variant ids spell out the expanded preset, so editing one changes its ids.
    this.fingerprint = createHash('sha256')
      .update(
        JSON.stringify({
          version: TRANSFORM_VERSION,
          stripMetadata: settings.stripMetadata,
          maxSourcePixels: settings.maxSourcePixels,
          sharp: sharp.versions,
        }),
      )
      .digest('hex')
      .slice(0, 16);
  }

  /** The variant for request options (the URL's, or the library's object) and the client's Accept header. */
  plan(options: unknown, accept: string | undefined): VariantPlan {
    const spec = normalizeOptions(options, this.#rules);
    const varyAccept = spec.format === 'auto';
    const variant = resolveVariant(spec, varyAccept ? acceptedFormats(accept) : { avif: false, webp: false });
    return { id: variantId(variant), variant, varyAccept };
  }

  /**
   * Holds room for a source about to be downloaded (its Content-Length, or a
   * guess when there is none: resize() the reservation to the body received).
   * Release it once prepareSource() is done with the body.
   */
  reserveSourceBytes(declaredBytes: number | undefined, signal?: AbortSignal): Promise<ByteReservation> {
    return this.#sourceBudget.acquire(declaredBytes ?? UNDECLARED_SOURCE_BYTES, signal);
  }

  /** Runs a cache lookup on behalf of `plan` (prepareSource then knows whether a transform will decode the source). */
  forRequest<T>(plan: VariantPlan, lookup: () => Promise<T>): Promise<T> {
    return this.#request.run(plan, lookup);
  }

  /**
   * A fetched source, checked: SVG rasterized to PNG (or refused), then the
   * type from the magic bytes, the input format switches, the pixel and frame
   * limits from the header, JPEG completeness, and a full decode. Returns what
   * the cache stores: with stripMetadata, the cleaned image (EXIF, XMP, IPTC
   * never reach the disk), which is also what passthrough (`_`) serves.
   *
   * Fetched for a variant, the pixels are not decoded here: the transform
   * that follows decodes them anyway, so a cold resize decodes once. Until a
   * transform or ensureDecoded() has decoded it, passthrough will not serve it.
   * A JPEG fetched for a variant also keeps its colour profile and
   * orientation rather than being re-encoded (see needsPassthroughClean).
   *
   * Takes `body` over (a download nothing else holds): a JPEG's cleaned
   * bytes may be built inside it, so the caller must not use it afterwards.
   */
  async prepareSource(body: Buffer): Promise<{ body: Buffer; contentType: string; decoded: boolean }> {
    const s = this.#settings;
    let bytes = body;
    let allowed = s.inputFormats;
    if (looksLikeSvg(body)) {
      if (s.svg !== 'rasterize') throw new FastImageCacheError('not_an_image', 'SVG source refused (svg: refuse)');
      bytes = await this.queue.run(() => rasterizeSvg(body, { timeoutMs: s.transforms.timeoutMs, maxPixels: s.maxSourcePixels }));
      allowed = ['png'];
    }
    const forVariant = (this.#request.getStore()?.id ?? SOURCE_VARIANT) !== SOURCE_VARIANT;
    const checks = { allowedFormats: allowed, maxPixels: s.maxSourcePixels, maxFrames: s.maxSourceFrames };
    return this.queue.run(async () => {
      if (!forVariant) {
        const image = await verifyImage(bytes, checks);
        const stored = s.stripMetadata
          ? await cleanSource(bytes, this.#transformSettings(), 'serve', undefined, true)
          : { body: bytes, contentType: image.mime };
        this.#rememberDecoded(sha256Hex(stored.body));
        return { body: stored.body, contentType: stored.contentType, decoded: true };
      }
      const image = await inspectImage(bytes, checks);
      const stored = s.stripMetadata
        ? await cleanSource(bytes, this.#transformSettings(), 'transform', image.header, true)
        : { body: bytes, contentType: image.mime, header: sourceHeader(image.header) };
      // The transform that follows gets this very buffer from the cache: it need not read the header again.
      if (stored.header !== undefined) this.#headers.set(stored.body, stored.header);
      return { body: stored.body, contentType: stored.contentType, decoded: false };
    });
  }

  /**
   * True when passthrough must not serve this stored source as it is: it
   * was fetched for a variant and kept its colour profile and orientation
   * (cleanSource 'transform'). Passthrough then serves the CLEANED_SOURCE
   * variant, made by cleanForPassthrough().
   */
  needsPassthroughClean(body: Buffer): boolean {
    return this.#settings.stripMetadata && carriesTransformOnlyMetadata(body);
  }

  /** The CLEANED_SOURCE variant: the stored source fully cleaned (decoded, so also checked). */
  async cleanForPassthrough(source: Buffer, sourceSha256: string): Promise<{ body: Buffer; contentType: string; decoded: true }> {
    const made = await this.queue.run(() => cleanSource(source, this.#transformSettings(), 'serve'));
    this.#rememberDecoded(sourceSha256);
    return { body: made.body, contentType: made.contentType, decoded: true };
  }

  /**
   * Before passthrough serves a stored source: decodes it unless this process
   * has already seen it decode (checked here, or by a transform). Throws
   * not_an_image (or too_large) when it does not.
   */
  async ensureDecoded(body: Buffer, sha256Hex: string): Promise<void> {
    if (this.#decoded.has(sha256Hex)) return;
    const running = this.#decoding.get(sha256Hex);
    if (running !== undefined) return running;
    const s = this.#settings;
    const decoding = this.queue
      .run(() => verifyImage(body, { maxPixels: s.maxSourcePixels, maxFrames: s.maxSourceFrames }))
      .then(() => {
        this.#rememberDecoded(sha256Hex);
      })
      .finally(() => this.#decoding.delete(sha256Hex));
    this.#decoding.set(sha256Hex, decoding);
    return decoding;
  }

  #rememberDecoded(sha256Hex: string): void {
    this.#decoded.delete(sha256Hex);
    this.#decoded.add(sha256Hex);
    if (this.#decoded.size > MAX_DECODED_REMEMBERED) {
      const oldest = this.#decoded.values().next().value;
      if (oldest !== undefined) this.#decoded.delete(oldest);
    }
  }

  #transformSettings(): TransformSettings {
    const s = this.#settings;
    return {
      maxSourcePixels: s.maxSourcePixels,
      maxSourceFrames: s.maxSourceFrames,
      stripMetadata: s.stripMetadata,
      timeoutMs: s.transforms.timeoutMs,
      logger: s.logger,
    };
  }

  /**
   * Makes a variant from its cached source (whose pixels this decodes, with
   * the same strictness as verifyImage: a source that fails is not_an_image).
   */
  async transform(source: Buffer, plan: VariantPlan, sourceSha256?: string): Promise<{ body: Buffer; contentType: string }> {
    if (plan.id === SOURCE_VARIANT) throw new FastImageCacheError('internal_error', 'the source variant is not transformed');
    const format = sniffImageType(source)?.format;
    // A source cached before its format was switched off is not decoded again.
    const rasterized = format === 'png' && this.#settings.svg === 'rasterize';
    if (format !== undefined && !rasterized && !this.#settings.inputFormats.includes(format)) {
      throw new FastImageCacheError('not_an_image', `format ${format} is not allowed (inputFormats)`);
    }
    const made = await this.queue.run(() => transformImage(source, plan.variant, this.#transformSettings(), this.#headers.get(source)));
    this.#rememberDecoded(sourceSha256 ?? sha256Hex(source));
    return { body: made.body, contentType: made.contentType };
  }
}

/** Presets must fit the size limits: a preset no request could use is a configuration mistake. */
function checkPresets(settings: ImageProcessorSettings): void {
  const { maxWidth, maxHeight } = settings.transforms;
  for (const [name, preset] of Object.entries(settings.presets)) {
    if (preset.width !== undefined && preset.width > maxWidth) {
      throw new ConfigError(`presets.${name}.width`, `${preset.width} is over transforms.maxWidth (${maxWidth})`);
    }
    if (preset.height !== undefined && preset.height > maxHeight) {
      throw new ConfigError(`presets.${name}.height`, `${preset.height} is over transforms.maxHeight (${maxHeight})`);
    }
  }
}

