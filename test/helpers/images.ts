import sharp from 'sharp';

/** A real image made in the test (no fixture files needed): a gradient-ish noise so sizes are realistic. */
export async function makeImage(format: 'jpeg' | 'png' | 'webp' | 'gif' | 'avif' | 'tiff', width = 64, height = 48): Promise<Buffer> {
  const channels = 3;
  const raw = Buffer.alloc(width * height * channels);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 37 + (i >> 5)) & 0xff;
  return sharp(raw, { raw: { width, height, channels } }).toFormat(format).toBuffer();
}
