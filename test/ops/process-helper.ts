import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { TEST_KEY_HEX } from '../helpers/proxy.ts';
import { waitForBanner } from '../helpers/serve-banner.ts';

const ROOT = join(import.meta.dirname, '..', '..');
export const CLI = join(ROOT, 'src', 'cli', 'main.ts');

export interface ServeProcess {
  child: ChildProcess;
  url: string;
  /** The admin listener's URL, when a token was configured. */
  adminUrl: string | undefined;
  stderr: () => string;
  /** JSON log lines (stdout) so far. */
  logs: () => Array<Record<string, unknown>>;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(): Promise<number | null>;
  exited: Promise<number | null>;
}

/**
 * `fastimagecache serve` as a real child process, with the loopback origin
 * allowed (as tests need) and `env` on top; resolves once its banner says it listens.
 */
export async function spawnServe(home: string, args: string[], env: Record<string, string> = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', ...args], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: home,
      FASTIMAGECACHE_KEY: TEST_KEY_HEX,
      FASTIMAGECACHE_ALLOW_HTTP: 'true',
      FASTIMAGECACHE_ALLOWED_PORTS: '*',
      FASTIMAGECACHE_ALLOWED_PRIVATE_RANGES: '127.0.0.1/32',
      FASTIMAGECACHE_LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    stdout += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => { resolve(code); }));
  const { url, stderr } = await waitForBanner(child, 20_000);
  const adminUrl = /admin: +(http:\/\/[^\s]+)/.exec(stderr())?.[1];
  return {
    child,
    url,
    adminUrl,
    exited,
    stderr,
    logs: () =>
      stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Polls `check` until it returns a value other than undefined (or fails after `timeoutMs`). */
export async function eventually<T>(check: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
