import assert from 'node:assert/strict';
import { FastImageCacheError, type ErrorCode } from '../../src/errors.ts';

/** Awaits `work`, which must reject with a FastImageCacheError of `code`; returns the error. */
export async function expectRefusal(work: Promise<unknown>, code: ErrorCode): Promise<FastImageCacheError> {
  try {
    await work;
  } catch (err) {
    assert.ok(err instanceof FastImageCacheError, `expected FastImageCacheError, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.code} (${err.detail ?? ''})`);
    return err;
  }
  assert.fail(`expected a ${code} refusal`);
}
