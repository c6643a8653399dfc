import type { ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';

/**
 * Waits for a spawned `fastimagecache serve` to print its start-up banner on
 * stderr; resolves with the URL it listens on and a reader of all stderr so far.
 * Rejects if the process exits first or nothing comes within `timeoutMs`.
 */
export function waitForBanner(
  child: ChildProcessByStdio<null, Readable, Readable>,
  timeoutMs: number,
): Promise<{ url: string; stderr: () => string }> {
  let stderr = '';
  child.stderr.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`no banner: ${stderr}`));
    }, timeoutMs);
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
      const m = /listening on (http:\/\/[^\s]+)/.exec(stderr);
      if (m?.[1] && /sign a URL/.test(stderr)) {
        clearTimeout(timer);
        resolve({ url: m[1], stderr: () => stderr });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited ${String(code)}: ${stderr}`));
    });
  });
}
