import type { CacheManager, CacheResult } from './cache/index.ts';
import { FastImageCacheError } from './errors.ts';
import { CLEANED_SOURCE_VARIANT, type ImageProcessor, type VariantPlan } from './image/processor.ts';

/**
 * One image request against the cache: the variant made from the cached
 * source (one origin fetch for many sizes), the source's pixels decoded once
 * (by the transform, or before passthrough serves it), and a source that turns
 * out not to decode removed with its variants, so nothing of it stays cached.
 * With `lend`, see CacheRequest.lend: the caller calls the result's release().
 */
export async function getImageVariant(
  cache: CacheManager,
  images: ImageProcessor,
  sourceUrl: string | URL,
  plan: VariantPlan,
  lend = false,
): Promise<CacheResult> {
  let brokenSource = false;
  // Decoding the source is what fails for a broken one: remember that, then let the error go on.
  const noteBroken = (err: unknown): never => {
    brokenSource = err instanceof FastImageCacheError && err.code === 'not_an_image';
    throw err;
  };
  const dropIfBroken = async (err: unknown): Promise<never> => {
    if (brokenSource) await cache.purge(sourceUrl).catch(() => 0);
    throw err;
  };
  const result = await images
    .forRequest(plan, () =>
      cache.get({
        sourceUrl,
        variant: plan.id,
        transform: (source) => images.transform(source.body, plan, source.meta.sha256).catch(noteBroken),
        lend,
      }),
    )
    .catch(dropIfBroken);
  if (plan.id === '_' && images.needsPassthroughClean(result.body)) {
    // Stored for transforms (profile and orientation kept): passthrough serves its cleaned variant.
    result.release?.();
    return images
      .forRequest(plan, () =>
        cache.get({
          sourceUrl,
          variant: CLEANED_SOURCE_VARIANT,
          transform: (source) => images.cleanForPassthrough(source.body, source.meta.sha256).catch(noteBroken),
          lend,
        }),
      )
      .catch(dropIfBroken);
  }
  // Decoded when it was stored (EntryMeta.decoded): not again, not even after a restart.
  if (plan.id === '_' && result.meta.decoded !== true) {
    await images.ensureDecoded(result.body, result.sha256).catch(noteBroken).catch(dropIfBroken);
  }
  return result;
}
