import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

/**
 * Signed URLs: signature = base64url(HMAC-SHA256(key, `{options}/{source}`)),
 * where `source` is the origin URL in base64url, both without padding.
 */

/** The literal that may stand in for a signature when signing is not required. */
export const UNSAFE_SIGNATURE = 'unsafe';

export function encodeSource(sourceUrl: string): string {
  return Buffer.from(sourceUrl, 'utf8').toString('base64url');
}

export function sign(key: Buffer, options: string, encodedSource: string): string {
  return createHmac('sha256', key).update(`${options}/${encodedSource}`).digest('base64url');
}

// A KeyObject per key, made once: createHmac() with a raw Buffer prepares the key again on every request.
const keyObjects = new WeakMap<Buffer, KeyObject>();
function keyObjectOf(key: Buffer): KeyObject {
  let found = keyObjects.get(key);
  if (found === undefined) {
    found = createSecretKey(key);
    keyObjects.set(key, found);
  }
  return found;
}

/** True if `signature` was made by any of `keys`. Constant time per key. */
export function verifySignature(keys: readonly Buffer[], signature: string, options: string, encodedSource: string): boolean {
  if (!/^[A-Za-z0-9_-]{43}$/.test(signature)) return false; // 32 bytes in base64url, unpadded
  const given = Buffer.from(signature, 'base64url');
  // The last base64url character carries 2 spare bits: accept only the canonical spelling.
  if (given.toString('base64url') !== signature) return false;
  let ok = false;
  for (const key of keys) {
    const expected = createHmac('sha256', keyObjectOf(key)).update(`${options}/${encodedSource}`).digest();
    // Check every key (no early exit) so timing does not tell which key matched.
    if (timingSafeEqual(given, expected)) ok = true;
  }
  return ok;
}

/** `/i/{signature}/{options}/{source}` for a source URL, signed with `key`. */
export function buildImagePath(key: Buffer, sourceUrl: string, options = '_'): string {
  const source = encodeSource(sourceUrl);
  return `/i/${sign(key, options, source)}/${options}/${source}`;
}
