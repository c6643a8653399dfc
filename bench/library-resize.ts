/**
 * Issue 4's cold resize without HTTP in front: the library's get() (fetch
 * from a loopback origin, checks, metadata strip, transform, two entry
 * writes) against raw sharp doing only the resize, in one process, in
 * interleaved rounds, with the CPU each thread spent per image.
 *
 * `npm run bench` measures the server: its cold-resize ratio also pays for
 * the HTTP layer, the cluster primary and the load generator, all on the
 * cores that raw sharp has to itself. This run takes those away, so the two
 * figures together say how much of the gap is the library's own work.
 *
 *   npm run bench:library [-- --rounds 3 --images 48 --concurrency N]
 *
 * Writes bench/results/library-resize.md. Loopback only, bounded by the
 * image count; uses the corpus photos (or generated ones without it).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { createImageCache } from '../src/index.ts';
import { loadPhotos } from './corpus.ts';
import { describeMachine } from './machine.ts';
import { statCpuTicks } from './processes.ts';
import { median } from './report.ts';

const ROOT = path.join(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    images: { type: 'string', default: '48' },
    concurrency: { type: 'string', default: String(os.availableParallelism()) },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'results', 'library-resize.md') },
  },
});
const ROUNDS = Number(values.rounds);
const IMAGES = Number(values.images);
const CONCURRENCY = Number(values.concurrency);
const WIDTH = 300;

/** CPU time (ms) of this process's threads, by thread name: where the time of each system goes. */
function cpuByThread(): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    const ticks = statCpuTicks(`/proc/self/task/${tid}/stat`);
    const name = tid === String(process.pid) ? 'main thread' : threadGroup(readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim());
    out.set(name, (out.get(name) ?? 0) + ticks * 10);
  }
  return out;
}

function threadGroup(comm: string): string {
  if (comm.startsWith('libuv-worker')) return 'libuv pool';
  if (comm.startsWith('libvips')) return 'libvips workers';
  if (/V8|DelayedTask/i.test(comm)) return 'V8 helpers (GC)';
  return 'other';
}

interface RunResult {
  msPerImage: number;
  cpuMsPerImage: Map<string, number>;
}

/** `count` jobs, `CONCURRENCY` at a time; wall and CPU per image. */
async function measure(count: number, job: (k: number) => Promise<unknown>): Promise<RunResult> {
  const before = cpuByThread();
  const start = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < count) await job(next++);
    }),
  );
  const msPerImage = (performance.now() - start) / count;
  const cpuMsPerImage = new Map<string, number>();
  for (const [name, ms] of cpuByThread()) cpuMsPerImage.set(name, (ms - (before.get(name) ?? 0)) / count);
  return { msPerImage, cpuMsPerImage };
}

const work = mkdtempSync(path.join(os.tmpdir(), 'fic-bench-library-'));
try {
  const photoSet = await loadPhotos(work);
  const bodies = photoSet.resizePhotos.map((p) => readFileSync(p.file));
  const origin = http.createServer((req, res) => {
    const body = bodies[Number(req.url?.split('/')[3]) % bodies.length];
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': body.length, 'Cache-Control': 'public, max-age=3600' }).end(body);
  });
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
  const port = (origin.address() as AddressInfo).port;

  // The shipped defaults, with the loopback origin allowed explicitly, as in `npm run bench`.
  const cache = await createImageCache({
    settings: {
      cacheDir: path.join(work, 'cache'),
      stateDir: path.join(work, 'state'),
      allowHttp: true,
      allowedPorts: '*',
      allowedPrivateRanges: ['127.0.0.1/32'],
    },
    env: { FASTIMAGECACHE_KEY: '5c'.repeat(32) },
  });
  const library = (round: number) => (k: number) =>
    cache.get(`http://127.0.0.1:${port}/img/r${round}-${k}/${k}`, { width: WIDTH, format: 'webp' });
  const raw = (k: number) => sharp(bodies[k % bodies.length]).rotate().resize({ width: WIDTH }).webp().toBuffer();

  // Warm-up, untimed: a running server has its code compiled and libvips loaded.
  await measure(2 * CONCURRENCY, library(-1));
  await measure(2 * CONCURRENCY, raw);

  const rounds: Array<{ library: RunResult; raw: RunResult }> = [];
  for (let round = 0; round < ROUNDS; round++) {
    rounds.push({ library: await measure(IMAGES, library(round)), raw: await measure(IMAGES, raw) });
    const last = rounds[rounds.length - 1];
    if (last) process.stdout.write(`round ${round + 1}: library ${last.library.msPerImage.toFixed(1)} ms/image, raw sharp ${last.raw.msPerImage.toFixed(1)} ms/image\n`);
  }
  await cache.close();
  origin.close();

  const machine = await describeMachine(ROOT, ROOT);
  const med = (values: number[]) => median(values) ?? Number.NaN;
  const libMs = med(rounds.map((r) => r.library.msPerImage));
  const rawMs = med(rounds.map((r) => r.raw.msPerImage));
  const threads = [...new Set(rounds.flatMap((r) => [...r.library.cpuMsPerImage.keys(), ...r.raw.cpuMsPerImage.keys()]))].sort();
  const cpu = (which: 'library' | 'raw', thread: string) => med(rounds.map((r) => r[which].cpuMsPerImage.get(thread) ?? 0));
  const lines = [
    '# Cold resize through the library, against raw sharp (issue 4)',
    '',
    `${machine.date} · ${machine.cpuModel}, ${machine.cores} cores · ${machine.os} · Node ${machine.node} · fastimagecache ${machine.fastimagecache} · sharp ${machine.sharp} · load average at start ${machine.loadAverageAtStart}`,
    '',
    `One process: \`createImageCache().get(url, { width: ${WIDTH}, format: 'webp' })\` for ${IMAGES} URLs never asked before (a loopback origin in the same process serves ${photoSet.resizePhotos.length} photos: ${photoSet.source}), against \`sharp(bytes).rotate().resize({ width: ${WIDTH} }).webp()\` on the same photos from memory; ${CONCURRENCY} at a time; ${ROUNDS} interleaved rounds after an untimed warm-up; medians.`,
    '',
    '| | ms per image (wall) | images/s | × raw sharp |',
    '|---|---:|---:|---:|',
    `| library get() (fetch, checks, strip, transform, store) | ${libMs.toFixed(1)} | ${(1000 / libMs).toFixed(1)} | ${(rawMs / libMs).toFixed(2)}× |`,
    `| raw sharp (resize only) | ${rawMs.toFixed(1)} | ${(1000 / rawMs).toFixed(1)} | 1.00× |`,
    '',
    'CPU per image by thread, ms (the origin runs on the main thread, so its share counts against the library):',
    '',
    '| thread | library | raw sharp |',
    '|---|---:|---:|',
    ...threads.map((t) => `| ${t} | ${cpu('library', t).toFixed(1)} | ${cpu('raw', t).toFixed(1)} |`),
    `| **all** | **${threads.reduce((a, t) => a + cpu('library', t), 0).toFixed(1)}** | **${threads.reduce((a, t) => a + cpu('raw', t), 0).toFixed(1)}** |`,
    '',
    'Rounds (ms per image, library / raw sharp): ' + rounds.map((r) => `${r.library.msPerImage.toFixed(1)} / ${r.raw.msPerImage.toFixed(1)}`).join(', '),
    '',
  ];
  writeFileSync(values.out, lines.join('\n'));
  process.stdout.write(`\n${lines.join('\n')}\nwritten to ${path.relative(process.cwd(), values.out)}\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
