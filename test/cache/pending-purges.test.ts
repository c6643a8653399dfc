import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../../src/log.ts';
import { PendingPurges } from '../../src/cache/pending-purges.ts';
import type { PurgeMessage } from '../../src/cache/purge-bus.ts';
import { FsStorage } from '../../src/storage/fs-storage.ts';
import { OWED_PURGES_DIR_NAME, OwedPurgesFile } from '../../src/storage/owed-purges-file.ts';

const source = (n: number): PurgeMessage => ({ kind: 'source', sourceKey: String(n).padStart(16, '0') });
const until = async (done: () => boolean): Promise<void> => {
  const deadline = Date.now() + 5_000;
  while (!done()) {
    if (Date.now() > deadline) assert.fail('not in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

/** A carrier that fails while `down` is true and records what it carried. */
function carrier() {
  const state = { down: true, carried: [] as PurgeMessage[], tries: 0 };
  const carry = (message: PurgeMessage) => {
    state.tries += 1;
    if (state.down) return Promise.resolve(false);
    state.carried.push(message);
    return Promise.resolve(true);
  };
  return { state, carry };
}

test('owed purges are carried in order once Redis takes them, each once', async () => {
  const { state, carry } = carrier();
  const owed = new PendingPurges({ carry, retryMs: 10, max: 100, logger: createLogger('silent') });
  await owed.add(source(1));
  await owed.add(source(2));
  await owed.add(source(1)); // again: once, at its latest place
  await until(() => state.tries >= 3);
  assert.equal(owed.size, 2, 'kept while Redis is away');
  state.down = false;
  await until(() => owed.size === 0);
  assert.deepEqual(state.carried, [source(2), source(1)]);
  await owed.close();
});

test('a purge of everything covers the source purges owed before and after it', async () => {
  const { state, carry } = carrier();
  const owed = new PendingPurges({ carry, retryMs: 10, max: 100, logger: createLogger('silent') });
  await owed.add(source(1));
  await owed.add({ kind: 'all' });
  await owed.add(source(2));
  assert.equal(owed.size, 1);
  state.down = false;
  await until(() => owed.size === 0);
  assert.deepEqual(state.carried, [{ kind: 'all' }]);
  await owed.close();
});

test('bounded: beyond max the oldest is given up; close() stops the retries', async () => {
  const { state, carry } = carrier();
  const owed = new PendingPurges({ carry, retryMs: 10, max: 2, logger: createLogger('silent') });
  await owed.add(source(1));
  await owed.add(source(2));
  await owed.add(source(3));
  assert.equal(owed.size, 2);
  state.down = false;
  await until(() => owed.size === 0);
  assert.deepEqual(state.carried, [source(2), source(3)]);

  state.down = true;
  await owed.add(source(4));
  await owed.close();
  const tries = state.tries;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(state.tries, tries, 'no retry after close');
});

const scratch: string[] = [];
afterEach(async () => {
  for (const dir of scratch.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

async function cacheDir(): Promise<string> {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'fic-owed-'));
  scratch.push(base);
  const dir = path.join(base, 'cache');
  await (await FsStorage.open({ dir, logger: createLogger('silent') })).close();
  return dir;
}

/** Another process that owes `messages` (Redis down), then is killed the moment its purges were acknowledged. */
async function crashAfterOwing(dir: string, messages: PurgeMessage[]): Promise<void> {
  const module = (name: string) => JSON.stringify(new URL(`../../src/${name}`, import.meta.url).href);
  const script = `
    import { PendingPurges } from ${module('cache/pending-purges.ts')};
    import { OwedPurgesFile } from ${module('storage/owed-purges-file.ts')};
    import { createLogger } from ${module('log.ts')};
    const owed = new PendingPurges({ carry: async () => false, retryMs: 60000, max: 100, logger: createLogger('silent'), store: new OwedPurgesFile(${JSON.stringify(dir)}) });
    for (const message of ${JSON.stringify(messages)}) await owed.add(message);
    process.kill(process.pid, 'SIGKILL');
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'inherit', 'inherit'] });
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, sig) => { resolve(sig); }));
  assert.equal(signal, 'SIGKILL', 'the owing process crashed rather than closing');
}

test('purges owed by a process that crashed are carried by the next one over its cache directory, once', async () => {
  const dir = await cacheDir();
  await crashAfterOwing(dir, [source(7), source(8)]);

  const { state, carry } = carrier();
  state.down = false;
  const next = new PendingPurges({ carry, retryMs: 10, max: 100, logger: createLogger('silent'), store: new OwedPurgesFile(dir) });
  await next.adopted();
  await until(() => next.size === 0);
  assert.deepEqual(state.carried, [source(7), source(8)]);
  await next.close();
  assert.deepEqual(await fs.readdir(path.join(dir, OWED_PURGES_DIR_NAME)), [], 'nothing left owing');

  const third = new PendingPurges({ carry, retryMs: 10, max: 100, logger: createLogger('silent'), store: new OwedPurgesFile(dir) });
  await third.adopted();
  assert.equal(third.size, 0, 'carried once: nothing to adopt again');
  await third.close();
});

test('a closing process keeps what it still owes for the next start; a live process keeps its own', async () => {
  const dir = await cacheDir();
  const { carry } = carrier(); // Redis stays down
  const first = new PendingPurges({ carry, retryMs: 10, max: 100, logger: createLogger('silent'), store: new OwedPurgesFile(dir) });
  await first.add(source(1));
  await first.add({ kind: 'all' });
  // Another cache of this same process (a reload) does not take the purges of a process that is still running.
  const sibling = new PendingPurges({ carry, retryMs: 10, max: 100, logger: createLogger('silent'), store: new OwedPurgesFile(dir) });
  await sibling.adopted();
  assert.equal(sibling.size, 0);
  await sibling.close();
  await first.close();
  const [file] = await fs.readdir(path.join(dir, OWED_PURGES_DIR_NAME));
  assert.ok(file !== undefined);
  assert.equal((await fs.stat(path.join(dir, OWED_PURGES_DIR_NAME, file))).mode & 0o777, 0o600);
  assert.deepEqual(JSON.parse(await fs.readFile(path.join(dir, OWED_PURGES_DIR_NAME, file), 'utf8')), [{ kind: 'all' }]);
});

test('what an earlier process left that is not a purge is dropped, the rest carried', async () => {
  const dir = await cacheDir();
  const owedDir = path.join(dir, OWED_PURGES_DIR_NAME);
  await fs.mkdir(owedDir, { mode: 0o700 });
  // Names in no form this version writes are an older version's leftovers, as in tmp/.
  await fs.writeFile(path.join(owedDir, 'old.json'), JSON.stringify([{ kind: 'nope' }, { kind: 'source', sourceKey: '../../etc' }, source(5)]));
  await fs.writeFile(path.join(owedDir, 'torn.json'), '[{"kind":');
  const { state, carry } = carrier();
  state.down = false;
  const next = new PendingPurges({ carry, retryMs: 10, max: 100, logger: createLogger('silent'), store: new OwedPurgesFile(dir) });
  await next.adopted();
  await until(() => next.size === 0);
  assert.deepEqual(state.carried, [source(5)]);
  await next.close();
  assert.deepEqual(await fs.readdir(owedDir), []);
});
