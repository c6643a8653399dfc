import sharp from 'sharp';

/**
 * Process-wide libvips settings of a serving process (imported for its
 * effect by the proxy service, so the library embedded in someone else's
 * process leaves their sharp alone).
 *
 * libvips' operation cache (sharp.cache(): up to 100 operations and 50 MB by
 * default) keeps recent operations with their input images, to answer the
 * same operation on the same input again. A proxy never asks twice: every
 * source is checked once and every variant made once, then both come from
 * the cache directory. Kept, it only held memory (about 35 MB more per worker
 * at the peak of a miss storm, see bench/README.md, "Memory").
 */
sharp.cache(false);
