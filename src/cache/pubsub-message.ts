/** A pub/sub payload as a plain object, or undefined for anything that is not a JSON object (peers are not trusted to be well-formed). */
export function parseJsonRecord(raw: string): Record<string, unknown> | undefined {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return undefined;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}
