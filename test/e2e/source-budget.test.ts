import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createImageCache } from '../../src/image-cache.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { TEST_KEY_HEX, testSettings } from '../helpers/proxy.ts';
import { makeTempDir } from '../helpers/tmp.ts';

/**
 * transforms.sourceBytesInFlight through the library: a source's room is held
 * from before its body is read until it is checked, so a second miss cannot
 * read its body while the first is held. Observed as the order in which two
 * misses finish: A's body arrives slowly, B's at once.
 */

const tmp = makeTempDir('fic-source-budget-');
let origin: Origin;
let slowSize = 0;

before(async () => {
  origin = await startOrigin();
  const slow = await makeImage('png', 120, 80);
  slowSize = slow.length;
  origin.handle('/slow.png', (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'image/png', 'Content-Length': slow.length });
    res.write(slow.subarray(0, 100));
    setTimeout(() => res.end(slow.subarray(100)), 400);
  });
  origin.serve('/fast.png', await makeImage('png', 60, 40), { contentType: 'image/png' });
});
after(async () => {
  await origin.close();
  tmp.cleanup();
});

/** Starts a miss on /slow.png, then (once its headers are in) one on /fast.png; returns which finished first. */
async function raceWith(sourceBytesInFlight: number, run: number): Promise<string[]> {
  const images = await createImageCache({
    env: { FASTIMAGECACHE_KEY: TEST_KEY_HEX },
    settings: { ...testSettings(`${tmp.dir}/${run}`), transforms: { sourceBytesInFlight } },
  });
  try {
    const finished: string[] = [];
    const slow = images.get(`${origin.url}/slow.png?run=${run}`).then(() => finished.push('slow'));
    while (origin.hits('/slow.png') < run) await new Promise((resolve) => setTimeout(resolve, 5));
    await new Promise((resolve) => setTimeout(resolve, 50)); // its headers are in: its room is held
    const fast = images.get(`${origin.url}/fast.png?run=${run}`).then(() => finished.push('fast'));
    await Promise.all([slow, fast]);
    return finished;
  } finally {
    await images.close();
  }
}

describe('transforms.sourceBytesInFlight', () => {
  test('without a limit, a fast source does not wait for a slow one', async () => {
    assert.deepEqual(await raceWith(0, 1), ['fast', 'slow']);
  });

  test('with room for one source, the second body is read only after the first source is checked', async () => {
    assert.deepEqual(await raceWith(slowSize, 2), ['slow', 'fast']);
  });
});
