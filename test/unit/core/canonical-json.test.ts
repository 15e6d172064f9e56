import { describe, expect, it } from 'vitest';
import { CanonicalJsonError, canonicalJson, canonicalJsonBytes, compareCodePoints } from '../../../src/core/canonical-json.js';

/** appendices.md §"Canonical JSON" → "Examples": the input text exactly as printed, and the expected output. */
const SPEC_EXAMPLES: [input: string, expected: string][] = [
  ['{}', '{}'],
  ['{\n    "one": 1,\n    "two": "Two"\n}', '{"one":1,"two":"Two"}'],
  ['{\n    "b": "2",\n    "a": "1"\n}', '{"a":"1","b":"2"}'],
  ['{"b":"2","a":"1"}', '{"a":"1","b":"2"}'],
  [
    `{
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {
                    "medium": "email",
                    "address": "john.doe@example.org"
                },
                {
                    "medium": "msisdn",
                    "address": "123456789"
                }
            ]
        }
    }
}`,
    '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}',
  ],
  ['{\n    "a": "日本語"\n}', '{"a":"日本語"}'],
  ['{\n    "本": 2,\n    "日": 1\n}', '{"日":1,"本":2}'],
  ['{\n    "a": "\\u65E5"\n}', '{"a":"日"}'],
  ['{\n    "a": null\n}', '{"a":null}'],
  ['{\n    "a": -0,\n    "b": 1e10\n}', '{"a":0,"b":10000000000}'],
];

describe('canonicalJson: appendix examples', () => {
  it.each(SPEC_EXAMPLES)('example %#', (input, expected) => {
    expect(canonicalJson(JSON.parse(input))).toBe(expected);
    // Byte for byte: UTF-8 of the expected text.
    expect(Buffer.from(canonicalJsonBytes(JSON.parse(input))).equals(Buffer.from(expected, 'utf8'))).toBe(true);
  });
});

describe('canonicalJson: ordering', () => {
  it('sorts keys by code point, not UTF-16 code unit (astral vs U+E000–U+FFFF)', () => {
    // U+1F600 is stored as D83D DE00, which sorts before U+FF21 by code unit but after it by code point.
    const obj = { '\u{1F600}': 1, '\uFF21': 2, a: 3, '\u00e9': 4 };
    expect(canonicalJson(obj)).toBe('{"a":3,"é":4,"Ａ":2,"😀":1}');
    expect(compareCodePoints('\u{1F600}', '\uFF21')).toBeGreaterThan(0);
    expect(compareCodePoints('\uFF21', '\u{1F600}')).toBeLessThan(0);
    expect(compareCodePoints('\u{1F600}', '\u{1F601}')).toBeLessThan(0);
    expect(compareCodePoints('ab', 'abc')).toBeLessThan(0);
    expect(compareCodePoints('x', 'x')).toBe(0);
  });

  it('agrees with a reference sort over code point arrays', () => {
    const alphabet = ['a', 'z', '\u00ff', '\ud7ff', '\ue000', '\uffff', '\u{10000}', '\u{1F600}', '\u{10FFFF}'];
    const keys: string[] = [];
    for (const x of alphabet) for (const y of alphabet) keys.push(x + y);
    const byCodePoint = [...keys].sort((p, q) => {
      const a = [...p].map((c) => c.codePointAt(0)!);
      const b = [...q].map((c) => c.codePointAt(0)!);
      for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
      return a.length - b.length;
    });
    expect([...keys].sort(compareCodePoints)).toEqual(byCodePoint);
  });

  it('sorts integer-like keys as strings (JS enumerates them numerically first)', () => {
    expect(canonicalJson({ b: 1, 10: 2, 9: 3, a: 4 })).toBe('{"10":2,"9":3,"a":4,"b":1}');
  });

  it('keeps a "__proto__" key that JSON.parse made an own property', () => {
    expect(canonicalJson(JSON.parse('{"b":2,"__proto__":{"a":1}}'))).toBe('{"__proto__":{"a":1},"b":2}');
  });

  it('sorts nested objects and keeps array order', () => {
    expect(canonicalJson({ b: [{ d: 1, c: 2 }, 3], a: {} })).toBe('{"a":{},"b":[{"c":2,"d":1},3]}');
  });
});

describe('canonicalJson: escapes', () => {
  it('escapes only ", \\ and C0 controls, with the shortest forms', () => {
    const s = '"\\\b\t\n\f\r\u0000\u0001\u001f\u007f\u2028/é😀';
    expect(canonicalJson(s)).toBe('"\\"\\\\\\b\\t\\n\\f\\r\\u0000\\u0001\\u001f\u007f\u2028/é😀"');
  });
  it('uses lowercase hex in \\u escapes', () => {
    expect(canonicalJson('\u001b')).toBe('"\\u001b"');
  });
  it('rejects lone surrogates (no UTF-8 encoding), in values and keys', () => {
    expect(() => canonicalJson('\ud800')).toThrow(CanonicalJsonError);
    expect(() => canonicalJson('a\udc00')).toThrow(CanonicalJsonError);
    expect(() => canonicalJson({ '\ud83d': 1 })).toThrow(CanonicalJsonError);
    expect(canonicalJson('\ud83d\ude00')).toBe('"😀"');
  });
});

