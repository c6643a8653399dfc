import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ImageCache } from '../image-cache.ts';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

// Not `import … from 'node:http'`: an ES module namespace of node:http reads every export, and its WebSocket-related
// getters load Node's bundled undici: ~15 ms of CPU at every process start, for nothing here.
const { createServer } = process.getBuiltinModule('node:http');

export interface RunningServer {
  server: Server;
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  address: AddressInfo;
  /** Applies new timeouts to connections accepted from now on (maxHeaderBytes needs a restart). */
  applyLimits(limits: Partial<ServerLimits>): void;
  /** Stops accepting, lets in-flight requests finish (up to `graceMs`), then closes every connection. */
  close(graceMs?: number): Promise<void>;
}

/** Limits on the listening side so slow or oversized requests cannot pin the server. */
export interface ServerLimits {
  /** Time for a client to send the request headers, ms. */
  headersTimeoutMs: number;
  /** Time for a client to send the whole request, ms; also the socket inactivity limit. */
  requestTimeoutMs: number;
  /** How long an idle keep-alive connection stays open, ms. */
  idleTimeoutMs: number;
  /** Largest request line plus headers, bytes (node answers 431 above it). */
  maxHeaderBytes: number;
}

export const DEFAULT_SERVER_LIMITS: Readonly<ServerLimits> = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  idleTimeoutMs: 5_000,
  maxHeaderBytes: 16 * 1024,
};

function setTimeouts(server: Server, limits: ServerLimits): void {
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  server.keepAliveTimeout = limits.idleTimeoutMs;
  // A client that stops reading (or sending) mid-request is dropped, not kept forever.
  server.timeout = limits.requestTimeoutMs;
}

/**
 * Listens on host:port with `handler` (or an ImageCache's handler). Used for
 * the main listener and the admin listener alike.
 */
export async function startServer(
  handlerOrCache: ImageCache | Handler,
  host: string,
  port: number,
  limits: Partial<ServerLimits> = {},
): Promise<RunningServer> {
  const handler = typeof handlerOrCache === 'function' ? handlerOrCache : handlerOrCache.handler();
  let current: ServerLimits = { ...DEFAULT_SERVER_LIMITS, ...limits };
  const server = createServer(
    {
      maxHeaderSize: current.maxHeaderBytes,
      // Node enforces the header and request timeouts only when it sweeps connections (every 30 s by
      // default), which would let a slow client hold a socket far past them: sweep often enough.
      connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(current.headersTimeoutMs / 4))),
    },
    handler,
  );
  setTimeouts(server, current);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  return {
    server,
    address,
    url: `http://${shownHost}:${address.port}`,
    applyLimits(next) {
      current = { ...current, ...next, maxHeaderBytes: current.maxHeaderBytes };
      setTimeouts(server, current);
    },
    async close(graceMs = 10_000) {
      const closed = new Promise<void>((resolve) => server.close(() => { resolve(); }));
      // Idle keep-alive connections go now; busy ones as soon as their response is done.
      server.closeIdleConnections();
      const sweep = setInterval(() => { server.closeIdleConnections(); }, 50);
      const timer = setTimeout(() => { server.closeAllConnections(); }, graceMs);
      await closed;
      clearInterval(sweep);
      clearTimeout(timer);
    },
  };
}
