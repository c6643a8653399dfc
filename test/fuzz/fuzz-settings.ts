import type { Parameters } from 'fast-check';

/**
 * How hard the property tests push. `npm test` runs them with a fixed seed
 * and modest run counts (the same inputs every time, a few seconds in all);
 * `npm run fuzz` sets FUZZ_SEED to a fresh random seed and FUZZ_SCALE to run
 * many more inputs. A failure prints the seed and the shrunk counterexample:
 * `FUZZ_SEED=<seed> npm run fuzz` replays it.
 */
const FIXED_SEED = 20_260_801;

const seedText = process.env.FUZZ_SEED;
const scaleText = process.env.FUZZ_SCALE;

export const FUZZ_SEED = seedText !== undefined && seedText !== '' ? Number(seedText) : FIXED_SEED;
export const FUZZ_SCALE = scaleText !== undefined && scaleText !== '' ? Math.max(1, Number(scaleText)) : 1;

/** fast-check parameters for a property that runs `runs` times in `npm test`. */
export function fuzzParameters<T>(runs: number): Parameters<T> {
  return { seed: FUZZ_SEED, numRuns: Math.round(runs * FUZZ_SCALE) };
}
