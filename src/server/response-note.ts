import type { ServerResponse } from 'node:http';

/**
 * What a response's writer tells the metrics about it: headers given to
 * writeHead() as an object cannot be read back with getHeader(), and parsing
 * them again for every response showed up in the hit path's profile.
 */
export interface ResponseNote {
  /** Body bytes (as in Content-Length). */
  bytes: number;
  /** The X-Cache value of an image response. */
  cache: string | undefined;
}

const notes = new WeakMap<ServerResponse, ResponseNote>();

export function noteResponse(res: ServerResponse, bytes: number, cache?: string): void {
  notes.set(res, { bytes, cache });
}

export function responseNote(res: ServerResponse): ResponseNote | undefined {
  return notes.get(res);
}
