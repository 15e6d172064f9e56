import { describe, expect, it } from 'vitest';
import {
  isIpv6Address,
  isValidEd25519KeyId,
  isValidEventId,
  isValidNewUserLocalpart,
  isValidRoomAlias,
  isValidRoomId,
  isValidServerName,
  isValidStrictUserId,
  isValidUserId,
  parseEventId,
  parseKeyId,
  parseRoomAlias,
  parseRoomId,
  parseServerName,
  parseUserId,
  utf8ByteLength,
} from '../../../src/core/identifiers.js';
import { roomVersion } from '../../../src/core/room-versions.js';

const v1 = roomVersion('1')!;
const v3 = roomVersion('3')!;
const v4 = roomVersion('4')!;
const v11 = roomVersion('11')!;
const v12 = roomVersion('12')!;
const HASH43 = 'Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg'; // v4-event-ids.md example body
const HASH43_STD = 'abc+def/ghijklmnopqrstuvwxyz0123456789ABCDE';

describe('server names', () => {
  it.each([
    // appendices.md §"Server Name" examples
    ['matrix.org', 'dns', undefined],
    ['matrix.org:8888', 'dns', 8888],
    ['1.2.3.4', 'ipv4', undefined],
    ['1.2.3.4:1234', 'ipv4', 1234],
    ['[1234:5678::abcd]', 'ipv6', undefined],
    ['[1234:5678::abcd]:5678', 'ipv6', 5678],
    // more
    ['localhost', 'dns', undefined],
    ['MATRIX.ORG', 'dns', undefined],
    ['a-b.c', 'dns', undefined],
    ['1.2.3.256', 'dns', undefined], // not an IPv4 literal, but a grammatical dns-name
    ['[::1]:0', 'ipv6', 0],
    ['[::ffff:1.2.3.4]', 'ipv6', undefined],
    ['[1:2:3:4:5:6:7:8]', 'ipv6', undefined],
    ['x:99999', 'dns', 99999],
  ])('accepts %s', (name, kind, port) => {
    const r = parseServerName(name);
    expect(r).toMatchObject({ ok: true, hostKind: kind });
    if (r.ok) expect(r.port).toBe(port);
  });

  it.each([
    ['empty', ''],
    ['underscore', 'matrix_org'],
    ['space', 'matrix .org'],
    ['empty port', 'matrix.org:'],
    ['six-digit port', 'matrix.org:123456'],
    ['non-numeric port', 'matrix.org:http'],
    ['second colon', 'matrix.org:80:80'],
    ['unbracketed IPv6', '1234:5678::abcd'],
    ['unterminated IPv6', '[::1'],
    ['bad IPv6', '[1:2:3:4:5:6:7:8:9]'],
    ['two ::', '[1::2::3]'],
    ['IPv6 group too long', '[12345::]'],
    ['junk after IPv6', '[::1]x'],
    ['non-ASCII', 'mätrix.org'],
    ['too long dns-name', 'a'.repeat(256)],
    ['slash', 'matrix.org/x'],
  ])('rejects %s', (_n, name) => {
    const r = parseServerName(name);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toBeTypeOf('string');
    expect(isValidServerName(name)).toBe(false);
  });

  it('validates IPv6 text forms (RFC 3513 §2.2)', () => {
    for (const ok of ['::', '::1', '1::', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', 'FEDC:BA98::3210', '::13.1.68.3', '1:2:3:4:5:6:1.2.3.4'])
      expect(isIpv6Address(ok), ok).toBe(true);
    for (const bad of ['', ':', '1:2', ':1::', '1:::2', '1:2:3:4:5:6:7:8::', '::1.2.3', '::1.2.3.400', '1:2:3:4:5:6:7:1.2.3.4', 'g::1'])
      expect(isIpv6Address(bad), bad).toBe(false);
  });
});

describe('user IDs', () => {
  it('parses a normal user ID', () => {
    expect(parseUserId('@alice:example.org')).toEqual({ ok: true, localpart: 'alice', serverName: 'example.org', compliant: true });
    expect(parseUserId('@a.b_c=d-e/f+g0:example.org:8448', { strict: true })).toMatchObject({ ok: true, serverName: 'example.org:8448' });
  });

  it('accepts historical localparts when received, and flags them non-compliant', () => {
    for (const id of ['@Alice:example.org', '@:example.org', '@sp ace:example.org', '@日本:example.org', '@\u{1F600}:x', '@\u0001:x']) {
      expect(isValidUserId(id), id).toBe(true);
      expect(isValidStrictUserId(id), id).toBe(false);
    }
    expect(parseUserId('@Alice:example.org')).toMatchObject({ ok: true, compliant: true }); // U+0021–U+007E
    expect(parseUserId('@:example.org')).toMatchObject({ ok: true, compliant: false });
    expect(parseUserId('@日本:example.org')).toMatchObject({ ok: true, compliant: false });
  });

  it.each([
    ['no sigil', 'alice:example.org'],
    ['wrong sigil', '#alice:example.org'],
    ['no server', '@alice'],
    ['bad server', '@alice:exa mple.org'],
    ['NUL', '@al\u0000ice:example.org'],
    ['lone surrogate', '@\ud800:example.org'],
    ['empty server', '@alice:'],
  ])('rejects %s', (_n, id) => {
    const r = parseUserId(id);
    expect(r.ok).toBe(false);
  });

  it('enforces the 255-byte limit in bytes, not characters', () => {
    const server = 'example.org';
    const fits = '@' + 'a'.repeat(255 - 1 - 1 - server.length) + ':' + server;
    expect(utf8ByteLength(fits)).toBe(255);
    expect(isValidUserId(fits)).toBe(true);
    expect(isValidUserId('@a' + fits.slice(1))).toBe(false);
    // 100 × 'é' is 200 bytes: 100 characters but too long once the rest is added.
    const multibyte = '@' + 'é'.repeat(100) + 'a'.repeat(50) + ':' + server;
    expect(multibyte.length).toBeLessThan(255);
    expect(isValidUserId(multibyte)).toBe(false);
  });

  it('strict grammar for new registrations', () => {
    expect(isValidNewUserLocalpart('alice', 'example.org')).toBe(true);
    expect(isValidNewUserLocalpart('Alice', 'example.org')).toBe(false);
    expect(isValidNewUserLocalpart('', 'example.org')).toBe(false);
    expect(isValidNewUserLocalpart('a*b', 'example.org')).toBe(false);
    expect(isValidNewUserLocalpart('a'.repeat(300), 'example.org')).toBe(false);
  });

  it('counts UTF-8 bytes', () => {
    expect(utf8ByteLength('a')).toBe(1);
    expect(utf8ByteLength('é')).toBe(2);
    expect(utf8ByteLength('日')).toBe(3);
    expect(utf8ByteLength('\u{1F600}')).toBe(4);
    expect(utf8ByteLength('\ud800')).toBe(3);
  });
});

describe('room IDs', () => {
  it('v1–v11: !opaque:server', () => {
    expect(parseRoomId('!abc:example.org', v11)).toEqual({ ok: true, format: 'server', localpart: 'abc', serverName: 'example.org' });
    expect(isValidRoomId('!x:domain', v1)).toBe(true);
    expect(isValidRoomId('!日本\u0001:domain', v1)).toBe(true);
    expect(isValidRoomId('!abc', v11)).toBe(false);
    expect(isValidRoomId('!' + HASH43, v11)).toBe(false);
    expect(isValidRoomId('abc:example.org', v11)).toBe(false);
    expect(isValidRoomId('!a\u0000b:example.org', v11)).toBe(false);
    expect(isValidRoomId('!' + 'a'.repeat(250) + ':example.org', v11)).toBe(false);
  });

  it('v12: ! + 43 URL-safe Base64 characters, no server', () => {
    expect(parseRoomId('!' + HASH43, v12)).toEqual({ ok: true, format: 'hash', hash: HASH43 });
    expect(isValidRoomId('!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ', v12)).toBe(true); // pdu_v12 example
    expect(isValidRoomId('!abc:example.org', v12)).toBe(false);
    expect(isValidRoomId('!' + HASH43_STD, v12)).toBe(false);
    expect(isValidRoomId('!' + HASH43.slice(1), v12)).toBe(false);
    expect(isValidRoomId('!' + HASH43 + 'A', v12)).toBe(false);
  });

  it('without a version accepts either form', () => {
    expect(parseRoomId('!' + HASH43)).toMatchObject({ ok: true, format: 'hash' });
    expect(parseRoomId('!a:b')).toMatchObject({ ok: true, format: 'server' });
    expect(parseRoomId('!short').ok).toBe(false);
  });
});

describe('event IDs', () => {
  it('v1–v2: $opaque:server', () => {
    expect(parseEventId('$0:domain', v1)).toEqual({ ok: true, format: 'server', localpart: '0', serverName: 'domain' });
    expect(isValidEventId('$a4ecee13e2accdadf56c1025:example.com', v1)).toBe(true);
    expect(isValidEventId('$' + HASH43, v1)).toBe(false);
    expect(isValidEventId('$x:bad server', v1)).toBe(false);
  });

  it('v3: $ + 43 standard Base64 characters', () => {
    expect(parseEventId('$' + HASH43_STD, v3)).toEqual({ ok: true, format: 'base64', hash: HASH43_STD });
    expect(isValidEventId('$' + HASH43, v3)).toBe(false); // has '-' and '_'
    expect(isValidEventId('$0:domain', v3)).toBe(false);
  });

  it('v4+: $ + 43 URL-safe Base64 characters', () => {
    expect(parseEventId('$' + HASH43, v4)).toEqual({ ok: true, format: 'urlsafe', hash: HASH43 });
    expect(isValidEventId('$' + HASH43_STD, v4)).toBe(false);
    expect(isValidEventId('$' + HASH43 + '=', v4)).toBe(false);
    expect(isValidEventId(HASH43, v4)).toBe(false);
    expect(isValidEventId('$0:domain', v12)).toBe(false);
  });

  it('without a version accepts any form', () => {
    expect(parseEventId('$' + HASH43_STD)).toMatchObject({ ok: true, format: 'base64' });
    expect(parseEventId('$' + HASH43)).toMatchObject({ ok: true, format: 'urlsafe' });
    expect(parseEventId('$a:b')).toMatchObject({ ok: true, format: 'server' });
    expect(parseEventId('$nope').ok).toBe(false);
  });
});

describe('room aliases', () => {
  it('parses #localpart:server', () => {
    expect(parseRoomAlias('#room:example.org')).toEqual({ ok: true, localpart: 'room', serverName: 'example.org' });
    expect(isValidRoomAlias('#日本語 room:example.org:8448')).toBe(true);
    expect(isValidRoomAlias('room:example.org')).toBe(false);
    expect(isValidRoomAlias('#room')).toBe(false);
    expect(isValidRoomAlias('#ro\u0000om:example.org')).toBe(false);
    expect(isValidRoomAlias('#' + 'a'.repeat(250) + ':example.org')).toBe(false);
  });
});

describe('key IDs', () => {
  it('parses algorithm:version', () => {
    expect(parseKeyId('ed25519:abc_123')).toEqual({ ok: true, algorithm: 'ed25519', version: 'abc_123' });
    expect(parseKeyId('ed25519:0ldK3y')).toMatchObject({ ok: true, version: '0ldK3y' });
    expect(parseKeyId('curve99:x')).toMatchObject({ ok: true, algorithm: 'curve99' });
    for (const bad of ['ed25519', 'ed25519:', ':abc', 'ed25519:a-b', 'ed25519:a:b', 'ed25519:a b', ''])
      expect(parseKeyId(bad).ok, bad).toBe(false);
  });
  it('recognises ed25519 key IDs', () => {
    expect(isValidEd25519KeyId('ed25519:1')).toBe(true);
    expect(isValidEd25519KeyId('ed25519:hearth')).toBe(true);
    expect(isValidEd25519KeyId('curve99:1')).toBe(false);
    expect(isValidEd25519KeyId('ed25519:a.b')).toBe(false);
  });
});

describe('parsers never throw', () => {
  it('on non-string input', () => {
    for (const v of [undefined, null, 1, {}, [], true]) {
      const s = v as unknown as string;
      expect(parseServerName(s).ok).toBe(false);
      expect(parseUserId(s).ok).toBe(false);
      expect(parseRoomId(s).ok).toBe(false);
      expect(parseEventId(s).ok).toBe(false);
      expect(parseRoomAlias(s).ok).toBe(false);
      expect(parseKeyId(s).ok).toBe(false);
    }
  });
});
