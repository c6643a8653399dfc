/**
 * collectExternalGarbage in a real process started with --expose-gc: Buffers
 * that die after outliving young collections (as sources waiting for a
 * transform slot do) are freed within about one step of their growth, where
 * V8 alone lets tens of MB of them pile up.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { collectExternalGarbage } from '../../src/cli/external-garbage.ts';

const MODULE = fileURLToPath(new URL('../../src/cli/external-garbage.ts', import.meta.url));
const MB = 1024 * 1024;

/** Allocates 1 MB Buffers, each kept for 10 rounds with some JS garbage around it; prints the most external memory seen. */
const SCRIPT = `
import { getHeapStatistics } from 'node:v8';
import { collectExternalGarbage, exposedGc } from ${JSON.stringify(MODULE)};
if (process.argv[1] === 'on') collectExternalGarbage({ stepBytes: 4 * ${MB}, intervalMs: 2, gc: exposedGc() });
const live = [];
let junk = [];
let max = 0;
for (let i = 0; i < 200; i++) {
  live.push(Buffer.alloc(${MB}));
  if (live.length > 10) live.shift();
  for (let j = 0; j < 5000; j++) junk.push({ j });
  if (junk.length > 50000) junk = [];
  await new Promise((resolve) => setTimeout(resolve, 2));
  max = Math.max(max, getHeapStatistics().external_memory);
}
process.stdout.write(String(max));
`;

async function peakExternal(mode: 'on' | 'off'): Promise<number> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--input-type=module', '-e', SCRIPT, mode], { timeout: 30_000 });
  return Number(stdout);
}

describe('collectExternalGarbage', () => {
  test('keeps dead Buffers within a few MB of the step, where V8 alone lets them pile up', async () => {
    const [off, on] = [await peakExternal('off'), await peakExternal('on')];
    // Live: 10 MB; the step 4 MB; about 2 MB allocated between two checks.
    assert.ok(on < 24 * MB, `with it: ${(on / MB).toFixed(1)} MB`);
    assert.ok(off > on + 15 * MB, `without it: ${(off / MB).toFixed(1)} MB, with it: ${(on / MB).toFixed(1)} MB`);
  });

  test('collects only on growth by a step, measured from the lowest point since the last collection', async () => {
    let external = 100;
    let collections = 0;
    const stop = collectExternalGarbage({
      stepBytes: 50,
      intervalMs: 1,
      externalBytes: () => external,
      gc: () => {
        collections += 1;
        external = 100;
      },
    });
    const tick = () => new Promise((resolve) => setTimeout(resolve, 10));
    try {
      external = 140;
      await tick();
      assert.equal(collections, 0, 'grown by less than a step');
      external = 60; // V8 freed some on its own
      await tick();
      external = 115;
      await tick();
      assert.equal(collections, 1, 'grown by a step from the lowest point');
      await tick();
      assert.equal(collections, 1, 'nothing grew since');
    } finally {
      stop();
    }
    external = 1000;
    await tick();
    assert.equal(collections, 1, 'stopped');
  });
});
