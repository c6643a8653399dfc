import type { ServerResponse } from 'node:http';
import { FastImageCacheError, toFastImageCacheError } from '../errors.ts';

/** Headers on every response: nothing served here may run as a page or be sniffed into one. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'X-Content-Type-Options': 'nosniff',
  'Content-Security-Policy': "default-src 'none'; sandbox",
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Resource-Policy': 'cross-origin',
};

/** A refusal: status, stable code, generic message. Details stay in the log. */
export function sendError(res: ServerResponse, err: unknown, requestId: string, head = false): FastImageCacheError {
  const error = toFastImageCacheError(err);
  const body = JSON.stringify(error.toJSON());
  if (!res.headersSent) {
    res.writeHead(error.status, {
      ...SECURITY_HEADERS,
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
      'Cache-Control': 'no-store',
      'X-Request-Id': requestId,
      ...(error.retryAfterSeconds === undefined ? {} : { 'Retry-After': String(Math.max(1, Math.ceil(error.retryAfterSeconds))) }),
    });
  }
  res.end(head ? undefined : body);
  return error;
}

export function sendText(res: ServerResponse, status: number, text: string, requestId: string, head = false): void {
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    'X-Request-Id': requestId,
  });
  res.end(head ? undefined : text);
}

/** True if an If-None-Match header matches the entity tag (weak comparison, as RFC 9110 says for this header). */
export function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  if (ifNoneMatch.trim() === '*') return true;
  const bare = etag.replace(/^W\//, '');
  return ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === bare);
}
