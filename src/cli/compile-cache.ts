import { lstatSync, mkdirSync } from 'node:fs';
import module from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Turns on Node's module compile cache: start-up is mostly compiling modules,
 * and V8's code cache on disk lets the next start (and every cluster worker)
 * skip most of it. Call it before the modules it should cover are imported.
 *
 * `NODE_COMPILE_CACHE=dir` names the directory (Node turned it on already),
 * `NODE_DISABLE_COMPILE_CACHE=1` turns it off. Otherwise it is a directory of
 * this user's in the temporary directory, used only if this user owns it and
 * no one else may write to it: its contents are run as code. Never fails:
 * without the cache, start-up is only slower.
 */
export function enableCompileCache(): void {
  try {
    // Node itself reads these two; with either set there is nothing left to decide here.
    if (process.env.NODE_COMPILE_CACHE !== undefined || process.env.NODE_DISABLE_COMPILE_CACHE) return;
    const uid = process.getuid?.();
    const dir = join(tmpdir(), uid === undefined ? 'fastimagecache-compile-cache' : `fastimagecache-compile-cache-${String(uid)}`);
    try {
      mkdirSync(dir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return;
    }
    const stat = lstatSync(dir);
    if (!stat.isDirectory() || (uid !== undefined && (stat.uid !== uid || (stat.mode & 0o077) !== 0))) return;
    module.enableCompileCache(dir);
  } catch {
    // e.g. no writable temporary directory
  }
}
