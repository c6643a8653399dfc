import { hash } from 'node:crypto';

/** SHA-256 of `data` in hex: the integrity hash of every entry body, wherever it is made or checked. One-shot, no Hash object. */
export function sha256Hex(data: Buffer): string {
  return hash('sha256', data, 'hex');
}
