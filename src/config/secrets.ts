import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../errors.ts';
import type { Config } from './schema.ts';

/** Smallest signing key accepted, in bytes (HMAC-SHA256 gains nothing past its block, but 32 is the floor). */
export const MIN_KEY_BYTES = 32;

/** Reads a secret file, refusing one that group or others could read. */
export function readSecretFile(path: string, setting: string): string {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (err) {
    throw new ConfigError(setting, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if ((mode & 0o077) !== 0) {
    throw new ConfigError(
      setting,
      `${path} is readable by group or others (mode ${(mode & 0o777).toString(8)}); run chmod 600 on it`,
    );
  }
  return readFileSync(path, 'utf8');
}

/** A key given as hex or base64 (standard or URL-safe), at least MIN_KEY_BYTES long once decoded. */
export function decodeKey(value: string, setting: string): Buffer {
  const text = value.trim();
  let bytes: Buffer;
  if (/^[0-9a-f]+$/i.test(text) && text.length % 2 === 0) {
    bytes = Buffer.from(text, 'hex');
  } else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) {
    bytes = Buffer.from(text, 'base64');
  } else {
    throw new ConfigError(setting, 'each key must be hex or base64');
  }
  if (bytes.length < MIN_KEY_BYTES) {
    throw new ConfigError(setting, `each key must be at least ${MIN_KEY_BYTES} bytes (got ${bytes.length})`);
  }
  return bytes;
}

export type KeySource = 'env' | 'keyFile' | 'generated' | 'state';

export interface SigningKeys {
  /** The first signs; any verifies. */
  keys: Buffer[];
  source: KeySource;
  /** The file the keys came from or were written to. */
  path?: string;
}

function keysFromText(text: string, setting: string): Buffer[] {
  const lines = text
    .split(/[\n,]/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length === 0) throw new ConfigError(setting, 'no key found');
  return lines.map((l) => decodeKey(l, setting));
}

/** Where the key generated on first start is kept. */
export function generatedKeyPath(config: Config): string {
  return join(config.stateDir, 'signing.key');
}

/**
 * The signing keys: from the environment, else keyFile, else the key generated
 * on first start (created now if absent: 32 random bytes in a 0600 file).
 */
export function resolveSigningKeys(config: Config): SigningKeys {
  if (config.key.length > 0) {
    return { keys: config.key.map((k) => decodeKey(k, 'key')), source: 'env' };
  }
  if (config.keyFile) {
    return { keys: keysFromText(readSecretFile(config.keyFile, 'keyFile'), 'keyFile'), source: 'keyFile', path: config.keyFile };
  }
  const path = generatedKeyPath(config);
  if (existsSync(path)) {
    return { keys: keysFromText(readSecretFile(path, 'stateDir'), 'stateDir'), source: 'state', path };
  }
  mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
  chmodSync(config.stateDir, 0o700);
  const key = randomBytes(32).toString('hex');
  // 'wx' fails if another process created it meanwhile; then use theirs.
  try {
    writeFileSync(path, `${key}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return { keys: keysFromText(readSecretFile(path, 'stateDir'), 'stateDir'), source: 'state', path };
  }
  return { keys: [Buffer.from(key, 'hex')], source: 'generated', path };
}
