import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { configSchema, listEnvSettings, loadConfig, resolveSigningKeys } from '../../src/config/index.ts';
import { ConfigError } from '../../src/errors.ts';
import { makeTempDir } from '../helpers/tmp.ts';
import { fuzzParameters } from './fuzz-settings.ts';

/*
 * Configuration from the environment and from files: random and hostile
 * input must end in a valid configuration or a ConfigError naming the
 * setting, never in another exception (a crash with a stack at start-up).
 */

const tmp = makeTempDir('fic-fuzz-config-');
after(tmp.cleanup);
let fileCounter = 0;

const envNames = listEnvSettings().map((s) => s.env);
const settingNames = Object.keys(configSchema.shape);

/** Values that look like what each kind of setting expects, and what it does not. */
const envValue = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.constantFrom('true', 'false', 'yes', '0', '1', '', ' ', '*', '80,443', '80,http', '-1', '1e3', '0x10', 'NaN', 'Infinity', '10.0.0.0/8', '::1/200',
    '*.example.com', 'a,,b', '5f'.repeat(32), 'debug', '__proto__', 'constructor', '{}', '[]', '/tmp', 'relative/path'),
  fc.integer().map(String),
  fc.double().map(String),
);

const env = fc
  .tuple(
    fc.dictionary(fc.constantFrom(...envNames), envValue, { maxKeys: 4 }),
    fc.option(fc.constantFrom('FASTIMAGECACHE_NOPE', 'FASTIMAGECACHE_', 'FASTIMAGECACHE_KEY_', 'FASTIMAGECACHE_CONFIG'), { nil: undefined }),
  )
  .map(([known, unknown]) => ({
    HOME: tmp.dir,
    ...known,
    ...(unknown === undefined || unknown === 'FASTIMAGECACHE_CONFIG' ? {} : { [unknown]: 'x' }),
  }));

const jsonValue = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(null, true, 0, -1, 65536, '', '*', [], {}, ['*.example.com'], [80, 443], '10.0.0.0/8', { caFile: '/nope' }),
);

/** A config object: mostly real setting names (some nested), a few unknown or dangerous ones. */
const settingsObject = fc.dictionary(
  fc.oneof(
    { weight: 5, arbitrary: fc.constantFrom(...settingNames) },
    { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'prototype', 'key', 'admin', 'unknownSetting', '') },
    { weight: 1, arbitrary: fc.string({ maxLength: 8 }) },
  ),
  jsonValue,
  { maxKeys: 5 },
);

const fileText = fc.oneof(
  settingsObject.map((o) => JSON.stringify(o)),
  settingsObject.map((o) => Object.entries(o).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join('\n')),
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 64 }),
  fc.constantFrom(
    '', '---', '- a\n- b', 'null', '42', '"text"', '[1, 2]', '{', 'a: [', 'port: !!binary aGVsbG8=', 'port: &a 1\nhost: *a',
    // A tiny alias bomb: the YAML parser's alias limit must surface as a ConfigError.
    'a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]',
    '__proto__: {port: 1}', `__proto__: {key: ["${'5f'.repeat(32)}"]}`, '{"__proto__": {"allowPrivateNetworks": true}}',
    `admin: {__proto__: {token: "abcdefghijklmnopqrstuvwxyz"}}`, 'constructor: {prototype: {port: 1}}', 'key: abc', 'admin: {token: "abcdefghijklmnopqrstuvwxyz"}',
  ),
);

function expectConfigError(err: unknown, what: string): void {
  assert.ok(err instanceof ConfigError, `${what} threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
}

describe('configuration (property-based)', () => {
  test('random environments: a valid configuration or a ConfigError', () => {
    fc.assert(
      fc.property(env, (e) => {
        try {
          const { config } = loadConfig({ env: e });
          assert.ok(configSchema.safeParse(config).success, 'the loaded configuration is valid against the schema');
        } catch (err) {
          expectConfigError(err, JSON.stringify(e));
        }
      }),
      fuzzParameters(1000),
    );
  });

  test('random config files: a valid configuration or a ConfigError; secrets never accepted from a file', () => {
    fc.assert(
      fc.property(fileText, (text) => {
        const file = join(tmp.dir, `config-${fileCounter++}.yaml`);
        writeFileSync(file, text);
        try {
          const { config } = loadConfig({ configFile: file, env: { HOME: tmp.dir } });
          assert.deepEqual(config.key, [], `${JSON.stringify(text)} set a key from a file`);
          assert.ok(!text.includes('__proto__'), `${JSON.stringify(text)} was accepted: a __proto__ key smuggles settings in`);
          assert.ok(({} as Record<string, unknown>).port === undefined, 'no prototype pollution');
        } catch (err) {
          expectConfigError(err, JSON.stringify(text));
        }
      }),
      fuzzParameters(600),
    );
  });

  test('example found by fuzzing: a __proto__ key in a file smuggles no setting and no secret in', () => {
    for (const text of [`__proto__: {key: ["${'5f'.repeat(32)}"]}`, '{"__proto__": {"allowPrivateNetworks": true}}', 'admin:\n  __proto__: {host: 0.0.0.0}']) {
      const file = join(tmp.dir, `proto-${fileCounter++}.yaml`);
      writeFileSync(file, text);
      assert.throws(() => loadConfig({ configFile: file, env: { HOME: tmp.dir } }), (err: unknown) => err instanceof ConfigError && err.key.includes('__proto__'), text);
    }
  });

  test('random signing keys: decoded or refused with a ConfigError, never echoed', () => {
    const keyText = fc.oneof(fc.string(), fc.string({ unit: fc.constantFrom(...Array.from('0123456789abcdefABCDEF')), minLength: 60, maxLength: 70 }), fc.base64String(), fc.constantFrom('5f'.repeat(32), '5f'.repeat(31), ' , ', `${'a'.repeat(43)}=`));
    fc.assert(
      fc.property(keyText, (k) => {
        const { config } = loadConfig({ env: { HOME: tmp.dir, FASTIMAGECACHE_STATE_DIR: join(tmp.dir, 'state') } });
        try {
          const keys = resolveSigningKeys({ ...config, key: [k] });
          assert.ok(keys.keys.every((b) => b.length >= 32));
        } catch (err) {
          expectConfigError(err, JSON.stringify(k));
          if (k.trim().length >= 8) assert.ok(!(err as Error).message.includes(k.trim()), 'the key is not repeated in the error');
        }
      }),
      fuzzParameters(800),
    );
  });
});
