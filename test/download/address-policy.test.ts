import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createAddressPolicy } from '../../src/download/address-policy.ts';
import { ConfigError } from '../../src/errors.ts';

const strict = createAddressPolicy({ allowPrivateNetworks: false, allowedPrivateRanges: [] });
const privateOk = createAddressPolicy({ allowPrivateNetworks: true, allowedPrivateRanges: [] });

function assertDenied(policy: ReturnType<typeof createAddressPolicy>, address: string): void {
  const verdict = policy.check(address);
  assert.equal(verdict.allowed, false, `${address} must be denied`);
}

function assertAllowed(policy: ReturnType<typeof createAddressPolicy>, address: string): void {
  const verdict = policy.check(address);
  assert.deepEqual(verdict, { allowed: true }, `${address} must be allowed`);
}

/** Addresses in classes that allowPrivateNetworks opens. */
const PRIVATE_CLASS = {
  loopback: ['127.0.0.1', '127.255.255.254', '::1'],
  private: ['10.0.0.1', '10.255.255.255', '172.16.0.1', '172.31.255.255', '192.168.0.1', '192.168.255.255'],
  linkLocal: ['169.254.1.1', 'fe80::1', 'febf:ffff::1', 'fe80::1%eth0'],
  carrierGradeNat: ['100.64.0.1', '100.127.255.255'],
  uniqueLocal: ['fc00::1', 'fd12:3456:789a::1'],
};

/** Addresses that stay denied even with allowPrivateNetworks. */
const ALWAYS_DENIED = {
  unspecified: ['0.0.0.0', '0.1.2.3', '::'],
  multicast: ['224.0.0.1', '239.255.255.255', 'ff02::1', 'ff0e::1'],
  broadcast: ['255.255.255.255'],
  reserved: ['240.0.0.1', '250.1.2.3', '::2:3:4:5:6', '4000::1', 'e000::1'],
  benchmarking: ['198.18.0.1', '198.19.255.255', '2001:2::1'],
  documentation: ['192.0.2.1', '198.51.100.7', '203.0.113.255', '2001:db8::1', '2001:db8:ffff::1', '3fff::1'],
  ietfProtocol: ['192.0.0.1', '192.0.0.170'],
  siteLocal: ['fec0::1'],
};

const METADATA = ['169.254.169.254', '168.63.129.16', 'fd00:ec2::254', '100.100.100.200'];

const PUBLIC = ['8.8.8.8', '1.1.1.1', '93.184.216.34', '172.15.255.255', '172.32.0.1', '100.63.255.255', '100.128.0.1',
  '192.169.0.1', '11.0.0.1', '223.255.255.254', '2606:4700:4700::1111', '2a00:1450:4001:80b::200e', '2001:4860:4860::8888'];

describe('address policy: default (global unicast only)', () => {
  for (const [cls, addresses] of Object.entries({ ...PRIVATE_CLASS, ...ALWAYS_DENIED })) {
    test(`denies ${cls}`, () => {
      for (const address of addresses) assertDenied(strict, address);
    });
  }

  test('denies cloud metadata addresses', () => {
    for (const address of METADATA) assertDenied(strict, address);
  });

  test('allows public unicast addresses, v4 and v6', () => {
    for (const address of PUBLIC) assertAllowed(strict, address);
  });

  test('the denial carries a reason naming the class', () => {
    const verdict = strict.check('10.1.2.3');
    assert.equal(verdict.allowed, false);
    assert.match(verdict.reason, /private/);
  });

  test('anything unparsable or in a legacy IPv4 spelling is denied', () => {
    for (const address of ['', 'localhost', 'example.com', '1.2.3', '1.2.3.4.5', '256.1.1.1', '2130706433',
      '0x7f.0.0.1', '0177.0.0.1', '127.1', '::ffff:999.0.0.1', 'gggg::1', '1.2.3.4 ', ' 8.8.8.8']) {
      assertDenied(strict, address);
    }
  });
});

