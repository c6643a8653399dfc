import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { serviceAdminBackend, startAdminServer } from '../../src/server/admin.ts';
import { AuditLog } from '../../src/server/audit-log.ts';
import type { RunningServer } from '../../src/server/http-server.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { capturingLogger, startService, type TestService } from './service-helper.ts';

const TOKEN = 'admin-token-0123456789abcdef';
const NEW_KEY_HEX = '7a'.repeat(32);

interface AuditLine {
  time: string;
  actor: string;
  action: string;
  outcome: string;
  changes?: Array<{ setting: string; from: unknown; to: unknown }>;
  restartNeeded?: string[];
  target?: string;
  reason?: string;
}

describe('admin API', () => {
  let origin: Origin;
  let proxy: TestService;
  let admin: RunningServer;
  let strictAdmin: RunningServer;
  let audit: AuditLog;
  let auditPath: string;
  let configFile: string;
  let logs: ReturnType<typeof capturingLogger>;
  let png: Buffer;

  const call = (path: string, init: RequestInit & { token?: string | null; server?: RunningServer } = {}) => {
    const { token = TOKEN, server = admin, ...rest } = init;
    const headers: Record<string, string> = token === null ? {} : { Authorization: `Bearer ${token}` };
    return fetch(`${server.url}${path}`, { ...rest, headers: { ...headers, ...(rest.headers as Record<string, string> | undefined) } });
  };
  const auditLines = (): AuditLine[] =>
    readFileSync(auditPath, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as AuditLine);

  before(async () => {
    origin = await startOrigin();
    png = await makeImage('png', 16, 16);
    logs = capturingLogger();
    const { makeTempDir } = await import('../helpers/tmp.ts');
    const tmp = makeTempDir('fic-admin-');
    configFile = join(tmp.dir, 'fastimagecache.yaml');
    writeFileSync(configFile, 'clientMaxAge: 100\n');
    proxy = await startService({ dir: tmp, configFile, logger: logs.logger, settings: { rateLimit: { perSecond: 0 } } });
    auditPath = join(tmp.dir, 'state', 'audit.log');
    audit = new AuditLog(auditPath, logs.logger);
    const backend = serviceAdminBackend(proxy.service, proxy.metrics);
    const common = { host: '127.0.0.1', port: 0, token: () => TOKEN, backend, audit, metrics: proxy.metrics, logger: logs.logger };
    admin = await startAdminServer({ ...common, lockout: { failures: 100, windowSeconds: 60, lockSeconds: 60 } });
    strictAdmin = await startAdminServer({ ...common, lockout: { failures: 3, windowSeconds: 60, lockSeconds: 60 } });
  });
  after(async () => {
    await admin.close(100);
    await strictAdmin.close(100);
    await audit.close();
    await proxy.close();
    await origin.close();
  });

  test('missing or wrong token: 401, logged and audited; the right one is let in', async () => {
    const missing = await call('/admin/stats', { token: null });
    assert.equal(missing.status, 401);
    assert.equal(missing.headers.get('www-authenticate'), 'Bearer');
    assert.equal(((await missing.json()) as { error: string }).error, 'unauthorized');
    const wrong = await call('/admin/stats', { token: `${TOKEN}x` });
    assert.equal(wrong.status, 401);
    await wrong.arrayBuffer();
    const notBearer = await call('/admin/stats', { token: null, headers: { Authorization: `Basic ${TOKEN}` } });
    assert.equal(notBearer.status, 401);
    await notBearer.arrayBuffer();

    const good = await call('/admin/stats');
    assert.equal(good.status, 200);
    const stats = (await good.json()) as { cache: { entries: number } };
    assert.equal(typeof stats.cache.entries, 'number');

    const failures = auditLines().filter((l) => l.action === 'admin_auth_failure');
    assert.equal(failures.length, 3);
    assert.deepEqual(
      failures.map((l) => [l.actor, l.outcome, l.reason]),
      [
        ['127.0.0.1', 'denied', 'missing token'],
        ['127.0.0.1', 'denied', 'wrong token'],
        ['127.0.0.1', 'denied', 'wrong token'],
      ],
    );
    assert.ok(!Number.isNaN(Date.parse(failures[0]?.time ?? '')));
    assert.equal(logs.lines.filter((l) => l.includes('admin authentication failed')).length, 3);
    assert.ok(!logs.text().includes(TOKEN), 'the token never reaches the logs');
    assert.equal(statSync(auditPath).mode & 0o777, 0o600);
  });

  test('repeated failures from one address lock it out, even with the right token', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await call('/admin/stats', { server: strictAdmin, token: 'wrong-token-guess' });
      await res.arrayBuffer();
      assert.equal(res.status, 401);
    }
    const locked = await call('/admin/stats', { server: strictAdmin });
    assert.equal(locked.status, 429);
    assert.ok(Number(locked.headers.get('retry-after')) >= 30);
    await locked.arrayBuffer();
    assert.equal(auditLines().filter((l) => l.outcome === 'locked_out').length, 1);
  });

  test('GET /admin/config shows the running configuration with secrets redacted', async () => {
    const res = await call('/admin/config');
    assert.equal(res.status, 200);
    const text = await res.text();
    const config = JSON.parse(text) as { key: string[]; clientMaxAge: number };
    assert.deepEqual(config.key, ['[redacted]']);
    assert.equal(config.clientMaxAge, 100);
    assert.ok(!text.includes('5f5f5f5f'), 'no key material');
  });

  test('POST /admin/purge removes one source (query kept out of the audit log), or everything', async () => {
    origin.serve('/p.png', png, { contentType: 'image/png' });
    const source = `${origin.url}/p.png?token=s3cr3t`;
    const first = await fetch(proxy.signedUrl(source));
    await first.arrayBuffer();
    const second = await fetch(proxy.signedUrl(source));
    await second.arrayBuffer();
    assert.equal(second.headers.get('x-cache'), 'HIT');

    const purged = await call('/admin/purge', { method: 'POST', body: JSON.stringify({ url: source }) });
    assert.equal(purged.status, 200);
    const { removed } = (await purged.json()) as { removed: number };
    assert.ok(removed >= 1, `removed ${removed}`);
    const after = await fetch(proxy.signedUrl(source));
    await after.arrayBuffer();
    assert.equal(after.headers.get('x-cache'), 'MISS');
    assert.equal(origin.hits('/p.png'), 2);

    const all = await call('/admin/purge', { method: 'POST', body: JSON.stringify({ all: true }) });
    assert.deepEqual(await all.json(), { removed: 'all' });
    const bad = await call('/admin/purge', { method: 'POST', body: '{"nothing": 1}' });
    assert.equal(bad.status, 400);
    await bad.arrayBuffer();
    const wrongMethod = await call('/admin/purge');
    assert.equal(wrongMethod.status, 405);
    await wrongMethod.arrayBuffer();

    const purges = auditLines().filter((l) => l.action === 'purge');
    assert.deepEqual(
      purges.map((l) => [l.actor, l.outcome, l.target]),
      [
        ['127.0.0.1', 'ok', `${origin.url}/p.png?[redacted]`],
        ['127.0.0.1', 'ok', 'all'],
      ],
    );
    assert.ok(!readFileSync(auditPath, 'utf8').includes('s3cr3t'));
  });

  test('POST /admin/reload applies a valid config (in-flight requests finish on the old one) and refuses an invalid one', async () => {
    // A request in flight on the old ImageCache when the reload happens.
    origin.slowHeaders('/slow.png', 300, png, 'image/png');
    const inFlight = fetch(proxy.signedUrl(`${origin.url}/slow.png`));
    await new Promise((r) => setTimeout(r, 50));

    writeFileSync(configFile, 'clientMaxAge: 200\nworkers: 3\nmetrics:\n  onMainListener: true\n');
    proxy.env.FASTIMAGECACHE_KEY = `${NEW_KEY_HEX},${proxy.env.FASTIMAGECACHE_KEY ?? ''}`;
    const reload = await call('/admin/reload', { method: 'POST' });
    assert.equal(reload.status, 200);
    const outcome = (await reload.json()) as { outcome: string; changes: Array<{ setting: string }>; restartNeeded: string[] };
    assert.equal(outcome.outcome, 'applied');
    assert.deepEqual(outcome.changes.map((c) => c.setting).sort(), ['clientMaxAge', 'key', 'metrics.onMainListener', 'workers']);
    assert.deepEqual(outcome.restartNeeded, ['workers']);

    const slow = await inFlight;
    assert.equal(slow.status, 200, 'the in-flight request finished on the old ImageCache');
    assert.equal(slow.headers.get('cache-control'), 'public, max-age=100');
    await slow.arrayBuffer();
    origin.serve('/fresh.png', png, { contentType: 'image/png' });
    const fresh = await fetch(proxy.signedUrl(`${origin.url}/fresh.png`));
    await fresh.arrayBuffer();
    assert.equal(fresh.headers.get('cache-control'), 'public, max-age=200', 'new requests use the new config');
    const config = (await (await call('/admin/config')).json()) as { workers: number; clientMaxAge: number };
    assert.equal(config.clientMaxAge, 200);
    assert.equal(config.workers, 0, 'workers needs a restart: the running value stays');

    writeFileSync(configFile, 'clientMaxAge: -5\n');
    const refused = await call('/admin/reload', { method: 'POST' });
    assert.equal(refused.status, 422);
    const refusal = (await refused.json()) as { outcome: string; reason: string };
    assert.equal(refusal.outcome, 'refused');
    assert.match(refusal.reason, /clientMaxAge/);
    const still = await fetch(proxy.signedUrl(`${origin.url}/fresh.png`));
    await still.arrayBuffer();
    assert.equal(still.headers.get('cache-control'), 'public, max-age=200', 'the old config stays');

    const reloads = auditLines().filter((l) => l.action === 'reload');
    assert.deepEqual(
      reloads.map((l) => [l.actor, l.outcome]),
      [
        ['127.0.0.1', 'applied'],
        ['127.0.0.1', 'refused'],
      ],
    );
    const applied = reloads[0];
    assert.ok(applied?.changes);
    assert.deepEqual(applied.changes.find((c) => c.setting === 'key'), {
      setting: 'key',
      from: ['[redacted]'],
      to: ['[redacted]', '[redacted]'],
    });
    assert.deepEqual(applied.changes.find((c) => c.setting === 'clientMaxAge'), { setting: 'clientMaxAge', from: 100, to: 200 });
    assert.deepEqual(applied.restartNeeded, ['workers']);
    const auditText = readFileSync(auditPath, 'utf8');
    assert.ok(!auditText.includes(NEW_KEY_HEX) && !auditText.includes('5f5f5f5f'), 'no key material in the audit log');
  });

  test('metrics are present after traffic, on the admin listener and (once configured) the main one', async () => {
    const res = await call('/metrics');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    const text = await res.text();
    for (const pattern of [
      /fastimagecache_http_requests_total\{route="image",status="200"\} [1-9]/,
      /fastimagecache_http_response_bytes_total\{route="image"\} [1-9]/,
      /fastimagecache_cache_results_total\{result="hit"\} [1-9]/,
      /fastimagecache_cache_results_total\{result="miss"\} [1-9]/,
      /fastimagecache_origin_fetch_duration_seconds_count\{outcome="ok"\} [1-9]/,
      /fastimagecache_origin_queue_depth 0/,
      /fastimagecache_circuit_breakers\{state="open"\} 0/,
      /fastimagecache_config_reloads_total\{outcome="applied"\} 1/,
      /fastimagecache_config_reloads_total\{outcome="refused"\} 1/,
      /fastimagecache_admin_auth_failures_total [1-9]/,
      /fastimagecache_cache_entries \d+/,
      /fastimagecache_cache_bytes \d+/,
    ]) {
      assert.match(text, pattern);
    }
    // metrics.onMainListener was turned on by the reload above.
    const main = await fetch(`${proxy.url}/metrics`);
    assert.equal(main.status, 200);
    assert.match(await main.text(), /fastimagecache_http_requests_total/);
    const unauthenticated = await call('/metrics', { token: null });
    assert.equal(unauthenticated.status, 401);
    await unauthenticated.arrayBuffer();
  });
});
