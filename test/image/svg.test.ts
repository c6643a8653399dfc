import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { FastImageCacheError } from '../../src/errors.ts';
import { looksLikeSvg, rasterizeSvg } from '../../src/image/svg.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { makeTempDir } from '../helpers/tmp.ts';

const LIMITS = { timeoutMs: 10_000, maxPixels: 50_000_000 };

async function failure(run: Promise<unknown>): Promise<FastImageCacheError> {
  const err = await run.then(
    () => assert.fail('expected a refusal'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof FastImageCacheError, String(err));
  return err;
}

/** Exponential <use> nesting: 10^9 references in under 2 KB, ~5 s of librsvg before it gives up. */
function useBomb(): string {
  let defs = '<g id="l0"><rect width="1" height="1"/></g>';
  for (let i = 1; i <= 9; i++) defs += `<g id="l${i}">${`<use href="#l${i - 1}"/>`.repeat(10)}</g>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><defs>${defs}</defs><use href="#l9"/></svg>`;
}

describe('SVG recognition', () => {
  test('SVG documents with prologs are recognised; other text and binary files are not', async () => {
    const yes = [
      '<svg xmlns="http://www.w3.org/2000/svg"/>',
      '\ufeff<?xml version="1.0" encoding="UTF-8"?>\n<!-- made by hand -->\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n<svg width="10" height="10">',
      '<!DOCTYPE svg [ <!ENTITY a "b"> ]><svg>',
      '  \n<svg\nwidth="1">',
    ];
    for (const text of yes) assert.ok(looksLikeSvg(Buffer.from(text)), text);
    const no = [
      '<html><svg></svg></html>',
      '<?xml version="1.0"?><rss/>',
      '<svgfoo/>',
      'hello <svg>',
      '\u00a0<svg>', // XML allows only ASCII white space before the root element
      '',
    ];
    for (const text of no) assert.ok(!looksLikeSvg(Buffer.from(text)), text);
    assert.ok(!looksLikeSvg(gzipSync('<svg xmlns="http://www.w3.org/2000/svg"/>')), '.svgz is not accepted');
    assert.ok(!looksLikeSvg(await makeImage('png', 4, 4)));
  });
});

describe('SVG rasterizing', () => {
  let origin: Origin;
  let tmp: { dir: string; cleanup: () => void };
  before(async () => {
    origin = await startOrigin();
    tmp = makeTempDir('fic-svg-');
  });
  after(async () => {
    await origin.close();
    tmp.cleanup();
  });

  test('a plain SVG becomes a PNG of its own size', async () => {
    const png = await rasterizeSvg(
      Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30"><rect width="40" height="30" fill="#f00"/></svg>'),
      LIMITS,
    );
    const meta = await sharp(png).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 40, 30]);
  });

  test('a billion-laughs <use> bomb is killed at the deadline: too_large, in about the timeout', async () => {
    const started = performance.now();
    const err = await failure(rasterizeSvg(Buffer.from(useBomb()), { ...LIMITS, timeoutMs: 1000 }));
    const took = performance.now() - started;
    assert.equal(err.code, 'too_large');
    assert.match(err.detail ?? '', /timeout/);
    assert.ok(took < 2500, `took ${took} ms`);
  });

  test('external references are never loaded: no request reaches the origin, no local file is read', async () => {
    const red = await sharp({ create: { width: 50, height: 50, channels: 3, background: '#ff0000' } }).png().toBuffer();
    origin.serve('/red.png', red, { contentType: 'image/png' });
    origin.serve('/defs.svg', '<svg xmlns="http://www.w3.org/2000/svg"><rect id="r" width="50" height="50" fill="red"/></svg>', { contentType: 'image/svg+xml' });
    origin.serve('/style.css', 'rect { fill: red }', { contentType: 'text/css' });
    const localFile = join(tmp.dir, 'red.png');
    writeFileSync(localFile, red);
    const svg = `<?xml-stylesheet href="${origin.url}/style.css"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="50" height="50">
  <style>@import url("${origin.url}/style.css");</style>
  <image href="${origin.url}/red.png" width="50" height="50"/>
  <image xlink:href="file://${localFile}" width="50" height="50"/>
  <image href="red.png" width="50" height="50"/>
  <use href="${origin.url}/defs.svg#r"/>
  <rect width="50" height="50" fill="url(${origin.url}/red.png)"/>
</svg>`;
    const redPixels = async (png: Buffer): Promise<number> => {
      const { data, info } = await sharp(png).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
      let count = 0;
      for (let i = 0; i < info.width * info.height; i++) if ((data[i * 4] ?? 0) > 200 && (data[i * 4 + 3] ?? 0) > 200) count++;
      return count;
    };
    assert.equal(await redPixels(await rasterizeSvg(Buffer.from(svg), LIMITS)), 0, 'something external was drawn');
    assert.equal(origin.totalHits(), 0, 'the renderer contacted the origin');
    // Control: the same image inline (data: URI) is drawn, so the check above can see red.
    const inline = `<svg xmlns="http://www.w3.org/2000/svg" width="50" height="50"><image href="data:image/png;base64,${red.toString('base64')}" width="50" height="50"/></svg>`;
    assert.equal(await redPixels(await rasterizeSvg(Buffer.from(inline), LIMITS)), 2500);
  });

  test('entity declarations, broken XML and oversized canvases are refused', async () => {
    assert.equal((await failure(rasterizeSvg(Buffer.from('<!DOCTYPE svg [<!ENTITY x "y">]><svg xmlns="http://www.w3.org/2000/svg">&x;</svg>'), LIMITS))).code, 'not_an_image');
    assert.equal((await failure(rasterizeSvg(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><g></svg>'), LIMITS))).code, 'not_an_image');
    const huge = '<svg xmlns="http://www.w3.org/2000/svg" width="20000" height="20000"/>';
    assert.equal((await failure(rasterizeSvg(Buffer.from(huge), LIMITS))).code, 'too_large');
  });
});
