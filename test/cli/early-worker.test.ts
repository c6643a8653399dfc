/**
 * The first worker is forked before the primary has loaded its modules
 * (forkFirstWorker). The primary answers its configuration call as soon as it
 * has it (EarlyWorker.answer), whether the call came before or after, and
 * keeps everything else the worker sends for the take-over.
 */
import assert from 'node:assert/strict';
import cluster from 'node:cluster';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, test } from 'node:test';
import { forkFirstWorker } from '../../src/cli/worker-settings.ts';
import { makeTempDir } from '../helpers/tmp.ts';

const tmp = makeTempDir('fic-early-worker-');
after(() => { tmp.cleanup(); });

const IPC_RPC = new URL('../../src/cli/ipc-rpc.ts', import.meta.url).href;

test('its configuration call is answered once the answer is known, later ones at once, and the rest waits for the take-over', async () => {
  const script = join(tmp.dir, 'worker.mjs');
  // Asks for its configuration at once, asks again once it has it, then calls what only the primary proper answers.
  writeFileSync(
    script,
    `import { IpcRpc } from ${JSON.stringify(IPC_RPC)};
const rpc = new IpcRpc(process, {});
rpc.notify('hello', null);
rpc.notify('configured', await rpc.call('config'));
rpc.notify('again', await rpc.call('config'));
rpc.notify('done', await rpc.call('later', null, 20000));
`,
  );
  cluster.setupPrimary({ exec: script, silent: true });
  const early = forkFirstWorker();
  // The test watches the channel beside the early worker's own keeping.
  const seen: Array<{ ficRpc: string; method?: string; id?: number; params?: unknown }> = [];
  early.worker.on('message', (m: (typeof seen)[number]) => {
    seen.push(m);
  });
  const until = async (what: string, ok: () => boolean) => {
    const started = Date.now();
    while (!ok()) {
      if (Date.now() - started > 20_000) assert.fail(`timed out waiting for ${what}; seen ${JSON.stringify(seen)}`);
      await sleep(10);
    }
  };
  try {
    await until('the configuration call', () => seen.some((m) => m.method === 'config'));
    await sleep(200);
    assert.ok(!seen.some((m) => m.method === 'configured'), 'unanswered, the worker waits');
    early.answer('config', { port: 8080 });
    await until('the call for the primary proper', () => seen.some((m) => m.method === 'later'));

    const { messages, exit } = early.takeOver();
    assert.equal(exit, undefined, 'the worker is still running');
    const kept = messages as typeof seen;
    assert.deepEqual(kept.map((m) => m.method), ['hello', 'configured', 'again', 'later'], 'all but the answered calls kept, in order');
    assert.deepEqual(kept[1]?.params, { port: 8080 }, 'the answer given early');
    assert.deepEqual(kept[2]?.params, { port: 8080 }, 'and again, at once');
    // What it kept, the primary proper answers after the take-over.
    early.worker.send({ ficRpc: 'result', id: kept[3]?.id, ok: true, value: 'from the primary' });
    await until('the worker to finish', () => seen.some((m) => m.method === 'done'));
    assert.equal(seen.find((m) => m.method === 'done')?.params, 'from the primary');
  } finally {
    early.worker.process.kill();
  }
});