describe('canonicalJson: numbers', () => {
  it('writes integers without exponent, -0 as 0', () => {
    expect(canonicalJson([0, -0, 1, -1, 1e10, 2 ** 53 - 1, -(2 ** 53) + 1])).toBe(
      '[0,0,1,-1,10000000000,9007199254740991,-9007199254740991]',
    );
  });
  it('rejects floats, NaN and infinities', () => {
    for (const v of [1.5, -0.1, NaN, Infinity, -Infinity, 1e-7]) {
      expect(() => canonicalJson({ v })).toThrow(CanonicalJsonError);
    }
  });
  it('strictIntegers rejects values outside [-(2^53)+1, 2^53-1]; lenient mode writes them in full', () => {
    for (const v of [2 ** 53, -(2 ** 53), 1e21]) {
      expect(() => canonicalJson({ v }, { strictIntegers: true })).toThrow(/outside/);
    }
    expect(canonicalJson({ v: 2 ** 53 })).toBe('{"v":9007199254740992}');
    expect(canonicalJson({ v: 1e21 })).toBe('{"v":1000000000000000000000}');
  });
  it('accepts bigint integers with the same range rule', () => {
    expect(canonicalJson({ v: 12345678901234567890n })).toBe('{"v":12345678901234567890}');
    expect(() => canonicalJson({ v: 2n ** 53n }, { strictIntegers: true })).toThrow(CanonicalJsonError);
    expect(canonicalJson({ v: 2n ** 53n - 1n }, { strictIntegers: true })).toBe('{"v":9007199254740991}');
  });
});

describe('canonicalJson: non-JSON values', () => {
  const cases: [string, unknown][] = [
    ['undefined', undefined],
    ['undefined property', { a: undefined }],
    ['undefined in array', [undefined]],
    ['sparse array', [1, , 2]], // eslint-disable-line no-sparse-arrays
    ['function', { f: () => 1 }],
    ['symbol', Symbol('x')],
    ['Date', new Date(0)],
    ['Map', new Map()],
    ['Uint8Array', new Uint8Array(2)],
    ['class instance', new (class X {})()],
    ['symbol key', { [Symbol('k')]: 1 }],
  ];
  it.each(cases)('rejects %s with a named error', (_name, value) => {
    let err: unknown;
    try {
      canonicalJson(value);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CanonicalJsonError);
    expect((err as Error).name).toBe('CanonicalJsonError');
  });
  it('rejects cycles and reports the path', () => {
    const a: Record<string, unknown> = { x: [1] };
    (a.x as unknown[]).push(a);
    expect(() => canonicalJson(a)).toThrow(/cyclic structure at \.x\[1\]/);
  });
  it('allows the same object twice when it is not a cycle', () => {
    const shared = { k: 1 };
    expect(canonicalJson({ a: shared, b: shared })).toBe('{"a":{"k":1},"b":{"k":1}}');
  });
  it('rejects absurd nesting with a CanonicalJsonError rather than a stack overflow', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 5000; i++) deep = [deep];
    expect(() => canonicalJson(deep)).toThrow(CanonicalJsonError);
    let ok: unknown = 1;
    for (let i = 0; i < 900; i++) ok = [ok];
    expect(canonicalJson(ok)).toBe('['.repeat(900) + '1' + ']'.repeat(900));
  });
  it('accepts null-prototype objects', () => {
    const o = Object.create(null) as Record<string, unknown>;
    o.b = 1;
    o.a = true;
    expect(canonicalJson(o)).toBe('{"a":true,"b":1}');
  });
});

describe('canonicalJsonReusing', () => {
  it('gives canonicalJson’s text, reusing only values that are the same', async () => {
    const { canonicalJsonReusing, canonicalJson: cj } = await import('../../../src/core/canonical-json.js');
    const shared = ['$a', '$b'];
    const parts = new Map();
    const full = { type: 'm.room.message', prev_events: shared, content: { body: 'hi', msgtype: 'm.text' }, depth: 3, 'é': 1 };
    expect(canonicalJsonReusing(full, parts)).toBe(cj(full));
    // Same key, another value: encoded afresh, not taken from `parts`.
    const redacted = { type: 'm.room.message', prev_events: shared, content: {}, depth: 4, hashes: { sha256: 'x' } };
    expect(canonicalJsonReusing(redacted, parts)).toBe(cj(redacted));
    expect(parts.get('prev_events')?.value).toBe(shared);
  });

  it('refuses what canonicalJson refuses', async () => {
    const { canonicalJsonReusing, CanonicalJsonError: E } = await import('../../../src/core/canonical-json.js');
    expect(() => canonicalJsonReusing({ a: 1.5 }, new Map())).toThrow(E);
    expect(() => canonicalJsonReusing({ a: 2 ** 60 }, new Map(), { strictIntegers: true })).toThrow(E);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = { back: cyclic };
    expect(() => canonicalJsonReusing(cyclic, new Map())).toThrow(E);
  });
});
