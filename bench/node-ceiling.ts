/**
 * The ceilings of Node itself (run as its own process), as many processes
 * (node:cluster) as fastimagecache got workers, so the two compare like for
 * like:
 *
 *   GET|HEAD /img/{tag}/{photo-name}   the same bytes from memory, with a handful of fixed headers and no other
 *                                      work: the hit ceiling
 *   GET      /rz/{tag}/{photo-name}    the resize ceiling: fetches /img/{tag}/{photo-name} from the bench origin
 *                                      with node:http (keep-alive agent, the body copied into one buffer of its
 *                                      Content-Length), runs raw sharp's exact call (rotate, 300 px wide, WebP) and
 *                                      answers it; 502 on any error
 *
 * The resize route does nothing else: no checks, no cache, no storage. It is
 * a ceiling, kept minimal but not made slow: what any Node server that
 * fetches and resizes reaches in this harness, where the load generator and
 * the origin share the cores with it (raw sharp has them to itself).
 *
 * Usage: node bench/node-ceiling.ts CONFIG.json
 */
import cluster from 'node:cluster';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

interface CeilingConfig {
  port: number;
  workers: number;
  /** The bench origin, on 127.0.0.1, for the resize route. */
  originPort: number;
  photos: Array<{ name: string; file: string; contentType: string }>;
}

const config = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as CeilingConfig;

const agent = new http.Agent({ keepAlive: true });

/** The origin's body for `path`, in one buffer. */
function fetchOrigin(path: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: config.originPort, path, agent }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`origin answered ${String(res.statusCode)}`));
          return;
        }
        const length = Number(res.headers['content-length']);
        const chunks: Buffer[] = [];
        const whole = Number.isSafeInteger(length) ? Buffer.allocUnsafeSlow(length) : undefined;
        let at = 0;
        res.on('data', (chunk: Buffer) => {
          if (whole) at += chunk.copy(whole, at);
          else chunks.push(chunk);
        });
        res.on('end', () => {
          resolve(whole ? whole.subarray(0, at) : Buffer.concat(chunks));
        });
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** The resize route, with sharp loaded by the serving processes only (the primary of a cluster needs no libvips). */
async function resizer(): Promise<(res: http.ServerResponse, url: string) => Promise<void>> {
  const { default: sharp } = await import('sharp');
  return async (res, url) => {
    try {
      const input = await fetchOrigin(`/img/${url.slice('/rz/'.length)}`);
      const output = await sharp(input).rotate().resize({ width: 300 }).webp().toBuffer();
      res.writeHead(200, { 'Content-Type': 'image/webp', 'Content-Length': String(output.length) });
      res.end(output);
    } catch {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    }
  };
}

if (config.workers > 1 && cluster.isPrimary) {
  for (let i = 0; i < config.workers; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill('SIGTERM');
    process.exit(0);
  });
} else {
  const resize = await resizer();
  const photos = new Map(
    config.photos.map((p) => {
      const body = readFileSync(p.file);
      const headers = {
        'Content-Type': p.contentType,
        'Content-Length': String(body.length),
        'Cache-Control': 'public, max-age=86400',
        ETag: `"${createHash('sha256').update(body).digest('hex').slice(0, 32)}"`,
      };
      return [p.name, { body, headers }];
    }),
  );
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (url.startsWith('/rz/')) {
      void resize(res, url);
      return;
    }
    const name = url.slice(url.lastIndexOf('/') + 1);
    const photo = url.startsWith('/img/') ? photos.get(name) : undefined;
    if (!photo) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, photo.headers);
    res.end(req.method === 'HEAD' ? undefined : photo.body);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(config.port, '127.0.0.1');
  process.on('SIGTERM', () => process.exit(0));
}
