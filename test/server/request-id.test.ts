import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { nextRequestId } from '../../src/server/request-id.ts';

test('request ids are UUID-shaped and never repeat, within a process and across processes', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 50_000; i++) {
    const id = nextRequestId();
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    seen.add(id);
  }
  assert.equal(seen.size, 50_000);
  const script = "import('./src/server/request-id.ts').then((m) => process.stdout.write(m.nextRequestId()))";
  const other = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: process.cwd(), encoding: 'utf8' });
  assert.match(other, /^[0-9a-f-]{36}$/);
  // Another process starts its counter at 1 too: only its random prefix tells the ids apart.
  assert.notEqual(other.slice(0, 24), nextRequestId().slice(0, 24));
});
