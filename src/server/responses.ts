import type { ServerResponse } from 'node:http';
import { FastImageCacheError, toFastImageCacheError } from '../errors.ts';
import { noteResponse } from './response-note.ts';

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
  const retryAfter: Record<string, string> = error.retryAfterSeconds === undefined ? {} : { 'Retry-After': String(Math.max(1, Math.ceil(error.retryAfterSeconds))) };
  sendUncached(res, error.status, JSON_TYPE, JSON.stringify(error.toJSON()), requestId, head, retryAfter);
  return error;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * A small generated answer (error, status page, JSON report) that no cache may keep.
 * Once headers are out (a failure mid-stream) only the end is sent.
 */
function sendUncached(
  res: ServerResponse,
  status: number,
  contentType: string,
  text: string,
  requestId: string,
  head: boolean,
  extraHeaders: Record<string, string> = {},
): void {
  if (!res.headersSent) {
    const bytes = Buffer.byteLength(text);
    noteResponse(res, bytes);
    res.writeHead(status, {
      ...SECURITY_HEADERS,
      'Content-Type': contentType,
      'Content-Length': bytes,
      'Cache-Control': 'no-store',
      'X-Request-Id': requestId,
      ...extraHeaders,
    });
  }
  res.end(head ? undefined : text);
}

export function sendText(res: ServerResponse, status: number, text: string, requestId: string, head = false): void {
  sendUncached(res, status, 'text/plain; charset=utf-8', text, requestId, head);
}

/** A JSON report (admin API, /readyz); `pretty` indents it for people reading it with curl. */
export function sendJson(res: ServerResponse, status: number, body: unknown, requestId: string, options: { head?: boolean; pretty?: boolean } = {}): void {
  const text = `${JSON.stringify(body, null, options.pretty ? 2 : undefined)}\n`;
  sendUncached(res, status, JSON_TYPE, text, requestId, options.head ?? false);
}

/** True if an If-None-Match header matches the entity tag (weak comparison, as RFC 9110 says for this header). */
export function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  if (ifNoneMatch.trim() === '*') return true;
  const bare = etag.replace(/^W\//, '');
  return ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === bare);
}
