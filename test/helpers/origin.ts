import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface ServeOptions {
  /** Default 'application/octet-stream'. */
  contentType?: string;
  /** Default 200. */
  status?: number;
  /** Extra response headers. An `ETag` / `Last-Modified` here also makes conditional requests get 304. */
  headers?: Record<string, string | number | string[]>;
}

export interface RecordedRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  headers: IncomingHttpHeaders;
}

/**
 * A real HTTP origin on 127.0.0.1 (random port) for tests. Routes match the
 * full path+query first, then the path alone; unknown paths get 404.
 */
export interface Origin {
  /** e.g. http://127.0.0.1:41234 (no trailing slash). */
  url: string;
  port: number;
  serve(path: string, body: Buffer | string, options?: ServeOptions): void;
  redirect(path: string, location: string, status?: number): void;
  handle(path: string, handler: Handler): void;

  /** Sends headers only after `delayMs` (then the body), as `contentType` (default image/jpeg). */
  slowHeaders(path: string, delayMs: number, body?: Buffer | string, contentType?: string): void;
  /** Headers at once, then `chunk` every `intervalMs`, `count` times (forever if omitted). */
  slowBody(path: string, options?: { chunk?: Buffer | string; intervalMs?: number; count?: number }): void;
  /** An image/jpeg response that never ends, no Content-Length; writes as fast as the client reads. */
  endlessBody(path: string): void;
  /** Claims `declared` bytes in Content-Length, sends `body` (fewer), then drops the connection. */
  lyingContentLength(path: string, body: Buffer | string, declared: number): void;
  /** An HTML page served with Content-Type image/jpeg. */
  htmlAsJpeg(path: string): void;

  /** Requests received for `path` (matched like routes: with '?' the full URL, else the pathname). */
  hits(path: string): number;
  totalHits(): number;
  requests(): readonly RecordedRequest[];
  /** Headers of the last request for `path`, as node:http parsed them (lower-case names). */
  lastRequestHeaders(path: string): IncomingHttpHeaders | undefined;
  /** Forgets routes and recorded requests. */
  reset(): void;
  /** Stops listening and destroys open sockets, so slow or endless responses cannot hang a test. */
  close(): Promise<void>;
}

function pathnameOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

function matches(path: string, request: RecordedRequest): boolean {
  return path.includes('?') ? request.url === path : pathnameOf(request.url) === path;
}

export async function startOrigin(): Promise<Origin> {
  const routes = new Map<string, Handler>();
  const recorded: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  /** Timers that die with the response, so nothing fires after close(). */
  function later(res: ServerResponse, ms: number, fn: () => void, repeat = false): void {
    const timer = repeat ? setInterval(fn, ms) : setTimeout(fn, ms);
    timers.add(timer);
    res.once('close', () => {
      clearTimeout(timer);
      timers.delete(timer);
    });
  }

  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    recorded.push({ method: req.method ?? 'GET', url, headers: req.headers });
    const handler = routes.get(url) ?? routes.get(pathnameOf(url));
    if (!handler) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('no such test route');
      return;
    }
    handler(req, res);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => { resolve(); });
  });
  const port = (server.address() as AddressInfo).port;

  const origin: Origin = {
    url: `http://127.0.0.1:${port}`,
    port,

    serve(path, body, options = {}) {
      const data = Buffer.from(body);
      const headers = options.headers ?? {};
      const lookup = (name: string) => Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1];
      const etag = lookup('etag');
      const lastModified = lookup('last-modified');
      routes.set(path, (req, res) => {
        const notModified =
          (etag !== undefined && req.headers['if-none-match'] === String(etag)) ||
          (etag === undefined && lastModified !== undefined && req.headers['if-modified-since'] === String(lastModified));
        if (notModified) {
          res.writeHead(304, headers);
          res.end();
          return;
        }
        res.writeHead(options.status ?? 200, {
          'Content-Type': options.contentType ?? 'application/octet-stream',
          'Content-Length': data.length,
          ...headers,
        });
        res.end(data);
      });
    },

    redirect(path, location, status = 302) {
      routes.set(path, (_req, res) => {
        res.writeHead(status, { Location: location, 'Content-Length': 0 });
        res.end();
      });
    },

    handle(path, handler) {
      routes.set(path, handler);
    },

    slowHeaders(path, delayMs, body = 'late', contentType = 'image/jpeg') {
      const data = Buffer.from(body);
      routes.set(path, (_req, res) => {
        later(res, delayMs, () => {
          res.writeHead(200, { 'Content-Type': contentType, 'Content-Length': data.length });
          res.end(data);
        });
      });
    },

    slowBody(path, { chunk = 'x', intervalMs = 50, count } = {}) {
      const data = Buffer.from(chunk);
      routes.set(path, (_req, res) => {
        const headers: Record<string, string | number> = { 'Content-Type': 'image/jpeg' };
        if (count !== undefined) headers['Content-Length'] = data.length * count;
        res.writeHead(200, headers);
        res.flushHeaders();
        let sent = 0;
        later(
          res,
          intervalMs,
          () => {
            res.write(data);
            sent++;
            if (count !== undefined && sent >= count) res.end();
          },
          true,
        );
      });
    },

    endlessBody(path) {
      const block = Buffer.alloc(64 * 1024, 0xff);
      routes.set(path, (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'image/jpeg' });
        const pump = () => {
          while (!res.destroyed && res.write(block)) {
            /* keep writing until the socket buffer is full */
          }
        };
        res.on('drain', pump);
        pump();
      });
    },

    lyingContentLength(path, body, declared) {
      const data = Buffer.from(body);
      routes.set(path, (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': declared });
        res.write(data, () => {
          // Cut the connection short instead of finishing the promised body.
          later(res, 20, () => res.socket?.destroy());
        });
      });
    },

    htmlAsJpeg(path) {
      origin.serve(path, '<!doctype html><html><body><script>alert(1)</script></body></html>', {
        contentType: 'image/jpeg',
      });
    },

    hits(path) {
      return recorded.filter((r) => matches(path, r)).length;
    },

    totalHits() {
      return recorded.length;
    },

    requests() {
      return recorded;
    },

    lastRequestHeaders(path) {
      return recorded.findLast((r) => matches(path, r))?.headers;
    },

    reset() {
      routes.clear();
      recorded.length = 0;
    },

    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => { resolve(); }));
    },
  };
  return origin;
}
