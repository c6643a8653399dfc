// `npm run fuzz [-- --scale N] [-- --seed S]`: the property tests of test/fuzz/
// with a fresh random seed (printed first, so a failure can be replayed) and
// N times the inputs `npm test` uses (default 50).
import { spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { seed: { type: 'string' }, scale: { type: 'string', default: '50' } } });
const seed = values.seed ?? process.env.FUZZ_SEED ?? String(randomInt(2 ** 31 - 1));
const scale = values.scale;

process.stdout.write(`fuzz: seed ${seed}, scale ${scale} (replay: npm run fuzz -- --seed ${seed} --scale ${scale})\n`);
const root = join(import.meta.dirname, '..');
const run = spawnSync(process.execPath, ['--test', '--test-timeout=3600000', join('test', 'fuzz', '*.test.ts')], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, FUZZ_SEED: seed, FUZZ_SCALE: scale },
});
process.stdout.write(`fuzz: seed ${seed} ${run.status === 0 ? 'passed' : 'FAILED'}\n`);
process.exitCode = run.status ?? 1;
