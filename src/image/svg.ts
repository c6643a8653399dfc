import { spawn } from 'node:child_process';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FastImageCacheError } from '../errors.ts';

/**
 * SVG sources, for `svg: rasterize`: recognised from their text, rendered to
 * PNG in a child process that is killed at the deadline (librsvg cannot be
 * interrupted from inside: a billion-laughs `<use>` file runs for ~30 s
 * whatever sharp's timeout says), and never served as SVG.
 */

/** How far into the file the root element must appear. */
const SNIFF_BYTES = 4096;
/** What String.prototype.trimStart() removes that a UTF-8 file can start with in one byte: tab, LF, VT, FF, CR, space. */
const ASCII_SPACE: ReadonlySet<number> = new Set([0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20]);

/**
 * True when the bytes are an uncompressed SVG document: optional BOM, XML
 * declaration, comments, processing instructions and DOCTYPE, then an `<svg`
 * root element. Gzipped `.svgz` is not accepted.
 */
export function looksLikeSvg(buf: Buffer): boolean {
  // Every raster format starts with binary magic bytes: only text starting with '<' is decoded and parsed.
  let first = buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0;
  while (first < buf.length && ASCII_SPACE.has(buf[first] as number)) first += 1;
  if (buf[first] !== 0x3c) return false;
  let text = buf.toString('utf8', 0, Math.min(buf.length, SNIFF_BYTES));
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  for (;;) {
    text = text.trimStart();
    const prolog = /^(<\?[^]*?\?>|<!--[^]*?-->|<!DOCTYPE\s[^[>]*(\[[^]*?\])?\s*>)/i.exec(text);
    if (prolog === null) break;
    text = text.slice(prolog[0].length);
  }
  return /^<svg[\s>/]/.test(text);
}

export interface RasterizeOptions {
  /** Kill the renderer after this long. */
  timeoutMs: number;
  /** Largest rendered size, in pixels (checked by sharp from the SVG's own size before rendering). */
  maxPixels: number;
}

/** The renderer script next to this module (.ts when running from source, .js when built). */
const WORKER = fileURLToPath(new URL(`./svg-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url));

/**
 * Renders an SVG to PNG. The child gets an empty environment (no secrets in
 * a process parsing hostile input) and the SVG on stdin, so there is no base
 * path or URL that relative references could resolve against; librsvg loads
 * no network resources. DOCTYPE entity declarations are refused outright.
 */
export async function rasterizeSvg(svg: Buffer, options: RasterizeOptions): Promise<Buffer> {
  if (/<!ENTITY/i.test(svg.toString('latin1'))) {
    throw new FastImageCacheError('not_an_image', 'SVG declares XML entities');
  }
  const maxOutput = options.maxPixels * 4 + 1024 * 1024; // more than any PNG of that many pixels
  return new Promise<Buffer>((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER, String(options.maxPixels)], { env: {}, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let outBytes = 0;
    let errText = '';
    let failure: FastImageCacheError | undefined;
    const fail = (error: FastImageCacheError): void => {
      failure ??= error;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => {
      fail(new FastImageCacheError('too_large', `timeout: SVG rendering exceeded ${options.timeoutMs} ms`));
    }, options.timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes > maxOutput) fail(new FastImageCacheError('too_large', 'rendered SVG output too large'));
      else out.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (errText.length < 2000) errText += chunk.toString('utf8');
    });
    child.stdin.on('error', () => {}); // the child may exit before reading everything; its exit code tells
    child.on('error', (err) => {
      fail(new FastImageCacheError('internal_error', `SVG renderer: ${err.message}`, { cause: err }));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (failure) {
        reject(failure);
      } else if (code !== 0) {
        const message = errText.trim().slice(0, 500);
        const tooBig = /exceeds (?:the )?pixel limit/i.test(message);
        reject(new FastImageCacheError(tooBig ? 'too_large' : 'not_an_image', `SVG rendering failed: ${message}`));
      } else {
        resolve(Buffer.concat(out));
      }
    });
    child.stdin.end(svg);
  });
}
