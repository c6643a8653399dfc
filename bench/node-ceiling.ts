/**
 * The ceiling of Node itself (run as its own process): a minimal node:http
 * server answering `/img/{tag}/{photo-name}` with the same bytes from memory,
 * with a handful of fixed headers and no other work. It runs as many
 * processes (node:cluster) as fastimagecache got workers, so the two compare
 * like for like.
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
  photos: Array<{ name: string; file: string; contentType: string }>;
}

const config = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as CeilingConfig;

if (config.workers > 1 && cluster.isPrimary) {
  for (let i = 0; i < config.workers; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill('SIGTERM');
    process.exit(0);
  });
} else {
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
