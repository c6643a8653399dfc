/** The plain page at `/`: how to build an image URL. */
export function indexPage(requireSignature: boolean): string {
  return [
    'fastimagecache: a secure caching proxy for remote images.',
    '',
    'Image URL:  GET /i/{signature}/{options}/{source}',
    '  source     the absolute origin URL, base64url without padding',
    '  options    "_" for the original image, or key:value pairs such as "w:300,f:webp"',
    '             (p:PRESET, w, h, fit, f:jpeg|png|webp|avif|auto, q, dpr, exp:UNIX_SECONDS)',
    '  signature  base64url (no padding) of HMAC-SHA256(key, "{options}/{source}")',
    requireSignature
      ? '             signatures are required on this server'
      : '             signatures are optional here: "unsafe" may stand in for one',
    '',
    'Sign URLs with:  npx fastimagecache sign https://example.com/cat.jpg',
    'Health check:    GET /healthz',
    '',
  ].join('\n');
}
