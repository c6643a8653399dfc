import { EntryCipher, KEY_ID_LENGTH, NONCE_LENGTH, TAG_LENGTH } from './entry-cipher.ts';
import type { EntryMeta, Freshness, StoredEntry } from './types.ts';

/**
 * One entry = one file, so a hit is one open and one read.
 *
 * Plain (flags 0):
 *   0  4  magic "FICE"          4  2  codec version (uint16 BE)     6  1  flags
 *   7  4  metadata length N     11 N  metadata, UTF-8 JSON          then the body, to the end
 *
 * Encrypted (flags 1), AES-256-GCM with a random nonce per part:
 *   0  7  as above              7  8  key id
 *   15 12 metadata nonce        27 16 metadata tag                  43 4  metadata length N
 *   47 N  metadata ciphertext   then 12 body nonce, 16 body tag, body ciphertext to the end
 * The metadata is authenticated with the header (key id included) as
 * associated data, the body with the header and the metadata tag, so neither
 * can be swapped with another entry's.
 */
export const ENTRY_MAGIC = Buffer.from('FICE', 'latin1');
export const ENTRY_CODEC_VERSION = 2;
const FLAG_ENCRYPTED = 1;
const PREFIX_LENGTH = 7;
/** Plain header length (prefix + metadata length). */
export const ENTRY_HEADER_LENGTH = PREFIX_LENGTH + 4;
const SEALED_HEADER_LENGTH = PREFIX_LENGTH + KEY_ID_LENGTH;
const SEALED_META_START = SEALED_HEADER_LENGTH + NONCE_LENGTH + TAG_LENGTH + 4;
const SEALED_BODY_OVERHEAD = NONCE_LENGTH + TAG_LENGTH;

/** The entry as buffers to write in order, so large plain bodies are not copied. */
export function encodeEntryParts(entry: StoredEntry, cipher?: EntryCipher): Buffer[] {
  const meta = Buffer.from(JSON.stringify(entry.meta), 'utf8');
  if (cipher === undefined) {
    const header = prefix(0, ENTRY_HEADER_LENGTH);
    header.writeUInt32BE(meta.length, PREFIX_LENGTH);
    return [header, meta, entry.body];
  }
  const header = prefix(FLAG_ENCRYPTED, SEALED_HEADER_LENGTH);
  cipher.currentKeyId.copy(header, PREFIX_LENGTH);
  const sealedMeta = cipher.seal(meta, header);
  const sealedBody = cipher.seal(entry.body, Buffer.concat([header, sealedMeta.tag]));
  const metaLength = Buffer.alloc(4);
  metaLength.writeUInt32BE(sealedMeta.ciphertext.length, 0);
  return [
    header,
    sealedMeta.nonce,
    sealedMeta.tag,
    metaLength,
    sealedMeta.ciphertext,
    sealedBody.nonce,
    sealedBody.tag,
    sealedBody.ciphertext,
  ];
}

export function encodeEntry(entry: StoredEntry, cipher?: EntryCipher): Buffer {
  return Buffer.concat(encodeEntryParts(entry, cipher));
}

/** The entry in `buf`, or undefined for anything malformed, truncated or failing authentication. Never throws. */
export function decodeEntry(buf: Buffer, cipher?: EntryCipher): StoredEntry | undefined {
  const layout = metaLayout(buf, cipher);
  if (layout === undefined || layout.metaEnd > buf.length) return undefined;
  const meta = openMeta(buf, layout, cipher);
  if (meta === undefined) return undefined;

  let body: Buffer | undefined;
  if (!layout.encrypted) {
    body = buf.subarray(layout.metaEnd);
  } else {
    if (cipher === undefined || buf.length < layout.metaEnd + SEALED_BODY_OVERHEAD) return undefined;
    const nonce = buf.subarray(layout.metaEnd, layout.metaEnd + NONCE_LENGTH);
    const tag = buf.subarray(layout.metaEnd + NONCE_LENGTH, layout.metaEnd + SEALED_BODY_OVERHEAD);
    const aad = Buffer.concat([buf.subarray(0, SEALED_HEADER_LENGTH), layout.metaTag ?? Buffer.alloc(0)]);
    body = cipher.open(layout.keyId ?? Buffer.alloc(0), nonce, tag, buf.subarray(layout.metaEnd + SEALED_BODY_OVERHEAD), aad);
  }
  // A short body means a truncated file; the rest of integrity is the cache manager's job.
  if (body === undefined || body.length !== meta.size) return undefined;
  return { meta, body };
}

/**
 * Metadata from the first bytes of an entry file: `{ meta }`, or
 * `{ needBytes }` when `prefixBuf` is too short to hold it, or undefined when
 * it is malformed or fails authentication.
 */
export function decodeMeta(
  prefixBuf: Buffer,
  cipher?: EntryCipher,
): { meta: EntryMeta } | { needBytes: number } | undefined {
  const layout = metaLayout(prefixBuf, cipher);
  if (layout === undefined) return prefixBuf.length < SEALED_META_START ? { needBytes: SEALED_META_START } : undefined;
  if (layout.metaEnd > prefixBuf.length) return { needBytes: layout.metaEnd };
  const meta = openMeta(prefixBuf, layout, cipher);
  return meta === undefined ? undefined : { meta };
}

