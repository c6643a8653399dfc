import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { configSchema, listEnvSettings } from '../../src/config/index.ts';
import { ERROR_CODES } from '../../src/errors.ts';

const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');

test('README documents every setting with its environment name', () => {
  for (const name of Object.keys(configSchema.shape)) {
    assert.ok(readme.includes(`| \`${name}\``), `setting ${name} missing from README's configuration table`);
  }
  for (const { setting, env } of listEnvSettings()) {
    assert.ok(readme.includes(env), `${env} (${setting}) missing from README`);
  }
});

test('README documents every error code', () => {
  for (const code of Object.keys(ERROR_CODES)) {
    assert.ok(readme.includes(`\`${code}\``), `error code ${code} missing from README`);
  }
});

test('README gives the two set-up commands', () => {
  assert.ok(readme.includes('npm install && npm start'));
  assert.ok(readme.includes('npm test'));
});
