/**
 * The photos the bench serves: real files from the corpus
 * (`../shared/corpus/valid/`, or `$FASTIMAGECACHE_CORPUS/valid/`), or, when
 * the corpus is absent, photo-like images generated with sharp (said so in
 * the report).
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';

export interface Photo {
  /** File name, used as the last URL segment. */
  name: string;
  file: string;
  bytes: number;
  contentType: string;
}

export interface PhotoSet {
  /** Where the photos came from, for the report. */
  source: string;
  generated: boolean;
  /** Static photos for the hit scenarios (8 KB to 1 MB). */
  photos: Photo[];
  /** Larger JPEG photos for the resize scenario. */
  resizePhotos: Photo[];
}

const TYPES: Record<string, string> = {
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.webp': 'image/webp',
};

export function corpusRoot(): string {
  const fromEnv = process.env.FASTIMAGECACHE_CORPUS;
  if (fromEnv) return path.resolve(fromEnv);
  return path.resolve(import.meta.dirname, '..', '..', 'shared', 'corpus');
}

/** Animated files (per the corpus manifest) are left out: the hit path should move photos, not GIF loops. */
function animatedNames(root: string): Set<string> {
  const manifest = path.join(root, 'MANIFEST.tsv');
  const out = new Set<string>();
  if (!existsSync(manifest)) return out;
  for (const line of readFileSync(manifest, 'utf8').split('\n').slice(1)) {
    const cols = line.split('\t');
    if (cols[0]?.startsWith('valid/') && /animat|APNG/i.test(cols[7] ?? '')) out.add(path.basename(cols[0]));
  }
  return out;
}

export async function loadPhotos(workDir: string): Promise<PhotoSet> {
  const root = corpusRoot();
  const valid = path.join(root, 'valid');
  if (existsSync(valid)) {
    const animated = animatedNames(root);
    const photos: Photo[] = [];
    for (const name of readdirSync(valid).sort()) {
      const type = TYPES[path.extname(name).toLowerCase()];
      if (!type || animated.has(name) || !/^[\w.-]+$/.test(name)) continue;
      const file = path.join(valid, name);
      const bytes = statSync(file).size;
      if (bytes < 8 * 1024 || bytes > 1024 * 1024) continue;
      photos.push({ name, file, bytes, contentType: type });
    }
    const resizePhotos = photos.filter((p) => p.contentType === 'image/jpeg' && p.bytes >= 100 * 1024);
    if (photos.length >= 4 && resizePhotos.length >= 2) {
      return { source: `${valid} (${photos.length} photos)`, generated: false, photos, resizePhotos };
    }
  }
  return generatePhotos(workDir, `corpus not found at ${valid}`);
}

/** Noise-textured gradients encoded as JPEG: compress like photos do, not like flat colour. */
async function generatePhotos(workDir: string, why: string): Promise<PhotoSet> {
  const dir = path.join(workDir, 'generated-photos');
  mkdirSync(dir, { recursive: true });
  const photos: Photo[] = [];
  for (let i = 0; i < 24; i++) {
    const width = 1200 + (i % 4) * 200;
    const height = 800 + (i % 3) * 150;
    const noise = await sharp({
      create: { width, height, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 110 + i * 3, sigma: 40 } },
    })
      .blur(1.2)
      .modulate({ hue: i * 15, saturation: 1.4 })
      .jpeg({ quality: 80 })
      .toBuffer();
    const name = `generated-${String(i).padStart(2, '0')}.jpg`;
    const file = path.join(dir, name);
    writeFileSync(file, noise);
    photos.push({ name, file, bytes: noise.length, contentType: 'image/jpeg' });
  }
  return {
    source: `GENERATED with sharp (${why}): ${photos.length} noise-textured JPEGs`,
    generated: true,
    photos,
    resizePhotos: photos,
  };
}
