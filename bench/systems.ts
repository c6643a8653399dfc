/**
 * Each system under test, started on a free loopback port in front of the
 * bench origin, with its configuration written into the bench's temp dir:
 * fastimagecache (production build), nginx proxy_cache, Varnish, ipx and the
 * node:http ceiling (hits from memory, and a minimal fetch-and-resize route). Every start returns a handle that maps an origin path
 * (`/img/{tag}/{photo}`) to this system's URL for it.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { freePort, HOST, processTree, runCommand, startService, waitForHttp, type Service } from './processes.ts';
import { PEERS_DIR, type Peers } from './peers.ts';
import type { Photo } from './corpus.ts';

export type SystemId = 'fastimagecache' | 'fastimagecache-disk' | 'fastimagecache-limited' | 'nginx' | 'varnish' | 'ipx' | 'node';

export interface SystemHandle {
  id: SystemId;
  /** Row label in the results table. */
  label: string;
  baseUrl: string;
  service: Service;
  /** False for systems that keep nothing (ipx): priming them is pointless. */
  caches: boolean;
  /** False for the node:http ceiling, whose hits have no origin behind them. */
  proxies: boolean;
  /** Things the report must say about how this system ran. */
  notes: string[];
  /** This system's path for the untransformed image at origin path `/img/{tag}/{photo}`. */
  hitPath: (originPath: string) => string;
  /** Its path for the 300-px WebP, or undefined when it cannot resize. */
  resizePath?: (originPath: string) => string;
  /**
   * False when asking for the same resize again means nothing: the node:http
   * ceiling keeps nothing and is there for the cold figure. (ipx keeps nothing
   * either, but the issue asks for its repeated-request figure.)
   */
  warmResize?: boolean;
}

export interface BenchContext {
  repoRoot: string;
  workDir: string;
  logDir: string;
  originPort: number;
  /** Hex signing key handed to fastimagecache through the environment. */
  keyHex: string;
  cpus: number;
  photos: Photo[];
  peers: Peers;
  /** FASTIMAGECACHE_* settings the bench adds for this build (see run.ts benchSettings). */
  ficSettings: Record<string, string>;
}

/** The transform the resize scenario asks for, in fastimagecache's options syntax (issue 4). */
export const RESIZE_OPTIONS = 'w:300,f:webp';

export function originUrl(ctx: BenchContext, originPath: string): string {
  return `http://${HOST}:${ctx.originPort}${originPath}`;
}

// ---------------------------------------------------------------- fastimagecache

type BuildImagePath = (key: Buffer, sourceUrl: string, options?: string) => string;

/** The library's own signer, from the production build (dist/). */
export async function loadSigner(ctx: BenchContext): Promise<(sourceUrl: string, options?: string) => string> {
  const lib = (await import(pathToFileURL(path.join(ctx.repoRoot, 'dist', 'index.js')).href)) as { buildImagePath?: BuildImagePath };
  const build = lib.buildImagePath;
  if (typeof build !== 'function') throw new Error('dist/index.js does not export buildImagePath');
  const key = Buffer.from(ctx.keyHex, 'hex');
  return (sourceUrl, options = '_') => build(key, sourceUrl, options);
}

/** Signs with the CLI (`fastimagecache sign --options`), the documented contract for option strings. */
export async function signWithCli(ctx: BenchContext, urls: string[], options: string): Promise<string[]> {
  const out = await runCommand(
    process.execPath,
    [path.join(ctx.repoRoot, 'bin', 'fastimagecache.js'), 'sign', ...urls, '--options', options],
    { cwd: ctx.repoRoot, env: ficEnv(ctx, {}), timeoutMs: 30_000 },
  );
  const lines = out.stdout.split('\n').filter((l) => l.startsWith('/i/'));
  if (out.code !== 0 || lines.length !== urls.length) {
    throw new Error(`fastimagecache sign --options ${options} failed (exit ${String(out.code)}): ${out.stderr.trim().slice(0, 300)}`);
  }
  return lines;
}

/** The environment of a bench fastimagecache: the loopback origin allowed explicitly, nothing inherited. */
export function ficEnv(ctx: BenchContext, extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FASTIMAGECACHE_')) env[k] = v;
  return {
    ...env,
    FASTIMAGECACHE_KEY: ctx.keyHex,
    FASTIMAGECACHE_ALLOW_HTTP: 'true',
    FASTIMAGECACHE_ALLOWED_PORTS: '*',
    FASTIMAGECACHE_ALLOWED_PRIVATE_RANGES: '127.0.0.1/32',
    FASTIMAGECACHE_STATE_DIR: path.join(ctx.workDir, 'fic-state'),
    FASTIMAGECACHE_LOG_LEVEL: 'warn',
    ...ctx.ficSettings,
    ...extra,
  };
}

