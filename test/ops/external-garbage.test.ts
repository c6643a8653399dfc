/**
 * collectExternalGarbage in real processes started with --expose-gc: Buffers
 * that die after outliving young collections (as sources waiting for a
 * transform slot do) are freed within about one step of growth; Buffers
 * that die young (as a disk hit's read does) never start a full collection.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';

const MODULE = fileURLToPath(new URL('../../src/cli/external-garbage.ts', import.meta.url));
const MB = 1024 * 1024;

/**
 * Allocates 200 Buffers of 1 MB with some JS garbage around each, keeping the
 * last `keep` alive; prints the most external memory seen and how many full
 * collections the collector ran.
 */
const script = (keep: number) => `
import { getHeapStatistics } from 'node:v8';
import { collectExternalGarbage, exposedGc } from ${JSON.stringify(MODULE)};
const gc = exposedGc();
let collections = 0;
if (process.argv[1] === 'on') collectExternalGarbage({ stepBytes: 4 * ${MB}, intervalMs: 2, gc: () => { collections += 1; gc(); } });
const live = [];
let junk;
const start = getHeapStatistics().external_memory;
let max = 0;
for (let i = 0; i < 200; i++) {
  live.push(Buffer.alloc(${MB}));
  if (live.length > ${keep}) live.shift();
  junk = Array.from({ length: 20_000 }, (_, j) => ({ j })); // with 1 MB semi-spaces: a young collection per round
  await new Promise((resolve) => setTimeout(resolve, 2));
  max = Math.max(max, getHeapStatistics().external_memory);
}
process.stdout.write(JSON.stringify({ growth: max - start, collections }));
`;

async function run(keep: number, mode: 'on' | 'off' = 'on'): Promise<{ growth: number; collections: number }> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--max-semi-space-size=1', '--input-type=module', '-e', script(keep), mode], { timeout: 30_000 });
  return JSON.parse(stdout) as { growth: number; collections: number };
}

describe('collectExternalGarbage', () => {
  test('Buffers that die old are freed within a few MB of the step', async () => {
    const on = await run(10, 'on');
    // Live: 10 MB; the step: 4 MB; then what is allocated until two young collections have passed and the sweep is done.
    assert.ok(on.growth < 24 * MB, `external memory grew by ${(on.growth / MB).toFixed(1)} MB`);
    assert.ok(on.collections > 0);
  });

  test('Buffers that die young start no full collection', async () => {
    const churn = await run(0, 'on');
    assert.equal(churn.collections, 0, `${churn.collections} full collections for 200 MB of short-lived Buffers`);
  });
});
