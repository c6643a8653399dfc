/**
 * What a transform needs to know of a JPEG before decoding it, read from its
 * segments in JS: frame size, components, EXIF orientation and the ICC
 * profile. sharp's metadata() answers the same from libvips, which reads and
 * parses every segment (libexif the whole EXIF block) and costs a trip through
 * the thread pool of about 1.2 ms per photo on every cold resize; this walk
 * costs microseconds.
 *
 * It only vouches for plain files: anything unusual returns undefined, and
 * the caller asks sharp instead. Unusual means: a frame type other than
 * baseline, extended or progressive Huffman; a height defined later (DNL);
 * more than one frame or EXIF block; an EXIF block whose TIFF header or first
 * IFD does not parse cleanly (bad byte order, offsets or entry types, an
 * Orientation that is not one SHORT from 1 to 8, or given twice); ICC chunks
 * that do not number 1..n exactly once each; a segment running past the end
 * or a stray marker before the first scan. On such files libexif and libvips
 * may read something else than a strict reader would, so they decide.
 *
 * Not a validity check: the transform decodes the pixels afterwards, failing
 * on decoder warnings, and a file that does not decode is refused then.
 */
export interface JpegHeader {
  width: number;
  height: number;
  /** 1 (grey), 3 (YCbCr/RGB) or 4 (CMYK/YCCK). */
  components: number;
  /** EXIF orientation (1-8), undefined when the file has none (as sharp reports it). */
  orientation: number | undefined;
  /** The ICC profile, its chunks joined in order, as sharp's metadata() gives it. */
  icc: Buffer | undefined;
}

/** SOF0, SOF1, SOF2: the Huffman codings every decoder and browser reads. */
const PLAIN_FRAMES: ReadonlySet<number> = new Set([0xc0, 0xc1, 0xc2]);
/** TIFF field types and their sizes in bytes (TIFF 6.0: BYTE … DOUBLE). */
const TIFF_TYPE_SIZE: readonly number[] = [0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8];
const ORIENTATION_TAG = 0x0112;
const SHORT = 3;
const ICC_SIGNATURE = 'ICC_PROFILE\0';

export function readJpegHeader(buf: Buffer): JpegHeader | undefined {
  if (buf.length < 4 || buf[0] !== 0xff || buf[1] !== 0xd8) return undefined;
  let frame: { width: number; height: number; components: number } | undefined;
  let exifSeen = false;
  let orientation: number | undefined;
  const iccChunks: Buffer[] = [];
  let iccCount = 0;
  let pos = 2;
  for (;;) {
    if (buf[pos] !== 0xff) return undefined;
    while (buf[pos + 1] === 0xff) pos += 1; // fill bytes
    const marker = buf[pos + 1];
    if (marker === undefined || pos + 4 > buf.length) return undefined;
    if (marker === 0xda) break; // start of scan: every header segment has been seen
    if (marker === 0xd8 || marker === 0xd9 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) return undefined;
    const length = buf.readUInt16BE(pos + 2);
    const end = pos + 2 + length;
    if (length < 2 || end > buf.length) return undefined;
    const payload = buf.subarray(pos + 4, end);

    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (frame !== undefined || !PLAIN_FRAMES.has(marker) || payload.length < 6) return undefined;
      frame = { height: payload.readUInt16BE(1), width: payload.readUInt16BE(3), components: payload[5] as number };
      if (frame.height === 0 || frame.width === 0) return undefined; // DNL-defined height, or nonsense
    } else if (marker === 0xe1 && payload.toString('latin1', 0, 6) === 'Exif\0\0') {
      if (exifSeen) return undefined;
      exifSeen = true;
      const read = readOrientation(payload.subarray(6));
      if (read === false) return undefined;
      orientation = read;
    } else if (marker === 0xe2 && payload.toString('latin1', 0, 12) === ICC_SIGNATURE) {
      const seq = payload[12] ?? 0;
      const count = payload[13] ?? 0;
      if (count === 0 || seq === 0 || seq > count || (iccCount !== 0 && count !== iccCount) || iccChunks[seq - 1] !== undefined) return undefined;
      iccCount = count;
      iccChunks[seq - 1] = payload.subarray(14);
    }
    pos = end;
  }
  if (frame === undefined) return undefined;
  let icc: Buffer | undefined;
  if (iccCount > 0) {
    for (let i = 0; i < iccCount; i++) if (iccChunks[i] === undefined) return undefined;
    icc = Buffer.concat(iccChunks);
  }
  return { ...frame, orientation, icc };
}

/**
 * The Orientation of IFD0 of a TIFF structure (an EXIF block after its
 * "Exif\0\0"): a number 1-8, undefined when IFD0 has none, false when the
 * structure is anything but clean.
 */
function readOrientation(tiff: Buffer): number | undefined | false {
  if (tiff.length < 8) return false;
  const order = tiff.toString('latin1', 0, 2);
  if (order !== 'II' && order !== 'MM') return false;
  const le = order === 'II';
  const u16 = (at: number) => (le ? tiff.readUInt16LE(at) : tiff.readUInt16BE(at));
  const u32 = (at: number) => (le ? tiff.readUInt32LE(at) : tiff.readUInt32BE(at));
  if (u16(2) !== 42) return false;
  const ifd = u32(4);
  if (ifd < 8 || ifd + 2 > tiff.length) return false;
  const entries = u16(ifd);
  if (entries === 0 || ifd + 2 + 12 * entries + 4 > tiff.length) return false;
  let orientation: number | undefined;
  for (let i = 0; i < entries; i++) {
    const at = ifd + 2 + 12 * i;
    const tag = u16(at);
    const type = u16(at + 2);
    const count = u32(at + 4);
    const size = TIFF_TYPE_SIZE[type];
    if (size === undefined || size === 0) return false;
    const bytes = size * count;
    if (bytes > 4) {
      const offset = u32(at + 8);
      if (offset < 8 || offset + bytes > tiff.length) return false;
    }
    if (tag !== ORIENTATION_TAG) continue;
    if (orientation !== undefined || type !== SHORT || count !== 1) return false;
    const value = u16(at + 8);
    if (value < 1 || value > 8) return false;
    orientation = value;
  }
  return orientation;
}
