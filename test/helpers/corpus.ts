/**
 * Access to the real-world image corpus (see its README.md and MANIFEST.tsv).
 *
 * The corpus lives outside the repository, so every test that uses it must
 * skip cleanly when it is absent (a fresh clone, CI without the data):
 *
 *   const corpus = loadCorpus();
 *   test('…', { skip: corpus.skip }, () => { … });
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const CORPUS_ENV = 'FASTIMAGECACHE_CORPUS';

/** The `expect` column: what the proxy should do with the file. */
export type CorpusExpectation = 'accept' | 'accept-at-limit' | 'reject' | 'reject-or-passthrough' | 'policy';

const EXPECTATIONS: ReadonlySet<string> = new Set([
  'accept',
  'accept-at-limit',
  'reject',
  'reject-or-passthrough',
  'policy',
]);

/** One MANIFEST.tsv line. Text columns are kept verbatim; `-` means unknown. */
export interface CorpusRow {
  /** Relative to the corpus root, e.g. `valid/sharp__flowers.jpeg`. */
  path: string;
  bytes: number;
  sha256: string;
  /** `file -b` output. */
  file_b_format: string;
  /** `WxH` (one frame for animations) or `-`. */
  dimensions: string;
  source: string;
  license: string;
  note: string;
  expect: CorpusExpectation;
  /** Expected Content-Type for accepted files, `image/svg+xml` for svg/, else `-`. */
  content_type: string;
  /** The `sharp_<version>_buffer_decode` column: what sharp did with the file. */
  sharp_decode: string;
}

export type Corpus = { root: string; rows: CorpusRow[]; skip?: undefined } | { skip: string };

/** Where the corpus is expected: $FASTIMAGECACHE_CORPUS, else ../shared/corpus next to the repo. */
export function corpusRoot(): string {
  const fromEnv = process.env[CORPUS_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return resolve(fromEnv);
  // test/helpers/ -> repo root -> ../shared/corpus
  return resolve(import.meta.dirname, '..', '..', '..', 'shared', 'corpus');
}

/** Reads MANIFEST.tsv, or says why the corpus tests must skip. Throws if the manifest is malformed. */
export function loadCorpus(): Corpus {
  const root = corpusRoot();
  const manifest = join(root, 'MANIFEST.tsv');
  if (!existsSync(manifest)) {
    return {
      skip: `image corpus not found at ${root} (no MANIFEST.tsv); set ${CORPUS_ENV}=/path/to/corpus to run these tests`,
    };
  }
  return { root, rows: parseManifest(readFileSync(manifest, 'utf8')) };
}

/**
 * Reads a corpus file and checks its size and sha256 against the manifest, so
 * a test never draws conclusions from a damaged or replaced file.
 */
export function readCorpusFile(root: string, row: CorpusRow): Buffer {
  const body = readFileSync(join(root, row.path));
  if (body.length !== row.bytes) {
    throw new Error(`${row.path}: ${body.length} bytes, manifest says ${row.bytes}`);
  }
  const sha256 = createHash('sha256').update(body).digest('hex');
  if (sha256 !== row.sha256) {
    throw new Error(`${row.path}: sha256 ${sha256}, manifest says ${row.sha256}`);
  }
  return body;
}

/** `WxH` to numbers; undefined for `-`. */
export function parseDimensions(dimensions: string): { width: number; height: number } | undefined {
  const match = /^(\d+)x(\d+)$/.exec(dimensions);
  if (match === null) return undefined;
  return { width: Number(match[1]), height: Number(match[2]) };
}

function parseManifest(text: string): CorpusRow[] {
  const [headerLine, ...lines] = text.trimEnd().split('\n');
  const header = (headerLine ?? '').split('\t');
  const columnIndex = (name: string | RegExp): number => {
    const index = header.findIndex((h) => (typeof name === 'string' ? h === name : name.test(h)));
    if (index < 0) throw new Error(`MANIFEST.tsv: no column ${String(name)}`);
    return index;
  };
  const col = {
    path: columnIndex('path'),
    bytes: columnIndex('bytes'),
    sha256: columnIndex('sha256'),
    file_b_format: columnIndex('file_b_format'),
    dimensions: columnIndex('dimensions'),
    source: columnIndex('source'),
    license: columnIndex('license'),
    note: columnIndex('note'),
    expect: columnIndex('expect'),
    content_type: columnIndex('content_type'),
    sharp_decode: columnIndex(/^sharp_.*_decode$/),
  };

  return lines.map((line, i) => {
    const cells = line.split('\t');
    const cell = (index: number): string => {
      const value = cells[index];
      if (value === undefined) throw new Error(`MANIFEST.tsv line ${i + 2}: missing column ${header[index]}`);
      return value;
    };
    const expect = cell(col.expect);
    if (!EXPECTATIONS.has(expect)) throw new Error(`MANIFEST.tsv line ${i + 2}: unknown expect ${expect}`);
    return {
      path: cell(col.path),
      bytes: Number(cell(col.bytes)),
      sha256: cell(col.sha256),
      file_b_format: cell(col.file_b_format),
      dimensions: cell(col.dimensions),
      source: cell(col.source),
      license: cell(col.license),
      note: cell(col.note),
      expect: expect as CorpusExpectation,
      content_type: cell(col.content_type),
      sharp_decode: cell(col.sharp_decode),
    };
  });
}
