/**
 * Runs autocannon in its own process (so the load never shares an event loop
 * with anything measured) and prints the result as one JSON line.
 *
 * Every request takes the next path of one shared list, across all
 * connections, so a list of distinct URLs is requested once each (the mixed
 * and cold scenarios rely on that).
 *
 * Usage: node bench/autocannon-runner.ts CONFIG.json
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

export interface AutocannonJob {
  url: string;
  pathsFile: string;
  connections: number;
  /** Seconds: the run's length, or with `amount` its cap. */
  durationSec: number;
  /** Stop after this many requests. */
  amount?: number;
  timeoutSec: number;
}

interface AutocannonResult {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  latency: { p50: number; p99: number; average: number };
  requests: { total: number };
  throughput: { total: number };
}

type Autocannon = (
  opts: Record<string, unknown>,
  cb: (err: Error | null, result: AutocannonResult) => void,
) => { stop(): void; on(event: 'response', listener: () => void): void };

const job = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as AutocannonJob;
const paths = readFileSync(job.pathsFile, 'utf8').split('\n').filter(Boolean);
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

let next = 0;
const started = performance.now();
let lastResponse = started;
const instance = autocannon(
  {
    url: job.url,
    connections: job.connections,
    ...(job.amount ? { amount: job.amount } : { duration: job.durationSec }),
    timeout: job.timeoutSec,
    requests: [
      {
        setupRequest(req: Record<string, unknown>) {
          const path = paths[next % paths.length];
          next += 1;
          return { ...req, path };
        },
      },
    ],
  },
  (err, result) => {
    if (err) {
      process.stderr.write(`autocannon failed: ${err.message}\n`);
      process.exit(1);
    }
    // autocannon notices the end of a count-bound run only at its next 1-second tick, so its
    // duration is rounded up to whole seconds: a count-bound run ends at its last response.
    const seconds = job.amount ? (lastResponse - started) / 1000 : result.duration;
    const out = {
      requests: result.requests.total,
      seconds,
      bytes: result.throughput.total,
      p50Ms: result.latency.p50,
      p99Ms: result.latency.p99,
      errors: result.errors + result.timeouts,
      non2xx: result.non2xx,
    };
    process.stdout.write(`BENCHJSON ${JSON.stringify(out)}\n`);
    process.exit(0);
  },
);
instance.on('response', () => {
  lastResponse = performance.now();
});
// A request-count bound is still bounded in time: stop (and report what was done) at durationSec.
if (job.amount) setTimeout(() => { instance.stop(); }, job.durationSec * 1000).unref();
