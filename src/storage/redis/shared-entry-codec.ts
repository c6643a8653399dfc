import { KEY_ID_LENGTH, NONCE_LENGTH, TAG_LENGTH, type EntryCipher } from '../entry-cipher.ts';

/**
 * How one cache entry is laid out in a Redis string value (one value per
 * entry, so a reader gets metadata and body from the same write):
 *
 * - plain:  `FIC1` | uint32 BE length of the metadata | metadata JSON (UTF-8) | body
 * - sealed: `FIS1` | key id | nonce | tag | AES-256-GCM of the plain value, bound to its Redis key
 *
 * When entries are encrypted at rest, the shared tier seals them too: Redis
 * then holds nothing readable, and nothing a Redis client could forge.
 */

const PLAIN = Buffer.from('FIC1', 'ascii');
const SEALED = Buffer.from('FIS1', 'ascii');
const HEADER_BYTES = PLAIN.length + 4;
const SEALED_HEADER_BYTES = SEALED.length + KEY_ID_LENGTH + NONCE_LENGTH + TAG_LENGTH;
/** Metadata is a few hundred bytes; anything near this is not ours. */
const MAX_META_BYTES = 64 * 1024;

/** Encrypts values with `cipher`, authenticated with `aad` (the Redis key), when given. */
export interface Sealing {
  cipher: EntryCipher;
  aad: Buffer;
}

export function encodeSharedEntry(meta: object, body: Buffer, sealing?: Sealing): Buffer {
  const metaBytes = Buffer.from(JSON.stringify(meta), 'utf8');
  const header = Buffer.alloc(HEADER_BYTES);
  PLAIN.copy(header, 0);
  header.writeUInt32BE(metaBytes.length, PLAIN.length);
  const plain = Buffer.concat([header, metaBytes, body]);
  if (sealing === undefined) return plain;
  const { nonce, tag, ciphertext } = sealing.cipher.seal(plain, sealing.aad);
  return Buffer.concat([SEALED, sealing.cipher.currentKeyId, nonce, tag, ciphertext]);
}

/**
 * The metadata object and body, or undefined when the value is not a
 * well-formed entry: with `sealing`, only a value sealed under one of its keys
 * for this very Redis key is accepted; without it, only a plain one.
 */
export function decodeSharedEntry(value: Buffer, sealing?: Sealing): { meta: Record<string, unknown>; body: Buffer } | undefined {
  let plain = value;
  if (sealing !== undefined) {
    if (value.length < SEALED_HEADER_BYTES || !value.subarray(0, SEALED.length).equals(SEALED)) return undefined;
    let at = SEALED.length;
    const keyId = value.subarray(at, (at += KEY_ID_LENGTH));
    const nonce = value.subarray(at, (at += NONCE_LENGTH));
    const tag = value.subarray(at, (at += TAG_LENGTH));
    const opened = sealing.cipher.open(keyId, nonce, tag, value.subarray(at), sealing.aad);
    if (opened === undefined) return undefined;
    plain = opened;
  }
  if (plain.length < HEADER_BYTES || !plain.subarray(0, PLAIN.length).equals(PLAIN)) return undefined;
  const metaLength = plain.readUInt32BE(PLAIN.length);
  if (metaLength > MAX_META_BYTES || HEADER_BYTES + metaLength > plain.length) return undefined;
  let meta: unknown;
  try {
    meta = JSON.parse(plain.subarray(HEADER_BYTES, HEADER_BYTES + metaLength).toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) return undefined;
  // A copy, so the body does not pin the whole value (or ioredis's reply buffer).
  return { meta: meta as Record<string, unknown>, body: Buffer.from(plain.subarray(HEADER_BYTES + metaLength)) };
}
