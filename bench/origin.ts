/**
 * The bench's origin (run as its own process): serves the photos from memory
 * on 127.0.0.1 and counts the requests it gets per path, so the bench can ask
 * how many origin requests a scenario cost.
 *
 *   GET|HEAD /img/{tag}/{photo-name}   the photo (any tag: tags make distinct URLs)
 *   GET|HEAD /tiny/{anything}          a tiny PNG (index-scale scenario)
 *   GET      /__stats?prefix=/img/x/   {"get": n, "head": n} for paths starting with prefix
 *   GET      /__tiny?serve=0|1         stop (404) or resume serving /tiny/: while stopped, only a
 *                                      cache hit can answer 200 for a tiny URL
 *
 * Paths whose tag starts with "stampede" answer after `stampedeDelayMs`, like
 * an origin across a network, so that concurrent misses really overlap.
 *
 * Usage: node bench/origin.ts CONFIG.json   (prints "ready PORT" when listening)
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import sharp from 'sharp';

interface OriginConfig {
  port: number;
  stampedeDelayMs: number;
  photos: Array<{ name: string; file: string; contentType: string }>;
}

const config = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as OriginConfig;
const photos = new Map(config.photos.map((p) => [p.name, { body: readFileSync(p.file), type: p.contentType }]));
const tiny = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#3a6' } }).png().toBuffer();

const counts = new Map<string, { get: number; head: number }>();
let tinyCount = 0;
let serveTiny = true;

function count(pathname: string, method: string): void {
  let c = counts.get(pathname);
  if (!c) counts.set(pathname, (c = { get: 0, head: 0 }));
  if (method === 'HEAD') c.head += 1;
  else c.get += 1;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://origin');
  const method = req.method ?? 'GET';
  if (url.pathname === '/__stats') {
    const prefix = url.searchParams.get('prefix') ?? '/';
    const total = { get: 0, head: 0, tiny: tinyCount };
    for (const [p, c] of counts) {
      if (!p.startsWith(prefix)) continue;
      total.get += c.get;
      total.head += c.head;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(total));
    return;
  }
  if (url.pathname === '/__tiny') {
    serveTiny = url.searchParams.get('serve') !== '0';
    res.writeHead(200, { 'Content-Type': 'text/plain' }).end(`serving tiny: ${serveTiny}\n`);
    return;
  }
  if (method !== 'GET' && method !== 'HEAD') {
    res.writeHead(405).end();
    return;
  }
  if (url.pathname.startsWith('/tiny/')) {
    tinyCount += 1;
    if (!serveTiny) res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not serving tiny now\n');
    else send(res, method, tiny, 'image/png');
    return;
  }
  const m = /^\/img\/([^/]+)\/([^/]+)$/.exec(url.pathname);
  const photo = m ? photos.get(decodeURIComponent(m[2] ?? '')) : undefined;
  if (!m || !photo) {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    return;
  }
  count(url.pathname, method);
  if (m[1]?.startsWith('stampede') && config.stampedeDelayMs > 0) {
    setTimeout(() => { send(res, method, photo.body, photo.type); }, config.stampedeDelayMs);
  } else {
    send(res, method, photo.body, photo.type);
  }
});

function send(res: http.ServerResponse, method: string, body: Buffer, type: string): void {
  res.writeHead(200, {
    'Content-Type': type,
    'Content-Length': body.length,
    // Cacheable for a year, so every proxy keeps it (nginx and Varnish honour this).
    'Cache-Control': 'public, max-age=31536000',
  });
  res.end(method === 'HEAD' ? undefined : body);
}

server.keepAliveTimeout = 60_000;
server.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${config.port}\n`);
});
process.on('SIGTERM', () => { server.close(() => process.exit(0)).closeAllConnections(); });
