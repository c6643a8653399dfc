/**
 * Whether an embedded ICC profile only restates sRGB, so that dropping it
 * changes no colour: converting through it to sRGB would be the identity
 * (plus a re-encode's loss), and an untagged image is read as sRGB anyway.
 * Camera and phone JPEGs mostly carry one. Read from the profile's own
 * numbers (primaries and tone curves), never from its name.
 *
 * Only matrix/TRC RGB display profiles qualify: RGB data, XYZ connection
 * space, no lookup-table transforms (A2B or B2A tags, which a colour engine
 * would use instead of the matrix), colorants within COLORANT_TOLERANCE of
 * sRGB's, and the same tone curve on all three channels within
 * CURVE_TOLERANCE of sRGB's. Anything else, or anything malformed, is false:
 * the caller then converts as before.
 */
export function isSrgbProfile(icc: Buffer): boolean {
  try {
    return readsAsSrgb(icc);
  } catch {
    return false; // a read past the end: a profile we cannot vouch for
  }
}

/** sRGB's primaries adapted to D50, as in the IEC 61966-2.1 profile (rXYZ, gXYZ, bXYZ). */
const SRGB_COLORANTS: Readonly<Record<string, readonly [number, number, number]>> = {
  rXYZ: [0.4361, 0.2225, 0.0139],
  gXYZ: [0.3851, 0.7169, 0.0971],
  bXYZ: [0.1431, 0.0606, 0.7141],
};
/** Published sRGB profiles round these differently in the fourth decimal; other RGB spaces differ in the second. */
const COLORANT_TOLERANCE = 0.003;
/** Half an 8-bit step: gamma 2.2, the nearest common impostor, is twice as far off. */
const CURVE_TOLERANCE = 0.002;
const CURVE_SAMPLES = 256;

function readsAsSrgb(icc: Buffer): boolean {
  if (icc.length < 132 || icc.readUInt32BE(0) > icc.length) return false;
  if (icc.toString('latin1', 16, 20) !== 'RGB ' || icc.toString('latin1', 20, 24) !== 'XYZ ') return false;
  const tags = new Map<string, Buffer>();
  const count = icc.readUInt32BE(128);
  if (count > 1000) return false;
  for (let i = 0; i < count; i++) {
    const at = 132 + i * 12;
    const offset = icc.readUInt32BE(at + 4);
    const size = icc.readUInt32BE(at + 8);
    if (offset + size > icc.length) return false;
    tags.set(icc.toString('latin1', at, at + 4), icc.subarray(offset, offset + size));
  }
  for (const sig of tags.keys()) if (sig.startsWith('A2B') || sig.startsWith('B2A')) return false;
  for (const [sig, expected] of Object.entries(SRGB_COLORANTS)) {
    const xyz = tags.get(sig);
    if (xyz?.toString('latin1', 0, 4) !== 'XYZ ' || xyz.length < 20) return false;
    for (let k = 0; k < 3; k++) {
      if (Math.abs(xyz.readInt32BE(8 + 4 * k) / 65536 - (expected[k] as number)) > COLORANT_TOLERANCE) return false;
    }
  }
  const curves = ['rTRC', 'gTRC', 'bTRC'].map((sig) => tags.get(sig));
  const [r, g, b] = curves;
  if (r === undefined || g === undefined || b === undefined || !r.equals(g) || !r.equals(b)) return false;
  const curve = toneCurve(r);
  if (curve === undefined) return false;
  for (let i = 0; i < CURVE_SAMPLES; i++) {
    const x = i / (CURVE_SAMPLES - 1);
    if (!(Math.abs(curve(x) - srgbToLinear(x)) <= CURVE_TOLERANCE)) return false;
  }
  return true;
}

function srgbToLinear(x: number): number {
  return x <= 0.04045 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4;
}

/** An ICC 'curv' or 'para' tag as a function on [0, 1]; undefined for any other type. */
function toneCurve(tag: Buffer): ((x: number) => number) | undefined {
  const type = tag.toString('latin1', 0, 4);
  if (type === 'curv') {
    const n = tag.readUInt32BE(8);
    if (tag.length < 12 + 2 * n) return undefined;
    if (n === 0) return (x) => x;
    if (n === 1) {
      const gamma = tag.readUInt16BE(12) / 256;
      return (x) => x ** gamma;
    }
    const at = (i: number) => tag.readUInt16BE(12 + 2 * i) / 65535;
    return (x) => {
      const pos = x * (n - 1);
      const i = Math.min(Math.floor(pos), n - 2);
      return at(i) + (at(i + 1) - at(i)) * (pos - i);
    };
  }
  if (type === 'para') {
    const kind = tag.readUInt16BE(8);
    const counts = [1, 3, 4, 5, 7];
    const wanted = counts[kind];
    if (wanted === undefined || tag.length < 12 + 4 * wanted) return undefined;
    const p = Array.from({ length: 7 }, (_, i) => (i < wanted ? tag.readInt32BE(12 + 4 * i) / 65536 : 0));
    const [gamma, a, b, c, d, e, f] = p as [number, number, number, number, number, number, number];
    const power = (x: number) => {
      const base = a * x + b;
      return base > 0 ? base ** gamma : 0;
    };
    switch (kind) {
      case 0:
        return (x) => x ** gamma;
      case 1:
        return (x) => (x >= -b / a ? power(x) : 0);
      case 2:
        return (x) => (x >= -b / a ? power(x) + c : c);
      case 3:
        return (x) => (x >= d ? power(x) : c * x);
      default:
        return (x) => (x >= d ? power(x) + e : c * x + f);
    }
  }
  return undefined;
}
