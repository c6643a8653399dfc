import type { ImageFormat } from './types.ts';

/**
 * Drops metadata without touching pixels: JPEG, PNG, GIF and WebP files are
 * rebuilt from an allow-list of their segments/chunks/blocks (image data and
 * rendering essentials), so EXIF (GPS), XMP, IPTC, comments, text chunks,
 * thumbnails, unknown chunks and bytes after the end of the image are gone,
 * with no re-encoding loss and no decode.
 *
 * Returns undefined when that is not enough and the image must be re-encoded
 * instead: an ICC profile (colours must be converted to sRGB; a JPEG's is
 * dropped instead with dropSrgbProfile, when it only restates sRGB), an EXIF
 * orientation other than 1 (`orientation`, as sharp read it, must be applied
 * to the pixels), CMYK or unusual JPEG codings, AVIF and TIFF, or any
 * structure the walker does not recognise.
 */
export function stripMetadataLosslessly(
  buf: Buffer,
  format: ImageFormat,
  orientation: number | undefined,
  /** `buf` is the caller's to overwrite: a JPEG may be rebuilt inside it (see buildInPlace). */
  reuseInput = false,
  /** A JPEG's ICC profile restates sRGB (isSrgbProfile): drop it like metadata instead of refusing. */
  dropSrgbProfile = false,
): Buffer | undefined {
  if (orientation !== undefined && orientation !== 1) return undefined;
  try {
    switch (format) {
      case 'jpeg':
        return stripJpeg(buf, { icc: dropSrgbProfile ? 'drop' : 'refuse', orientation: 1, reuseInput });
      case 'png':
        return stripPng(buf);
      case 'gif':
        return stripGif(buf);
      case 'webp':
        return stripWebp(buf);
      default:
        return undefined;
    }
  } catch {
    return undefined; // a read past the end: a file we cannot vouch for is re-encoded
  }
}

/**
 * A JPEG source kept only to be transformed: like stripMetadataLosslessly,
 * except that what the transform still needs stays, so no re-encode is
 * needed: the ICC profile (the transform converts to sRGB through it) and
 * the orientation, rewritten as a minimal EXIF block holding that one tag
 * (no GPS, no camera, no dates). Passthrough must not serve this as it is
 * (see carriesTransformOnlyMetadata). Undefined when the walker cannot
 * vouch for the file (CMYK, unusual codings, unknown segments).
 */
export function stripJpegForTransforms(buf: Buffer, orientation: number | undefined, reuseInput = false): Buffer | undefined {
  try {
    return stripJpeg(buf, { icc: 'keep', orientation: orientation ?? 1, reuseInput });
  } catch {
    return undefined;
  }
}

/**
 * True for a JPEG that still carries an EXIF block or an ICC profile before
 * its first scan: what stripJpegForTransforms keeps, and what a cleaned
 * source never has. Reads segment headers only.
 */
export function carriesTransformOnlyMetadata(buf: Buffer): boolean {
  if (buf.length < 4 || buf.readUInt16BE(0) !== 0xffd8) return false;
  let pos = 2;
  while (pos + 4 <= buf.length && buf[pos] === 0xff) {
    const marker = buf[pos + 1];
    if (marker === 0xda || marker === 0xd9 || marker === undefined) return false;
    if (marker === 0xe1 || marker === 0xe2) return true;
    pos += 2 + buf.readUInt16BE(pos + 2);
  }
  return false;
}

/** Huffman baseline, extended and progressive: what every browser shows. Lossless, arithmetic and hierarchical are re-encoded. */
const JPEG_FRAMES_OK: ReadonlySet<number> = new Set([0xc0, 0xc1, 0xc2]);
/** DHT, DQT, DRI. */
const JPEG_TABLES: ReadonlySet<number> = new Set([0xc4, 0xdb, 0xdd]);

interface JpegKeep {
  /**
   * An ICC profile: kept (a transform converts through it), dropped (it only
   * restates sRGB), or a reason to give up (colours must be converted).
   */
  icc: 'keep' | 'drop' | 'refuse';
  /** Written back as a one-tag EXIF block when not 1. */
  orientation: number;
  /** The result may be built inside `buf` (buildInPlace). */
  reuseInput: boolean;
}

