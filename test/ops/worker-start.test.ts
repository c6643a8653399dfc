/**
 * `serve --workers N` forks its first worker before loading its configuration and its own code
 * (forkFirstWorker), so a worker can speak, or die, before the primary is
 * ready to hear it: what happened meanwhile must still reach the primary.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { TEST_KEY_HEX } from '../helpers/proxy.ts';
import { makeTempDir } from '../helpers/tmp.ts';
import { CLI } from './process-helper.ts';

const tmp = makeTempDir('fic-worker-start-');
after(() => { tmp.cleanup(); });

describe('workers forked before the primary is ready', () => {
  test('a worker that dies as it starts fails the start with an error, instead of leaving the primary waiting for it', async () => {
    const hook = join(tmp.dir, 'die.mjs');
    writeFileSync(hook, "import cluster from 'node:cluster';\nif (cluster.isWorker) process.exit(3);\n");
    const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--workers', '2'], {
      env: {
        PATH: process.env.PATH ?? '',
        HOME: join(tmp.dir, 'home'),
        FASTIMAGECACHE_KEY: TEST_KEY_HEX,
        FASTIMAGECACHE_LOG_LEVEL: 'warn',
        NODE_OPTIONS: `--import ${hook}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => { resolve(c); }));
    clearTimeout(timer);
    assert.notEqual(code, 0, `the start failed (output: ${output.slice(-500)})`);
    assert.equal(child.signalCode, null, 'it exited by itself, not by the test\'s deadline');
    assert.match(output, /worker \d+ exited \(code 3/, 'and said why');
  });
});
