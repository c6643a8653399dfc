/**
 * ipx, the closest Node peer (run as its own process), from the copy the
 * bench installed into bench/.peers/ (never one of the project's
 * dependencies). One process, as ipx ships: it has no cluster mode.
 *
 * URLs: /{modifiers}/{origin URL}, e.g. /_/http://127.0.0.1:PORT/img/a/x.jpg
 * or /w_300,f_webp/http://127.0.0.1:PORT/img/a/x.jpg
 *
 * Usage: node bench/ipx-server.ts PORT PEERS_DIR
 */
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

interface IpxModule {
  createIPX(options: Record<string, unknown>): unknown;
  ipxHttpStorage(options: Record<string, unknown>): unknown;
  createIPXNodeServer(ipx: unknown): http.RequestListener;
}

const port = Number(process.argv[2]);
const peersDir = process.argv[3] ?? '';
const entry = path.join(peersDir, 'node_modules', 'ipx', 'dist', 'index.mjs');
const ipxModule = (await import(pathToFileURL(entry).href)) as IpxModule;

const ipx = ipxModule.createIPX({ httpStorage: ipxModule.ipxHttpStorage({ domains: ['127.0.0.1'] }) });
const server = http.createServer(ipxModule.createIPXNodeServer(ipx));
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
