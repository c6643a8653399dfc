import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { isSrgbProfile } from '../../src/image/srgb-profile.ts';
import { makeImage } from '../helpers/images.ts';

/** The profile sharp embeds with withIccProfile(name), read back from a JPEG. */
async function shippedProfile(name: 'srgb' | 'p3'): Promise<Buffer> {
  const jpeg = await sharp(await makeImage('jpeg', 8, 8)).withIccProfile(name).jpeg().toBuffer();
  const { icc } = await sharp(jpeg).metadata();
  assert.ok(icc, `sharp embedded its ${name} profile`);
  return icc;
}

type Xyz = [number, number, number];
const SRGB: Record<'rXYZ' | 'gXYZ' | 'bXYZ', Xyz> = {
  rXYZ: [0.4361, 0.2225, 0.0139],
  gXYZ: [0.3851, 0.7169, 0.0971],
  bXYZ: [0.1431, 0.0606, 0.7141],
};
const s15 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(Math.round(v * 65536));
  return b;
};
const xyzTag = (v: Xyz) => Buffer.concat([Buffer.from('XYZ \0\0\0\0', 'latin1'), ...v.map(s15)]);
/** sRGB's curve as an ICC v4 parametric curve (function type 3). */
const SRGB_PARA = Buffer.concat([Buffer.from('para\0\0\0\0\0\x03\0\0', 'latin1'), ...[2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045].map(s15)]);
const gammaCurv = (gamma: number) => {
  const b = Buffer.from('curv\0\0\0\0\0\0\0\x01\0\0', 'latin1');
  b.writeUInt16BE(Math.round(gamma * 256), 12);
  return b;
};
/** sRGB's curve as a 1024-entry table. */
const SRGB_TABLE = (() => {
  const n = 1024;
  const b = Buffer.alloc(12 + 2 * n);
  b.write('curv', 0, 'latin1');
  b.writeUInt32BE(n, 8);
  for (let i = 0; i < n; i++) {
    const x = i / (n - 1);
    b.writeUInt16BE(Math.round((x <= 0.04045 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4) * 65535), 12 + 2 * i);
  }
  return b;
})();

/** A minimal matrix/TRC RGB display profile: header, tag table, tags. */
function profile(options: { colorants?: Partial<typeof SRGB>; trc?: Buffer | [Buffer, Buffer, Buffer]; extra?: Record<string, Buffer>; space?: string } = {}): Buffer {
  const colorants = { ...SRGB, ...options.colorants };
  const trc = options.trc ?? SRGB_PARA;
  const [r, g, b] = Array.isArray(trc) ? trc : [trc, trc, trc];
  const tags: Array<[string, Buffer]> = [
    ['rXYZ', xyzTag(colorants.rXYZ)],
    ['gXYZ', xyzTag(colorants.gXYZ)],
    ['bXYZ', xyzTag(colorants.bXYZ)],
    ['rTRC', r],
    ['gTRC', g],
    ['bTRC', b],
    ...Object.entries(options.extra ?? {}),
  ];
  const header = Buffer.alloc(128);
  header.write('mntr', 12, 'latin1');
  header.write(options.space ?? 'RGB ', 16, 'latin1');
  header.write('XYZ ', 20, 'latin1');
  header.write('acsp', 36, 'latin1');
  const table = Buffer.alloc(4 + 12 * tags.length);
  table.writeUInt32BE(tags.length, 0);
  let offset = 128 + table.length;
  const bodies: Buffer[] = [];
  tags.forEach(([sig, body], i) => {
    table.write(sig, 4 + 12 * i, 'latin1');
    table.writeUInt32BE(offset, 8 + 12 * i);
    table.writeUInt32BE(body.length, 12 + 12 * i);
    const padded = Buffer.concat([body, Buffer.alloc((4 - (body.length % 4)) % 4)]);
    bodies.push(padded);
    offset += padded.length;
  });
  const out = Buffer.concat([header, table, ...bodies]);
  out.writeUInt32BE(out.length, 0);
  return out;
}

describe('isSrgbProfile: read from the numbers, not the name', () => {
  test("sharp's own sRGB profile is sRGB; its Display P3 profile is not", async () => {
    assert.equal(isSrgbProfile(await shippedProfile('srgb')), true);
    assert.equal(isSrgbProfile(await shippedProfile('p3')), false);
  });

  test('sRGB primaries with sRGB curves, as a parametric curve or a table, are sRGB', () => {
    assert.equal(isSrgbProfile(profile()), true);
    assert.equal(isSrgbProfile(profile({ trc: SRGB_TABLE })), true);
  });

  test('anything that would change a colour is not', () => {
    assert.equal(isSrgbProfile(profile({ trc: gammaCurv(2.2) })), false, 'gamma 2.2: the nearest impostor');
    assert.equal(isSrgbProfile(profile({ trc: gammaCurv(1.8) })), false);
    assert.equal(isSrgbProfile(profile({ trc: [SRGB_PARA, SRGB_PARA, gammaCurv(2.2)] })), false, 'one channel differs');
    assert.equal(isSrgbProfile(profile({ colorants: { gXYZ: [0.2916, 0.6975, 0.0419] } })), false, 'Display P3 green');
    assert.equal(isSrgbProfile(profile({ colorants: { rXYZ: [0.4361 + 0.01, 0.2225, 0.0139] } })), false, 'red shifted by 0.01');
    assert.equal(isSrgbProfile(profile({ extra: { A2B0: Buffer.from('mft2\0\0\0\0', 'latin1') } })), false, 'a LUT a colour engine would prefer');
    assert.equal(isSrgbProfile(profile({ space: 'GRAY' })), false);
  });

  test('a profile without its colorants or curves, truncated, or with bad offsets is not (and never throws)', () => {
    const good = profile();
    assert.equal(isSrgbProfile(good.subarray(0, 200)), false);
    assert.equal(isSrgbProfile(Buffer.alloc(0)), false);
    const badOffset = Buffer.from(good);
    badOffset.writeUInt32BE(0xfffffff0, 132 + 4); // rXYZ's offset
    assert.equal(isSrgbProfile(badOffset), false);
    const unknownCurve = Buffer.from('zzzz\0\0\0\0', 'latin1');
    assert.equal(isSrgbProfile(profile({ trc: unknownCurve })), false);
    for (let i = 0; i < 2000; i++) {
      const mutated = Buffer.from(good);
      for (let k = 0; k < 4; k++) mutated[Math.floor(Math.random() * mutated.length)] = Math.floor(Math.random() * 256);
      assert.equal(typeof isSrgbProfile(mutated), 'boolean');
    }
  });
});