export interface FicStartOptions {
  id?: SystemId;
  label?: string;
  cacheDir: string;
  /** `--workers N` (1: a single process); without the flag if the build refuses it (one process then). */
  workers: number;
  /** Extra FASTIMAGECACHE_* settings. */
  env?: Record<string, string>;
  /** Extra node flags, e.g. --cpu-prof. */
  nodeFlags?: string[];
  signer: (sourceUrl: string, options?: string) => string;
  /** Signed resize paths by origin path (from signWithCli), when transforms are supported. */
  resizePaths?: Map<string, string>;
}

export async function startFastImageCache(ctx: BenchContext, opts: FicStartOptions): Promise<SystemHandle> {
  const notes: string[] = [];
  const port = await freePort();
  const launch = (withWorkers: boolean) =>
    startService(
      opts.id ?? 'fastimagecache',
      process.execPath,
      [
        ...(opts.nodeFlags ?? []),
        path.join(ctx.repoRoot, 'bin', 'fastimagecache.js'),
        'serve',
        '--host', HOST,
        '--port', String(port),
        '--cache-dir', opts.cacheDir,
        ...(withWorkers ? ['--workers', String(opts.workers)] : []),
      ],
      { logDir: ctx.logDir, cwd: ctx.repoRoot, env: ficEnv(ctx, opts.env ?? {}) },
    );
  const baseUrl = `http://${HOST}:${port}`;
  let service = launch(true);
  try {
    await waitForHttp(`${baseUrl}/healthz`, { timeoutMs: 60_000, service });
  } catch (err) {
    const log = readLog(ctx, service.name);
    if (service.hasExited() && /workers/i.test(log)) {
      notes.push(`--workers not supported by this build: ran 1 process`);
      service = launch(false);
      await waitForHttp(`${baseUrl}/healthz`, { timeoutMs: 60_000, service });
    } else {
      await service.stop();
      throw new Error(`${(err as Error).message}; log: ${log.trim().split('\n').slice(-3).join(' | ')}`);
    }
  }
  // Workers may still be forking; give them a moment before counting.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const processes = processTree(service.pid).length;
  const workers = processes > 1 ? processes - 1 : 1;
  const label = opts.label ?? (processes > 1 ? `fastimagecache (${workers} workers)` : 'fastimagecache (1 process)');
  return {
    id: opts.id ?? 'fastimagecache',
    label,
    baseUrl,
    service,
    caches: true,
    proxies: true,
    notes,
    hitPath: (originPath) => opts.signer(originUrl(ctx, originPath)),
    ...(opts.resizePaths
      ? {
          resizePath: (originPath: string) => {
            const p = opts.resizePaths?.get(originPath);
            if (!p) throw new Error(`no signed resize path for ${originPath}`);
            return p;
          },
        }
      : {}),
  };
}

/** How many processes serve requests (the workers, not the primary). */
export function servingProcesses(handle: SystemHandle): number {
  const n = processTree(handle.service.pid).length;
  return n > 1 ? n - 1 : 1;
}

