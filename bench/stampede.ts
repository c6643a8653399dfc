/**
 * The cold stampede's client (run as its own process): opens N connections,
 * sends one GET for the same URL on each at once, and prints one JSON line
 * with the time to the last byte and the statuses.
 *
 * Usage: node bench/stampede.ts URL N DEADLINE_MS
 * Requests still unanswered at the deadline are abandoned and counted as failed.
 */
import http from 'node:http';

const url = new URL(process.argv[2] ?? '');
const n = Number(process.argv[3] ?? 200);
const deadlineMs = Number(process.argv[4] ?? 60_000);
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });

interface One {
  status: number;
  bytes: number;
  ms: number;
}

function one(start: number): Promise<One> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent, signal: AbortSignal.timeout(deadlineMs) }, (res) => {
      let bytes = 0;
      res.on('data', (chunk: Buffer) => (bytes += chunk.length));
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, bytes, ms: performance.now() - start }); });
      res.on('error', () => { resolve({ status: -1, bytes, ms: performance.now() - start }); });
    });
    req.on('error', () => { resolve({ status: -1, bytes: 0, ms: performance.now() - start }); });
  });
}

const start = performance.now();
const results = await Promise.all(Array.from({ length: n }, () => one(start)));
const times = results.filter((r) => r.status > 0).map((r) => r.ms).sort((a, b) => a - b);
const statuses: Record<string, number> = {};
for (const r of results) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
const out = {
  requests: n,
  // With any request abandoned, the last byte never came: report the deadline as a lower bound.
  lastByteMs: results.some((r) => r.status <= 0) ? deadlineMs : (times[times.length - 1] ?? 0),
  abandoned: results.filter((r) => r.status <= 0).length,
  p50Ms: times[Math.floor(times.length / 2)] ?? 0,
  ok: results.filter((r) => r.status === 200 && r.bytes > 0).length,
  statuses,
};
process.stdout.write(`BENCHJSON ${JSON.stringify(out)}\n`);
