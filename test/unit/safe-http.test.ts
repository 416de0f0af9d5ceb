import { describe, expect, it } from 'vitest';
import { isNonPublicAddress } from '../../src/webhooks/safe-http.js';

const table: Array<[address: string, nonPublic: boolean]> = [
  ['169.254.169.254', true], // cloud metadata, link-local
  ['100.64.0.1', true], // CGNAT
  ['192.168.1.1', true],
  ['172.16.0.1', true],
  ['172.31.255.255', true],
  ['172.32.0.1', false], // just past 172.16/12
  ['10.0.0.1', true],
  ['127.0.0.1', true],
  ['127.1.2.3', true],
  ['0.0.0.0', true],
  ['255.255.255.255', true],
  ['224.0.0.1', true],
  ['192.0.2.1', true], // documentation range, counted as reserved
  ['240.0.0.1', true],
  ['8.8.8.8', false],
  ['1.1.1.1', false],
  ['::1', true],
  ['::', true],
  ['fc00::1', true],
  ['fd12:3456::1', true],
  ['fe80::1', true],
  ['ff02::1', true],
  ['2001:db8::1', true], // documentation range
  ['2001:4860:4860::8888', false],
  ['2606:4700:4700::1111', false],
  ['::ffff:10.0.0.1', true],
  ['::ffff:127.0.0.1', true],
  ['::ffff:7f00:1', true],
  ['::ffff:8.8.8.8', false],
  ['64:ff9b::a00:1', true], // NAT64 of 10.0.0.1
  ['64:ff9b::808:808', false], // NAT64 of 8.8.8.8
  ['64:ff9b:1::1', true], // local-use NAT64
  ['2002:a00:1::1', true], // 6to4 of 10.0.0.1
  ['2002:808:808::1', false], // 6to4 of 8.8.8.8
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', true], // Teredo
  ['::7f00:1', true], // IPv4-compatible, deprecated
  ['not an address', true],
];

describe('isNonPublicAddress', () => {
  it.each(table)('%s → %s', (address, nonPublic) => {
    expect(isNonPublicAddress(address)).toBe(nonPublic);
  });
});