function readLog(ctx: BenchContext, name: string): string {
  try {
    return readFileSync(path.join(ctx.logDir, `${name}.log`), 'utf8');
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------- nginx

export async function startNginx(ctx: BenchContext): Promise<SystemHandle> {
  const binary = ctx.peers.nginx.path;
  if (!binary) throw new Error(`nginx not available: ${ctx.peers.nginx.missing ?? ''}`);
  const dir = path.join(ctx.workDir, 'nginx');
  for (const sub of ['cache', 'tmp/client', 'tmp/proxy', 'tmp/fastcgi', 'tmp/uwsgi', 'tmp/scgi']) {
    mkdirSync(path.join(dir, sub), { recursive: true });
  }
  const port = await freePort();
  const asRoot = process.getuid?.() === 0;
  const conf = `# written by the fastimagecache bench
${asRoot ? 'user root;  # workers must read the bench temp dir (0700, root)' : ''}
worker_processes ${ctx.cpus};
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 60s;
  keepalive_requests 1000000;
  client_body_temp_path ${dir}/tmp/client;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=images:64m max_size=8g inactive=7d use_temp_path=off;
  upstream origin {
    server ${HOST}:${ctx.originPort};
    keepalive 64;
  }
  server {
    listen ${HOST}:${port};
    location = /healthz { return 200 "ok\\n"; }
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache images;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 30s;
      proxy_cache_lock_age 30s;
      proxy_cache_valid 200 7d;
      add_header X-Cache $upstream_cache_status;
    }
  }
}
`;
  writeFileSync(path.join(dir, 'nginx.conf'), conf);
  const service = startService('nginx', binary, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')], {
    logDir: ctx.logDir,
  });
  const baseUrl = `http://${HOST}:${port}`;
  await waitForHttp(`${baseUrl}/healthz`, { timeoutMs: 20_000, service });
  return {
    id: 'nginx',
    label: `nginx proxy_cache (${ctx.cpus} workers)`,
    baseUrl,
    service,
    caches: true,
    proxies: true,
    notes: [],
    hitPath: (p) => p,
  };
}

// ---------------------------------------------------------------- Varnish

export async function startVarnish(ctx: BenchContext): Promise<SystemHandle> {
  const binary = ctx.peers.varnish.path;
  if (!binary) throw new Error(`varnish not available: ${ctx.peers.varnish.missing ?? ''}`);
  const dir = path.join(ctx.workDir, 'varnish');
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const vcl = `vcl 4.1;
# written by the fastimagecache bench
backend origin { .host = "${HOST}"; .port = "${ctx.originPort}"; }
sub vcl_recv {
  if (req.url == "/healthz") { return (synth(200, "ok")); }
}
sub vcl_backend_response {
  set beresp.ttl = 7d;
  set beresp.grace = 0s;
}
sub vcl_deliver {
  if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; }
}
`;
  writeFileSync(path.join(dir, 'default.vcl'), vcl);
  const args = [
    '-F', // foreground: the bench owns the process and stops it
    '-n', path.join(dir, 'work'),
    '-a', `${HOST}:${port}`,
    '-f', path.join(dir, 'default.vcl'),
    '-s', 'malloc,1G',
    '-T', 'none',
    ...(process.getuid?.() === 0 ? ['-j', 'none'] : []), // as root without a jail: it uses our temp dir
  ];
  const service = startService('varnish', binary, args, { logDir: ctx.logDir });
  const baseUrl = `http://${HOST}:${port}`;
  await waitForHttp(`${baseUrl}/healthz`, { timeoutMs: 30_000, service });
  return {
    id: 'varnish',
    label: 'Varnish (malloc 1 GB)',
    baseUrl,
    service,
    caches: true,
    proxies: true,
    notes: [],
    hitPath: (p) => p,
  };
}

// ---------------------------------------------------------------- ipx

export async function startIpx(ctx: BenchContext): Promise<SystemHandle> {
  if (!ctx.peers.ipx.path) throw new Error(`ipx not available: ${ctx.peers.ipx.missing ?? ''}`);
  const port = await freePort();
  const service = startService('ipx', process.execPath, [path.join(import.meta.dirname, 'ipx-server.ts'), String(port), PEERS_DIR], {
    logDir: ctx.logDir,
  });
  const baseUrl = `http://${HOST}:${port}`;
  await waitForHttp(`${baseUrl}/`, { timeoutMs: 30_000, service, ok: () => true });
  const origin = `http://${HOST}:${ctx.originPort}`;
  return {
    id: 'ipx',
    label: 'ipx (1 process)',
    baseUrl,
    service,
    caches: false,
    proxies: true,
    notes: ['ipx keeps no cache: every request fetches the source (HEAD + GET) and runs sharp'],
    hitPath: (p) => `/_/${origin}${p}`,
    resizePath: (p) => `/w_300,f_webp/${origin}${p}`,
  };
}

// ---------------------------------------------------------------- node:http ceiling

export async function startNodeCeiling(ctx: BenchContext, workers: number): Promise<SystemHandle> {
  const port = await freePort();
  const configFile = path.join(ctx.workDir, 'node-ceiling.json');
  writeFileSync(configFile, JSON.stringify({ port, workers, originPort: ctx.originPort, photos: ctx.photos }));
  const service = startService('node-ceiling', process.execPath, [path.join(import.meta.dirname, 'node-ceiling.ts'), configFile], {
    logDir: ctx.logDir,
  });
  const baseUrl = `http://${HOST}:${port}`;
  await waitForHttp(`${baseUrl}/img/x/${ctx.photos[0]?.name ?? ''}`, { timeoutMs: 20_000, service });
  return {
    id: 'node',
    label: `node:http ceiling (${workers} ${workers > 1 ? 'workers' : 'process'})`,
    baseUrl,
    service,
    caches: true,
    proxies: false,
    notes: [
      'hits are the same bytes from memory; its resize cold figure is the Node resize ceiling: `/rz/` fetches the photo from ' +
        'the origin with node:http (keep-alive agent, one buffer per body) and runs raw sharp\'s call, rotate().resize({ width: 300 }).webp(), ' +
        'nothing else (no checks, no cache, no storage), in as many processes as fastimagecache has workers: what any Node ' +
        'server reaches here, with the load generator and the origin on the same cores (raw sharp has them to itself); no warm resize (it keeps nothing)',
    ],
    hitPath: (p) => p,
    resizePath: (p) => {
      if (!p.startsWith('/img/')) throw new Error(`not an origin path: ${p}`);
      return `/rz/${p.slice('/img/'.length)}`;
    },
    warmResize: false,
  };
}
