import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';

type Env = Record<string, string | undefined>;

/** An XDG base directory from the environment, or the fallback under the home directory. */
function xdgDir(env: Env, variable: string, fallback: string[]): string {
  const fromEnv = env[variable];
  // The XDG spec says relative paths are invalid and must be ignored.
  if (fromEnv && isAbsolute(fromEnv)) return join(fromEnv, 'fastimagecache');
  const home = env.HOME && isAbsolute(env.HOME) ? env.HOME : homedir();
  return join(home, ...fallback, 'fastimagecache');
}

/** `$XDG_CACHE_HOME/fastimagecache`, else `~/.cache/fastimagecache`. */
export function defaultCacheDir(env: Env): string {
  return xdgDir(env, 'XDG_CACHE_HOME', ['.cache']);
}

/** `$XDG_STATE_HOME/fastimagecache`, else `~/.local/state/fastimagecache`. */
export function defaultStateDir(env: Env): string {
  return xdgDir(env, 'XDG_STATE_HOME', ['.local', 'state']);
}