function stripJpeg(buf: Buffer, keep: JpegKeep): Buffer | undefined {
  if (buf.readUInt16BE(0) !== 0xffd8) return undefined;
  const kept: Buffer[] = [buf.subarray(0, 2)];
  let pos = 2;
  let sawFrame = false;
  for (;;) {
    if (buf[pos] !== 0xff) return undefined;
    while (buf[pos + 1] === 0xff) pos += 1; // fill bytes
    const marker = buf[pos + 1];
    if (marker === undefined) return undefined;
    if (marker === 0xd9) {
      kept.push(buf.subarray(pos, pos + 2)); // EOI; anything after it is dropped
      if (!sawFrame) return undefined;
      if (keep.orientation !== 1) kept.splice(kept[1]?.[1] === 0xe0 ? 2 : 1, 0, orientationExif(keep.orientation)); // after SOI (and JFIF)
      return (keep.reuseInput ? buildInPlace(buf, kept) : undefined) ?? Buffer.concat(kept);
    }
    const length = buf.readUInt16BE(pos + 2);
    const end = pos + 2 + length;
    if (length < 2 || end > buf.length) return undefined;
    const segment = buf.subarray(pos, end);
    const payload = buf.subarray(pos + 4, end);

    if (JPEG_FRAMES_OK.has(marker)) {
      const components = payload[5];
      // CMYK/YCCK need conversion to be served; a transform converts them anyway (Adobe segment and profile are kept).
      if (sawFrame || !(components === 1 || components === 3 || (components === 4 && keep.icc === 'keep'))) return undefined;
      sawFrame = true;
      kept.push(segment);
    } else if (JPEG_TABLES.has(marker)) {
      kept.push(segment);
    } else if (marker === 0xda) {
      if (!sawFrame) return undefined;
      const next = nextMarkerAfterScan(buf, end);
      kept.push(buf.subarray(pos, next));
      pos = next;
      continue;
    } else if (marker === 0xe0) {
      if (isPlainJfif(payload)) kept.push(segment); // else a JFIF/JFXX thumbnail: dropped
    } else if (marker === 0xee) {
      if (payload.toString('latin1', 0, 5) === 'Adobe') kept.push(segment); // colour transform flag, not metadata
    } else if (marker === 0xe2 && payload.toString('latin1', 0, 12) === 'ICC_PROFILE\0') {
      if (keep.icc === 'keep') kept.push(segment);
      else if (keep.icc === 'refuse') return undefined; // colours must be converted to sRGB
    } else if ((marker >= 0xe1 && marker <= 0xef) || marker === 0xfe) {
      // APP1-APP15 (EXIF, XMP, MPF, IPTC, Ducky…) and COM: dropped
    } else {
      return undefined; // other frame types, DNL, anything unexpected
    }
    pos = end;
  }
}

/** Puts back the bytes of the input that a reuseInput strip overwrote to build `stripped` (nothing for a copy). */
export function restoreInput(stripped: Buffer): void {
  restorers.get(stripped)?.();
  restorers.delete(stripped);
}

const restorers = new WeakMap<Buffer, () => void>();

/**
 * The stripped JPEG as a view of `buf` itself, without a copy of the file:
 * what is dropped (EXIF with its thumbnail, XMP, IPTC) sits between SOI and
 * the tables, so the kept segments from the tables to EOI are one run at the
 * end of the file, and only the few pieces before that run (SOI, JFIF, the
 * profile, the orientation block) are moved up against it, over dropped
 * bytes. A cold miss then allocates one whole-file buffer fewer, and those
 * allocations are what set off V8's full collections (its external-memory
 * accounting): bench/README.md, "Cold resize". restoreInput() puts back the
 * overwritten bytes. Undefined (copy instead) when the pieces do not allow
 * it, or when the view would keep more dropped bytes alive than a quarter of
 * the result (dead weight the memory tier, which counts the whole buffer,
 * would hold in place of other entries).
 */
