import type { EntryMeta, StoredEntry } from './types.ts';

/**
 * One entry = one file, so a hit is one open and one read:
 *
 *   offset 0  4 bytes  magic "FICE"
 *   offset 4  2 bytes  codec version (uint16 BE)
 *   offset 6  4 bytes  metadata length N (uint32 BE)
 *   offset 10 N bytes  metadata, UTF-8 JSON
 *   then      body bytes (meta.size of them, to the end of the file)
 */
export const ENTRY_MAGIC = Buffer.from('FICE', 'latin1');
export const ENTRY_CODEC_VERSION = 1;
export const ENTRY_HEADER_LENGTH = 10;

/** The entry as buffers to write in order, so large bodies are not copied. */
export function encodeEntryParts(entry: StoredEntry): Buffer[] {
  const meta = Buffer.from(JSON.stringify(entry.meta), 'utf8');
  const header = Buffer.alloc(ENTRY_HEADER_LENGTH);
  ENTRY_MAGIC.copy(header, 0);
  header.writeUInt16BE(ENTRY_CODEC_VERSION, 4);
  header.writeUInt32BE(meta.length, 6);
  return [header, meta, entry.body];
}

export function encodeEntry(entry: StoredEntry): Buffer {
  return Buffer.concat(encodeEntryParts(entry));
}

/** The entry in `buf`, or undefined for anything malformed or truncated. Never throws. */
export function decodeEntry(buf: Buffer): StoredEntry | undefined {
  if (buf.length < ENTRY_HEADER_LENGTH) return undefined;
  if (!buf.subarray(0, 4).equals(ENTRY_MAGIC)) return undefined;
  if (buf.readUInt16BE(4) !== ENTRY_CODEC_VERSION) return undefined;
  const metaLength = buf.readUInt32BE(6);
  const bodyStart = ENTRY_HEADER_LENGTH + metaLength;
  if (bodyStart > buf.length) return undefined;

  let parsed: unknown;
  try {
    parsed = JSON.parse(buf.toString('utf8', ENTRY_HEADER_LENGTH, bodyStart));
  } catch {
    return undefined;
  }
  const meta = toEntryMeta(parsed);
  if (meta === undefined) return undefined;

  const body = buf.subarray(bodyStart);
  // A short body means a truncated file; the rest of integrity is the cache manager's job.
  if (body.length !== meta.size) return undefined;
  return { meta, body };
}

/** Checks the shape of decoded metadata and keeps only the known fields. */
function toEntryMeta(value: unknown): EntryMeta | undefined {
  if (!isRecord(value)) return undefined;
  const { key, sourceUrl, options, contentType, size, sha256, storedAt, origin } = value;
  if (
    typeof key !== 'string' ||
    typeof sourceUrl !== 'string' ||
    typeof options !== 'string' ||
    typeof contentType !== 'string' ||
    typeof sha256 !== 'string' ||
    !Number.isSafeInteger(size) ||
    (size as number) < 0 ||
    typeof storedAt !== 'number' ||
    !Number.isFinite(storedAt) ||
    !isRecord(origin)
  ) {
    return undefined;
  }
  const cleanOrigin: EntryMeta['origin'] = {};
  for (const field of ['etag', 'lastModified', 'cacheControl', 'expires', 'date'] as const) {
    const v = origin[field];
    if (v === undefined) continue;
    if (typeof v !== 'string') return undefined;
    cleanOrigin[field] = v;
  }
  return { key, sourceUrl, options, contentType, size: size as number, sha256, storedAt, origin: cleanOrigin };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
