import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { Agent } from 'undici';
import { createGuardedConnector, type Resolver } from '../../src/download/guarded-connector.ts';
import { FastImageCacheError, type ErrorCode } from '../../src/errors.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';

/*
 * The connector is exercised through a real undici Agent, as the downloader
 * uses it. Hostnames end in .test (never resolvable) and come from an
 * injected resolver, which plays the part of a DNS server an attacker controls.
 */

let origin: Origin;
/** A bare TCP listener counting connections: shows whether a socket was opened at all (TLS included). */
let tcp: net.Server;
let tcpConnections = 0;

before(async () => {
  origin = await startOrigin();
  tcp = net.createServer((socket) => {
    tcpConnections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
});

after(async () => {
  await origin.close();
  await new Promise<void>((resolve) => tcp.close(() => { resolve(); }));
});

/** A resolver answering from a script, one answer per call, counting calls. */
function scriptedResolver(...answers: string[][]): Resolver & { calls: number } {
  const resolver = Object.assign(
    () => {
      const answer = answers[Math.min(resolver.calls, answers.length - 1)] ?? [];
      resolver.calls++;
      return Promise.resolve(answer.map((address) => ({ address, family: net.isIP(address) })));
    },
    { calls: 0 },
  );
  return resolver;
}

function agentWith(resolve: Resolver, overrides: { allowPrivateNetworks?: boolean; allowedPrivateRanges?: string[] } = {}) {
  return new Agent({
    connect: createGuardedConnector({
      policy: {
        allowPrivateNetworks: overrides.allowPrivateNetworks ?? false,
        allowedPrivateRanges: overrides.allowedPrivateRanges ?? ['127.0.0.1/32'],
        connectTimeoutMs: 2000,
      },
      resolve,
    }),
  });
}

function ownError(err: unknown): FastImageCacheError | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof FastImageCacheError) return e;
  }
  return undefined;
}

async function expectCode(work: Promise<unknown>, code: ErrorCode): Promise<void> {
  const err = await work.then(() => undefined, (e: unknown) => e);
  assert.ok(err, `expected ${code}, the request succeeded`);
  assert.equal(ownError(err)?.code, code, `expected ${code}, got ${inspect(err)}`);
}

describe('guarded connector', () => {
  test('connects to the checked address, resolving the hostname exactly once', async () => {
    origin.serve('/ok.jpg', 'ok', { contentType: 'image/jpeg' });
    // First answer passes the check; a rebinding second answer would not, but is never asked for.
    const resolve = scriptedResolver(['127.0.0.1'], ['10.0.0.1']);
    const agent = agentWith(resolve);
    try {
      const res = await agent.request({ origin: `http://images.test:${origin.port}`, path: '/ok.jpg', method: 'GET' });
      assert.equal(await res.body.text(), 'ok');
      // .test never resolves: reaching the origin proves net used our checked answer, not its own lookup.
      assert.equal(resolve.calls, 1);
      assert.equal(origin.hits('/ok.jpg'), 1);
      assert.equal(origin.lastRequestHeaders('/ok.jpg')?.host, `images.test:${origin.port}`);
    } finally {
      await agent.close();
    }
  });

  test('one denied address among the answers refuses the whole connection', async () => {
    const before = tcpConnections;
    // 127.0.0.1 is carved out here; each answer pairs it (or a public address) with a denied one.
    const answers = [['8.8.8.8', '10.0.0.1'], ['127.0.0.1', '10.0.0.1'], ['127.0.0.1', '::1'], ['127.0.0.1', '169.254.169.254'],
      ['127.0.0.1', '::ffff:192.168.0.1'], ['127.0.0.1', 'not-an-address']];
    for (const answer of answers) {
      const agent = agentWith(scriptedResolver(answer));
      try {
        const port = (tcp.address() as AddressInfo).port;
        await expectCode(agent.request({ origin: `http://mixed.test:${port}`, path: '/', method: 'GET' }), 'address_denied');
      } finally {
        await agent.close();
      }
    }
    assert.equal(tcpConnections, before);
  });

  test('https is guarded the same way, and its socket also uses the checked answer', async () => {
    const port = (tcp.address() as AddressInfo).port;
    const denied = agentWith(scriptedResolver(['127.0.0.1']), { allowedPrivateRanges: [] });
    const before = tcpConnections;
    try {
      await expectCode(denied.request({ origin: `https://secure.test:${port}`, path: '/', method: 'GET' }), 'address_denied');
      await expectCode(denied.request({ origin: `https://127.0.0.1:${port}`, path: '/', method: 'GET' }), 'address_denied');
      assert.equal(tcpConnections, before);
    } finally {
      await denied.close();
    }

    // Allowed: the TCP connection reaches the checked address (the TLS handshake then fails on
    // this bare listener, which is fine: the point is where the socket went).
    const resolve = scriptedResolver(['127.0.0.1']);
    const allowed = agentWith(resolve);
    try {
      await allowed.request({ origin: `https://secure.test:${port}`, path: '/', method: 'GET' }).then(
        () => assert.fail('the bare listener cannot speak TLS'),
        () => {},
      );
      assert.equal(tcpConnections, before + 1);
      assert.equal(resolve.calls, 1);
    } finally {
      await allowed.close();
    }
  });

  test('IP literals are checked directly, without the resolver', async () => {
    origin.serve('/lit.jpg', 'lit', { contentType: 'image/jpeg' });
    const resolve = scriptedResolver(['8.8.8.8']);
    const agent = agentWith(resolve);
    try {
      const res = await agent.request({ origin: `http://127.0.0.1:${origin.port}`, path: '/lit.jpg', method: 'GET' });
      assert.equal(await res.body.text(), 'lit');
      await expectCode(agent.request({ origin: `http://[::1]:${origin.port}`, path: '/', method: 'GET' }), 'address_denied');
      assert.equal(resolve.calls, 0);
    } finally {
      await agent.close();
    }
  });

  test('DNS failures are origin errors', async () => {
    const failing: Resolver = () => Promise.reject(Object.assign(new Error('getaddrinfo ENOTFOUND nowhere.test'), { code: 'ENOTFOUND' }));
    const agent = agentWith(failing);
    try {
      await expectCode(agent.request({ origin: 'http://nowhere.test', path: '/', method: 'GET' }), 'origin_error');
      await expectCode(
        agentWith(scriptedResolver([])).request({ origin: 'http://empty.test', path: '/', method: 'GET' }),
        'origin_error',
      );
    } finally {
      await agent.close();
    }
  });

  test('a resolver slower than connectTimeoutMs is a timeout', async () => {
    const stuck: Resolver = () => new Promise(() => {});
    const agent = new Agent({
      connect: createGuardedConnector({
        policy: { allowPrivateNetworks: false, allowedPrivateRanges: [], connectTimeoutMs: 100 },
        resolve: stuck,
      }),
    });
    try {
      await expectCode(agent.request({ origin: 'http://stuck.test', path: '/', method: 'GET' }), 'origin_timeout');
    } finally {
      await agent.close();
    }
  });
});