function buildInPlace(buf: Buffer, pieces: Buffer[]): Buffer | undefined {
  const offsetIn = (piece: Buffer): number => {
    const at = piece.byteOffset - buf.byteOffset;
    return piece.buffer === buf.buffer && at >= 0 && at + piece.length <= buf.length ? at : -1;
  };
  const last = pieces.at(-1);
  if (last === undefined) return undefined;
  let first = pieces.length - 1;
  let runStart = offsetIn(last);
  if (runStart < 0) return undefined;
  const end = runStart + last.length;
  for (let i = first - 1; i >= 0; i--) {
    const at = offsetIn(pieces[i] as Buffer);
    if (at < 0 || at + (pieces[i] as Buffer).length !== runStart) break;
    first = i;
    runStart = at;
  }
  let begin = runStart;
  for (let i = 0; i < first; i++) begin -= (pieces[i] as Buffer).length;
  if (begin < 0 || buf.buffer.byteLength - (end - begin) > (end - begin) / 4) return undefined;
  // Every head piece moves up, never down: moved from the last to the first, none overwrites one still to move.
  const moves: Array<{ piece: Buffer; to: number; from: number }> = [];
  for (let i = 0, to = begin; i < first; to += (pieces[i] as Buffer).length, i++) {
    const piece = pieces[i] as Buffer;
    const from = offsetIn(piece);
    if (from > to) return undefined;
    moves.push({ piece, to, from });
  }
  const overwritten = Buffer.from(buf.subarray(begin, runStart));
  for (const { piece, to, from } of moves.reverse()) {
    if (from < 0) piece.copy(buf, to);
    else buf.copyWithin(to, from, from + piece.length);
  }
  const view = buf.subarray(begin, end);
  restorers.set(view, () => overwritten.copy(buf, begin));
  return view;
}

/** An APP1 EXIF segment whose only tag is Orientation (big-endian TIFF, one IFD entry). */
function orientationExif(orientation: number): Buffer {
  if (!(Number.isInteger(orientation) && orientation >= 2 && orientation <= 8)) throw new RangeError(`orientation ${orientation}`);
  const b = Buffer.alloc(36);
  b.writeUInt16BE(0xffe1, 0);
  b.writeUInt16BE(b.length - 2, 2);
  b.write('Exif\0\0', 4, 'latin1');
  b.write('MM', 10, 'latin1');
  b.writeUInt16BE(42, 12);
  b.writeUInt32BE(8, 14); // IFD0 right after the header
  b.writeUInt16BE(1, 18); // one entry:
  b.writeUInt16BE(0x0112, 20); // Orientation,
  b.writeUInt16BE(3, 22); // SHORT,
  b.writeUInt32BE(1, 24); // count 1,
  b.writeUInt16BE(orientation, 28); // value (left-aligned in the 4-byte field)
  return b; // next-IFD offset: the zeroed last 4 bytes
}

/** APP0 "JFIF\0" without an embedded thumbnail. */
function isPlainJfif(payload: Buffer): boolean {
  return payload.length === 14 && payload.toString('latin1', 0, 5) === 'JFIF\0' && payload[12] === 0 && payload[13] === 0;
}

/** Position of the first marker after entropy-coded data: 0xFF followed by neither 0x00 (stuffing), 0xFF (fill) nor RSTn. */
function nextMarkerAfterScan(buf: Buffer, pos: number): number {
  for (let i = buf.indexOf(0xff, pos); i !== -1 && i + 1 < buf.length; i = buf.indexOf(0xff, i + 1)) {
    const next = buf[i + 1] ?? 0;
    if (next === 0x00 || next === 0xff || (next >= 0xd0 && next <= 0xd7)) continue;
    return i;
  }
  throw new RangeError('JPEG ends inside a scan');
}

/** Image data, transparency, rendering hints and APNG frames. iCCP means conversion; text, eXIf, tIME and unknown ancillary chunks are dropped. */
const PNG_CHUNKS_KEPT: ReadonlySet<string> = new Set([
  'IHDR', 'PLTE', 'IDAT', 'IEND', 'tRNS', 'sRGB', 'gAMA', 'cHRM', 'sBIT', 'bKGD', 'pHYs', 'acTL', 'fcTL', 'fdAT',
]);

