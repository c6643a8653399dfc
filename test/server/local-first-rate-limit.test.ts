import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { silentLogger } from '../../src/log.ts';
import { LocalFirstRateLimiter, reportEvery, type SharedCount } from '../../src/server/local-first-rate-limit.ts';
import { countOf, createClientRateLimiter, type RateLimitDecision, type RateLimitSettings } from '../../src/server/rate-limit.ts';

let prefixes = 0;

/** A count kept in one place for several "processes": rate-limiter-flexible's memory limiter, as the cluster primary keeps it. */
function sharedCount(perSecond: number): { count: SharedCount; batches: number[] } {
  const counted = countOf(new RateLimiterMemory({ keyPrefix: `shared-${++prefixes}`, points: perSecond, duration: 1 }), (err) => {
    throw err;
  });
  const batches: number[] = [];
  const count: SharedCount = (clientKey, points) => {
    batches.push(points);
    return counted(clientKey, points);
  };
  return { count, batches };
}

/** One process's limiter: its own count of the same limits, reporting to `count`. */
function processLimiter(settings: RateLimitSettings, count: SharedCount, now?: () => number): LocalFirstRateLimiter {
  const own = createClientRateLimiter(settings, silentLogger(), { name: `own-${++prefixes}` });
  assert.ok(own);
  return new LocalFirstRateLimiter(own, count, reportEvery(settings), now);
}

const allowedOf = (decisions: RateLimitDecision[]) => decisions.filter((d) => d.allowed).length;

describe('LocalFirstRateLimiter', () => {
  test('reports every k-th request: at most 5 % of the budget, between 1 and 64', () => {
    assert.equal(reportEvery({ perSecond: 50, burst: 100 }), 7);
    assert.equal(reportEvery({ perSecond: 5, burst: 10 }), 1);
    assert.equal(reportEvery({ perSecond: 200, burst: 0 }), 10);
    assert.equal(reportEvery({ perSecond: 100_000, burst: 0 }), 64);
  });

  test('two processes share one budget: over it by at most (k − 1) each, with one report per k requests', async () => {
    const settings = { perSecond: 200, burst: 0 };
    const { count, batches } = sharedCount(settings.perSecond);
    const a = processLimiter(settings, count);
    const b = processLimiter(settings, count);
    const decisions: RateLimitDecision[] = [];
    for (let i = 0; i < 300; i++) decisions.push(await (i % 2 === 0 ? a : b).consume('192.0.2.1'));

    const allowed = allowedOf(decisions);
    // Alone, each process would admit 200 (400 together).
    assert.ok(allowed >= 200 && allowed <= 200 + 2 * 9, `${allowed} admitted for a budget of 200 in two processes`);
    assert.ok(batches.length <= Math.ceil(300 / 10) + 2, `${batches.length} reports for 300 requests`);
    assert.ok(batches.every((points) => points === 10), `batches of k: ${batches.join(',')}`);
    const refused = decisions.flatMap((d) => (d.allowed ? [] : [d.retryAfterSeconds]));
    assert.ok(refused.length > 0 && refused.every((seconds) => seconds >= 1), `Retry-After ${refused.join(',')}`);
    assert.deepEqual(await a.consume('192.0.2.2'), { allowed: true }, 'another client has its own budget');
  });

  test('requests arriving at once do not run ahead of a slow shared count: the same bound holds', async () => {
    const settings = { perSecond: 200, burst: 0 };
    const { count: prompt, batches } = sharedCount(settings.perSecond);
    // The count answers 5 ms later, as a busy primary or Redis would.
    const slow: SharedCount = async (clientKey, points) => {
      await sleep(5);
      return prompt(clientKey, points);
    };
    const a = processLimiter(settings, slow);
    const b = processLimiter(settings, slow);
    const decisions = await Promise.all(Array.from({ length: 300 }, (_, i) => (i % 2 === 0 ? a : b).consume('192.0.2.1')));

    const allowed = allowedOf(decisions);
    // Each process alone would admit 200 of its 150, all of them, before a refusal came back.
    assert.ok(allowed >= 200 && allowed <= 200 + 2 * 9, `${allowed} of 300 concurrent requests admitted for a budget of 200`);
    assert.ok(batches.every((points) => points === 10), `batches of k: ${batches.join(',')}`);
  });

  test('once the shared count refuses a client, the process refuses it without asking again until Retry-After', async () => {
    const settings = { perSecond: 20, burst: 0 }; // k = 1: every request is reported
    const { count, batches } = sharedCount(settings.perSecond);
    const other = processLimiter(settings, count);
    for (let i = 0; i < 20; i++) assert.equal((await other.consume('192.0.2.9')).allowed, true);

    const a = processLimiter(settings, count);
    const first = await a.consume('192.0.2.9');
    assert.equal(first.allowed, false, 'the budget was spent in the other process');
    const asked = batches.length;
    for (let i = 0; i < 10; i++) assert.equal((await a.consume('192.0.2.9')).allowed, false);
    assert.equal(batches.length, asked, 'refused from what the process knows');

    assert.ok(!first.allowed);
    await sleep(first.retryAfterSeconds * 1000 + 50);
    assert.deepEqual(await a.consume('192.0.2.9'), { allowed: true }, 'a new window after Retry-After');
  });

  test('what is left unreported is reported on the first request a second later', async () => {
    let clock = 1_000_000;
    const settings = { perSecond: 200, burst: 0 };
    const { count, batches } = sharedCount(settings.perSecond);
    const a = processLimiter(settings, count, () => clock);
    for (let i = 0; i < 3; i++) await a.consume('192.0.2.3');
    await a.consume('192.0.2.4');
    assert.deepEqual(batches, [], 'under k: nothing reported yet');
    clock += 1_000;
    await a.consume('192.0.2.5');
    assert.deepEqual(batches.sort(), [1, 3]);
  });

  test('with the shared count away, the process limits on its own count', async () => {
    const settings = { perSecond: 200, burst: 0 };
    let asked = 0;
    const away: SharedCount = () => {
      asked += 1;
      return Promise.resolve(undefined);
    };
    const a = processLimiter(settings, away);
    const decisions: RateLimitDecision[] = [];
    for (let i = 0; i < 300; i++) decisions.push(await a.consume('192.0.2.1'));
    assert.equal(allowedOf(decisions), 200);
    assert.ok(asked > 0);
  });
});