describe('address policy: IPv6 forms that embed IPv4 are judged by the IPv4', () => {
  // Each row: an IPv6 spelling of a denied IPv4 address, and of a public one.
  const forms: Array<[string, string, string]> = [
    ['IPv4-mapped (dotted)', '::ffff:127.0.0.1', '::ffff:8.8.8.8'],
    ['IPv4-mapped (hex)', '::ffff:7f00:1', '::ffff:808:808'],
    ['IPv4-mapped 10/8', '::ffff:10.0.0.1', '::ffff:1.1.1.1'],
    ['IPv4-compatible', '::127.0.0.1', '::8.8.8.8'],
    ['IPv4-compatible hex', '::a00:1', '::808:808'],
    ['NAT64 well-known', '64:ff9b::127.0.0.1', '64:ff9b::8.8.8.8'],
    ['NAT64 well-known hex', '64:ff9b::a9fe:a9fe', '64:ff9b::101:101'],
    ['NAT64 local-use /96', '64:ff9b:1::192.168.1.1', '64:ff9b:1:808:8:808:808:808'],
    ['6to4', '2002:7f00:1::1', '2002:808:808::1'],
    ['6to4 private', '2002:c0a8:101::', '2002:101:101::'],
    // Teredo: server 65.54.227.120, client = last 32 bits XOR 0xffffffff.
    ['Teredo', '2001:0:4136:e378:8000:63bf:80ff:fffe', '2001:0:4136:e378:8000:63bf:f7f7:f7f7'],
    ['ISATAP (0:5efe)', '2001:4860::5efe:10.0.0.1', '2001:4860::5efe:8.8.8.8'],
    ['ISATAP (200:5efe)', '2001:4860::200:5efe:192.168.0.1', '2001:4860::200:5efe:8.8.8.8'],
  ];
  for (const [form, denied, allowed] of forms) {
    test(form, () => {
      assertDenied(strict, denied);
      assertAllowed(strict, allowed);
    });
  }

  test('NAT64 local-use: a private IPv4 at any RFC 6052 position is denied', () => {
    // 10.0.0.1 at the /48 position (bytes 6,7,9,10) with a public-looking tail.
    assertDenied(strict, '64:ff9b:1:a00:0:100:808:808');
    // ... at the /64 position (bytes 9..12).
    assertDenied(strict, '64:ff9b:1:0:a:0:100:0');
  });

  test('Teredo client 127.0.0.1 is found by XOR, not read literally', () => {
    // Last 32 bits 80ff:fffe XOR ffff:ffff = 7f00:0001 = 127.0.0.1.
    assertDenied(strict, '2001:0:4136:e378:8000:63bf:80ff:fffe');
    // Literally 7f00:0001 in the tail means client 128.255.255.254: public.
    assertAllowed(strict, '2001:0:4136:e378:8000:63bf:7f00:1');
  });

  test('ISATAP keeps its IPv6 prefix checked too', () => {
    assertDenied(strict, 'fe80::5efe:8.8.8.8');
    assertDenied(strict, 'fd00::200:5efe:8.8.8.8');
  });

  test('every embedded form of a metadata address is denied, even with private networks allowed', () => {
    for (const address of ['::ffff:169.254.169.254', '::ffff:a9fe:a9fe', '64:ff9b::169.254.169.254', '2002:a9fe:a9fe::1',
      '2001:0:4136:e378:8000:63bf:5601:5601', '2001:4860::5efe:169.254.169.254', '::ffff:168.63.129.16']) {
      assertDenied(privateOk, address);
    }
  });

  test('::1 and :: are IPv6 loopback/unspecified, not IPv4-compatible 0.0.0.x', () => {
    assertAllowed(privateOk, '::1');
    assertDenied(privateOk, '::');
  });
});

describe('address policy: allowPrivateNetworks', () => {
  for (const [cls, addresses] of Object.entries(PRIVATE_CLASS)) {
    test(`allows ${cls}`, () => {
      for (const address of addresses) assertAllowed(privateOk, address);
    });
  }

  test('embedded forms of private addresses follow the same rule', () => {
    for (const address of ['::ffff:127.0.0.1', '::ffff:10.0.0.1', '64:ff9b::192.168.1.1', '2002:a00:1::1']) {
      assertAllowed(privateOk, address);
    }
  });

  for (const [cls, addresses] of Object.entries(ALWAYS_DENIED)) {
    test(`still denies ${cls}`, () => {
      for (const address of addresses) assertDenied(privateOk, address);
    });
  }

  test('still denies cloud metadata addresses', () => {
    for (const address of [...METADATA, 'fd00:ec2:0::254', 'fd00:ec2::254%eth0']) assertDenied(privateOk, address);
  });
});

describe('address policy: allowedPrivateRanges carve-outs', () => {
  test('a /32 opens exactly that address, in plain and embedded forms', () => {
    const policy = createAddressPolicy({ allowPrivateNetworks: false, allowedPrivateRanges: ['127.0.0.1/32'] });
    assertAllowed(policy, '127.0.0.1');
    assertAllowed(policy, '::ffff:127.0.0.1');
    assertDenied(policy, '127.0.0.2');
    assertDenied(policy, '::1');
    assertDenied(policy, '10.0.0.1');
  });

  test('a v4 subnet, a v6 subnet and a bare address', () => {
    const policy = createAddressPolicy({
      allowPrivateNetworks: false,
      allowedPrivateRanges: ['10.20.0.0/16', 'fd00:1234::/32', '192.168.1.7'],
    });
    assertAllowed(policy, '10.20.3.4');
    assertDenied(policy, '10.21.0.1');
    assertAllowed(policy, 'fd00:1234::5');
    assertDenied(policy, 'fd00:1235::5');
    assertAllowed(policy, '192.168.1.7');
    assertDenied(policy, '192.168.1.8');
  });

  test('metadata addresses stay denied inside a carved-out range', () => {
    const policy = createAddressPolicy({
      allowPrivateNetworks: false,
      allowedPrivateRanges: ['169.254.0.0/16', '168.63.129.0/24', 'fd00::/8', '::ffff:0:0/96'],
    });
    assertAllowed(policy, '169.254.1.1');
    assertDenied(policy, '169.254.169.254');
    assertDenied(policy, '168.63.129.16');
    assertDenied(policy, 'fd00:ec2::254');
    assertDenied(policy, '::ffff:169.254.169.254');
  });

  test('an invalid range is a configuration error', () => {
    assert.throws(
      () => createAddressPolicy({ allowPrivateNetworks: false, allowedPrivateRanges: ['10.0.0.0/33'] }),
      ConfigError,
    );
    assert.throws(
      () => createAddressPolicy({ allowPrivateNetworks: false, allowedPrivateRanges: ['not-a-range'] }),
      ConfigError,
    );
  });
});