function stripPng(buf: Buffer): Buffer | undefined {
  const kept: Buffer[] = [buf.subarray(0, 8)]; // signature, checked by the sniffer
  let pos = 8;
  for (;;) {
    const length = buf.readUInt32BE(pos);
    const type = buf.toString('latin1', pos + 4, pos + 8);
    const end = pos + 12 + length;
    if (end > buf.length) return undefined;
    if (type === 'iCCP') return undefined;
    const critical = /^[A-Z]/.test(type);
    if (PNG_CHUNKS_KEPT.has(type)) kept.push(buf.subarray(pos, end));
    else if (critical) return undefined; // a critical chunk we do not know: cannot vouch for the file
    if (type === 'IEND') return Buffer.concat(kept); // bytes after IEND are dropped
    pos = end;
  }
}

function stripGif(buf: Buffer): Buffer | undefined {
  const flags = buf[10] ?? 0;
  let pos = 13 + (flags & 0x80 ? 3 * 2 ** ((flags & 0x07) + 1) : 0);
  const kept: Buffer[] = [buf.subarray(0, pos)]; // header, screen descriptor, global colour table
  for (;;) {
    const introducer = buf[pos];
    if (introducer === 0x3b) {
      kept.push(buf.subarray(pos, pos + 1)); // trailer; anything after it is dropped
      return Buffer.concat(kept);
    }
    const start = pos;
    if (introducer === 0x2c) {
      const local = buf[pos + 9] ?? 0;
      pos = skipSubBlocks(buf, pos + 10 + (local & 0x80 ? 3 * 2 ** ((local & 0x07) + 1) : 0) + 1);
      kept.push(buf.subarray(start, pos));
    } else if (introducer === 0x21) {
      const label = buf[pos + 1];
      pos = skipSubBlocks(buf, pos + 2);
      const id = buf.toString('latin1', start + 3, start + 14);
      const animation = label === 0xff && buf[start + 2] === 11 && (id === 'NETSCAPE2.0' || id === 'ANIMEXTS1.0');
      if (label === 0xf9 || animation) kept.push(buf.subarray(start, pos)); // graphic control, loop count
      // comments, plain text, XMP and other application data: dropped
    } else {
      return undefined;
    }
  }
}

function skipSubBlocks(buf: Buffer, pos: number): number {
  for (;;) {
    const size = buf[pos];
    if (size === undefined) throw new RangeError('GIF ends inside a block');
    pos += 1 + size;
    if (size === 0) return pos;
  }
}

/** Bitstream, alpha and animation chunks. ICCP means conversion; EXIF, XMP and unknown chunks are dropped. */
const WEBP_CHUNKS_KEPT: ReadonlySet<string> = new Set(['VP8 ', 'VP8L', 'VP8X', 'ALPH', 'ANIM', 'ANMF']);
/** VP8X flag bits of the EXIF and XMP chunks we drop. */
const VP8X_EXIF_XMP = 0x08 | 0x04;

function stripWebp(buf: Buffer): Buffer | undefined {
  const end = 8 + buf.readUInt32LE(4);
  if (end > buf.length) return undefined; // cut short; bytes after the RIFF container are dropped
  const kept: Buffer[] = [];
  let sawImage = false;
  let pos = 12;
  while (pos < end) {
    const type = buf.toString('latin1', pos, pos + 4);
    const size = buf.readUInt32LE(pos + 4);
    const next = pos + 8 + size + (size & 1);
    if (next > end) return undefined;
    if (type === 'ICCP') return undefined;
    if (WEBP_CHUNKS_KEPT.has(type)) {
      if (type === 'VP8 ' || type === 'VP8L' || type === 'ANMF') sawImage = true;
      const chunk = Buffer.from(buf.subarray(pos, next));
      if (type === 'VP8X') chunk[8] = (chunk[8] ?? 0) & ~VP8X_EXIF_XMP;
      kept.push(chunk);
    }
    pos = next;
  }
  if (!sawImage) return undefined;
  const body = Buffer.concat(kept);
  const header = Buffer.alloc(12);
  header.write('RIFF', 0, 'latin1');
  header.writeUInt32LE(body.length + 4, 4);
  header.write('WEBP', 8, 'latin1');
  return Buffer.concat([header, body]);
}
