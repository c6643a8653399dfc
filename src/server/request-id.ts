import { randomBytes } from 'node:crypto';

/**
 * Request ids for logs and the X-Request-Id header: 80 random bits per
 * process plus a 48-bit counter, spelled like a UUID (8-4-4-4-12 hex) so log
 * tooling that expects one keeps working. Unique across processes and
 * restarts for the cost of an increment, where randomUUID() per request
 * showed up in the hit path's profile. Ids only correlate a response with
 * its log lines: they are not secrets.
 */
const random = randomBytes(10).toString('hex');
const PREFIX = `${random.slice(0, 8)}-${random.slice(8, 12)}-${random.slice(12, 16)}-${random.slice(16, 20)}-`;
const COUNTER_LIMIT = 2 ** 48;
let counter = 0;

export function nextRequestId(): string {
  counter = (counter + 1) % COUNTER_LIMIT;
  return PREFIX + counter.toString(16).padStart(12, '0');
}
