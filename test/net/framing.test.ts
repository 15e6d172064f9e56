/** Length-prefixed JSON frames: splitting, oversize frames skipped without buffering, malformed frames classified. */
import { describe, expect, test } from 'vitest';
import { FrameDecoder, encodeFrame, parseFrame, peekFrame } from '../../src/net/framing.js';
import type { DecodedFrame } from '../../src/net/framing.js';

const enc = new TextEncoder();
const raw = (json: string): Uint8Array => {
  const body = enc.encode(json);
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
};
const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};
const payloads = (frames: DecodedFrame[]) => frames.map((f) => (f.kind === 'frame' ? new TextDecoder().decode(f.payload) : `oversize:${f.length}`));

describe('FrameDecoder', () => {
  const a = encodeFrame({ id: 1, method: 'GET', path: '/a' });
  const b = encodeFrame({ id: 2, status: 200, body: { ok: 'é✓' } });

  test('whole frames, several in one chunk', () => {
    expect(payloads(new FrameDecoder(1024).push(concat(a, b)))).toEqual(['{"id":1,"method":"GET","path":"/a"}', '{"id":2,"status":200,"body":{"ok":"é✓"}}']);
  });

  test('frames split at every byte boundary', () => {
    const all = concat(a, b, a);
    const d = new FrameDecoder(1024);
    const out: DecodedFrame[] = [];
    for (let i = 0; i < all.length; i++) out.push(...d.push(all.subarray(i, i + 1)));
    expect(payloads(out)).toEqual(payloads(new FrameDecoder(1024).push(all)));
    expect(out).toHaveLength(3);
  });

  test('an oversize frame is reported once with its head, skipped, and the next frame still decodes', () => {
    const big = encodeFrame({ id: 9, method: 'PUT', path: '/big', body: { x: 'y'.repeat(5000) } });
    const d = new FrameDecoder(100);
    const out: DecodedFrame[] = [];
    const all = concat(big, a);
    for (let i = 0; i < all.length; i += 37) out.push(...d.push(all.subarray(i, i + 37)));
    expect(out).toHaveLength(2);
    expect(out[0].kind).toBe('oversize');
    if (out[0].kind === 'oversize') {
      expect(out[0].length).toBe(big.length - 4);
      expect(peekFrame(out[0].head)).toEqual({ id: 9, response: false });
    }
    expect(payloads([out[1]])).toEqual(['{"id":1,"method":"GET","path":"/a"}']);
  });

  test('a huge declared length is skipped as bytes arrive, never allocated', () => {
    const header = new Uint8Array([0xff, 0xff, 0xff, 0xff]);
    const d = new FrameDecoder(1024);
    const out = d.push(concat(header, enc.encode('{"id":3,"status":200,"body":')));
    expect(out).toEqual([]);
    const more = d.push(new Uint8Array(100));
    expect(more).toHaveLength(1);
    expect(more[0].kind).toBe('oversize');
    if (more[0].kind === 'oversize') expect(peekFrame(more[0].head)).toEqual({ id: 3, response: true });
  });
});

describe('parseFrame', () => {
  const parse = (json: string) => parseFrame(enc.encode(json));

  test('requests and responses', () => {
    expect(parse('{"id":1,"method":"PUT","path":"/_matrix/federation/v1/send/1","body":{"pdus":[]}}')).toEqual({
      kind: 'request',
      frame: { id: 1, method: 'PUT', path: '/_matrix/federation/v1/send/1', body: { pdus: [] } },
    });
    expect(parse('{"id":1,"method":"GET","path":"/x"}')).toEqual({ kind: 'request', frame: { id: 1, method: 'GET', path: '/x' } });
    expect(parse('{"id":4,"status":404,"body":{"errcode":"M_NOT_FOUND"}}')).toEqual({ kind: 'response', frame: { id: 4, status: 404, body: { errcode: 'M_NOT_FOUND' } } });
  });

  test('malformed frames keep their id when it can be found', () => {
    const cases: Array<[string, { id?: number; response: boolean; errcode: string }]> = [
      ['{"id":5,"method":"GET",', { id: 5, response: false, errcode: 'M_NOT_JSON' }],
      ['{"id":6,"status":200, nope', { id: 6, response: true, errcode: 'M_NOT_JSON' }],
      ['garbage', { response: false, errcode: 'M_NOT_JSON' }],
      ['[1,2]', { response: false, errcode: 'M_BAD_JSON' }],
      ['{"id":7,"method":"PATCH","path":"/x"}', { id: 7, response: false, errcode: 'M_BAD_JSON' }],
      ['{"id":8,"method":"GET","path":"relative"}', { id: 8, response: false, errcode: 'M_BAD_JSON' }],
      ['{"id":9,"method":"PUT","path":"/x","body":[1]}', { id: 9, response: false, errcode: 'M_BAD_JSON' }],
      ['{"id":-1,"method":"GET","path":"/x"}', { response: false, errcode: 'M_BAD_JSON' }],
      ['{"id":1.5,"method":"GET","path":"/x"}', { response: false, errcode: 'M_BAD_JSON' }],
      ['{"id":10,"status":999,"body":null}', { id: 10, response: true, errcode: 'M_BAD_JSON' }],
      ['{"status":200,"body":null}', { response: true, errcode: 'M_BAD_JSON' }],
    ];
    for (const [json, want] of cases) {
      const p = parse(json);
      expect(p.kind, json).toBe('malformed');
      if (p.kind === 'malformed') expect({ id: p.id, response: p.response, errcode: p.errcode }, json).toEqual({ id: undefined, ...want });
    }
  });

  test('invalid UTF-8 is M_NOT_JSON', () => {
    const p = parseFrame(concat(enc.encode('{"id":3,"method":"GET","path":"/'), new Uint8Array([0xc3, 0x28]), enc.encode('"}')));
    expect(p).toMatchObject({ kind: 'malformed', id: 3, errcode: 'M_NOT_JSON' });
  });

  test('an empty frame is malformed', () => {
    expect(payloads(new FrameDecoder(10).push(raw('')))).toEqual(['']);
    expect(parseFrame(new Uint8Array(0))).toMatchObject({ kind: 'malformed', errcode: 'M_NOT_JSON' });
  });
});