interface MetaLayout {
  encrypted: boolean;
  metaStart: number;
  metaEnd: number;
  keyId?: Buffer;
  metaNonce?: Buffer;
  metaTag?: Buffer;
}

/** Where the metadata lies, from the header alone; undefined if the header is not ours or is cut short. */
function metaLayout(buf: Buffer, cipher: EntryCipher | undefined): MetaLayout | undefined {
  if (buf.length < PREFIX_LENGTH || !buf.subarray(0, 4).equals(ENTRY_MAGIC)) return undefined;
  if (buf.readUInt16BE(4) !== ENTRY_CODEC_VERSION) return undefined;
  const flags = buf.readUInt8(6);
  if (flags === 0) {
    // A plain entry in an encrypted cache was not written by us: refuse it.
    if (cipher !== undefined || buf.length < ENTRY_HEADER_LENGTH) return undefined;
    return { encrypted: false, metaStart: ENTRY_HEADER_LENGTH, metaEnd: ENTRY_HEADER_LENGTH + buf.readUInt32BE(PREFIX_LENGTH) };
  }
  if (flags !== FLAG_ENCRYPTED || cipher === undefined || buf.length < SEALED_META_START) return undefined;
  return {
    encrypted: true,
    keyId: buf.subarray(PREFIX_LENGTH, SEALED_HEADER_LENGTH),
    metaNonce: buf.subarray(SEALED_HEADER_LENGTH, SEALED_HEADER_LENGTH + NONCE_LENGTH),
    metaTag: buf.subarray(SEALED_HEADER_LENGTH + NONCE_LENGTH, SEALED_HEADER_LENGTH + NONCE_LENGTH + TAG_LENGTH),
    metaStart: SEALED_META_START,
    metaEnd: SEALED_META_START + buf.readUInt32BE(SEALED_META_START - 4),
  };
}

function openMeta(buf: Buffer, layout: MetaLayout, cipher: EntryCipher | undefined): EntryMeta | undefined {
  let json: Buffer | undefined = buf.subarray(layout.metaStart, layout.metaEnd);
  if (layout.encrypted) {
    if (cipher === undefined || layout.keyId === undefined || layout.metaNonce === undefined || layout.metaTag === undefined) {
      return undefined;
    }
    json = cipher.open(layout.keyId, layout.metaNonce, layout.metaTag, json, buf.subarray(0, SEALED_HEADER_LENGTH));
    if (json === undefined) return undefined;
  }
  try {
    return toEntryMeta(JSON.parse(json.toString('utf8')));
  } catch {
    return undefined;
  }
}

function prefix(flags: number, length: number): Buffer {
  const header = Buffer.alloc(length);
  ENTRY_MAGIC.copy(header, 0);
  header.writeUInt16BE(ENTRY_CODEC_VERSION, 4);
  header.writeUInt8(flags, 6);
  return header;
}

/** Checks the shape of decoded metadata and keeps only the known fields. */
function toEntryMeta(value: unknown): EntryMeta | undefined {
  if (!isRecord(value)) return undefined;
  const { key, sourceKey, sourceUrl, variant, contentType, size, sha256, sourceSha256, storedAt, freshness, origin, decoded } = value;
  if (
    typeof key !== 'string' ||
    typeof sourceKey !== 'string' ||
    typeof sourceUrl !== 'string' ||
    typeof variant !== 'string' ||
    typeof contentType !== 'string' ||
    typeof sha256 !== 'string' ||
    typeof sourceSha256 !== 'string' ||
    !Number.isSafeInteger(size) ||
    (size as number) < 0 ||
    !isFiniteNumber(storedAt) ||
    !isRecord(origin)
  ) {
    return undefined;
  }
  const cleanFreshness = toFreshness(freshness);
  if (cleanFreshness === undefined) return undefined;
  const cleanOrigin: EntryMeta['origin'] = {};
  for (const field of ['etag', 'lastModified', 'cacheControl', 'expires', 'date', 'age'] as const) {
    const v = origin[field];
    if (v === undefined) continue;
    if (typeof v !== 'string') return undefined;
    cleanOrigin[field] = v;
  }
  return {
    key,
    sourceKey,
    sourceUrl,
    variant,
    contentType,
    size: size as number,
    sha256,
    sourceSha256,
    storedAt,
    freshness: cleanFreshness,
    origin: cleanOrigin,
    ...(decoded === true ? { decoded } : {}),
  };
}

function toFreshness(value: unknown): Freshness | undefined {
  if (!isRecord(value)) return undefined;
  const { freshUntil, staleWhileRevalidateUntil, staleIfErrorUntil, mustRevalidate } = value;
  if (!isFiniteNumber(freshUntil) || !isFiniteNumber(staleWhileRevalidateUntil) || !isFiniteNumber(staleIfErrorUntil)) {
    return undefined;
  }
  if (typeof mustRevalidate !== 'boolean') return undefined;
  return { freshUntil, staleWhileRevalidateUntil, staleIfErrorUntil, mustRevalidate };
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
