/**
 * Raw sharp, in-process (run as its own process): the resize scenario's
 * reference. The same photos, already in memory, resized to 300 px wide WebP
 * (EXIF orientation applied, metadata dropped: what the proxy must do too),
 * with the same concurrency as the HTTP clients use. Nothing else: no fetch,
 * no checks, no storage, no HTTP.
 *
 * Usage: node bench/sharp-resize.ts CONFIG.json  → one JSON line
 */
import { readFileSync } from 'node:fs';
import sharp from 'sharp';

interface ResizeJob {
  files: string[];
  concurrency: number;
  width: number;
}

const job = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as ResizeJob;
const inputs = job.files.map((f) => readFileSync(f));

const resize = (input: Buffer) => sharp(input).rotate().resize({ width: job.width }).webp().toBuffer();

// One untimed run first, as a running server has libvips loaded already.
if (inputs[0]) await resize(inputs[0]);

const latencies: number[] = [];
let next = 0;
const start = performance.now();
await Promise.all(
  Array.from({ length: job.concurrency }, async () => {
    while (next < inputs.length) {
      const input = inputs[next++] as Buffer;
      const t = performance.now();
      await resize(input);
      latencies.push(performance.now() - t);
    }
  }),
);
const seconds = (performance.now() - start) / 1000;
latencies.sort((a, b) => a - b);
process.stdout.write(
  `BENCHJSON ${JSON.stringify({
    images: inputs.length,
    seconds,
    perSec: inputs.length / seconds,
    p50Ms: latencies[Math.floor(latencies.length / 2)] ?? 0,
    sharp: sharp.versions.sharp,
    vips: sharp.versions.vips,
  })}\n`,
);
