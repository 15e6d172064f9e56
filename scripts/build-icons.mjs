#!/usr/bin/env node
/**
 * Draws the app icons into public/icons (run by hand when the design changes; the outputs are committed):
 * icon.svg, icon-192.png, icon-512.png and icon-maskable-512.png (full-bleed background, artwork inside the 80 %
 * safe zone). One design — a white house with an orange flame, on orange — drawn from the same shapes in SVG and
 * rasterised here with 4×4 supersampling, so there is no image tool to install.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync } from 'node:zlib';

const out = join(resolve(dirname(fileURLToPath(import.meta.url)), '..'), 'public/icons');
const BG = [0xc2, 0x41, 0x0c];
const FG = [0xff, 0xff, 0xff];
const FLAME = [0xf9, 0x73, 0x16];

// Shapes in unit coordinates (0..1), before the maskable variant's scaling.
const HOUSE = [[0.2, 0.47], [0.5, 0.2], [0.8, 0.47], [0.8, 0.8], [0.2, 0.8]];
// The tip meets the base circle at its tangent points, so the flame has no notch.
const FLAME_TIP = [[0.5, 0.4], [0.4091, 0.5983], [0.5, 0.64], [0.5909, 0.5983]];
const FLAME_BASE = { cx: 0.5, cy: 0.64, r: 0.1 };

function inPolygon(x, y, poly) {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i];
    const [xj, yj] = poly[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function inRoundedSquare(x, y, radius) {
  const cx = Math.min(Math.max(x, radius), 1 - radius);
  const cy = Math.min(Math.max(y, radius), 1 - radius);
  return (x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2;
}

/** Colour (RGBA) at a unit point; `scale` shrinks the artwork toward the centre (maskable safe zone). */
function colourAt(x, y, { maskable }) {
  const radius = maskable ? 0 : 0.22;
  if (!inRoundedSquare(x, y, radius)) return [0, 0, 0, 0];
  const s = maskable ? 0.8 : 1;
  const u = (x - 0.5) / s + 0.5;
  const v = (y - 0.5) / s + 0.5;
  const flame = inPolygon(u, v, FLAME_TIP) || (u - FLAME_BASE.cx) ** 2 + (v - FLAME_BASE.cy) ** 2 <= FLAME_BASE.r ** 2;
  if (flame) return [...FLAME, 255];
  if (inPolygon(u, v, HOUSE)) return [...FG, 255];
  return [...BG, 255];
}

function render(size, opts) {
  const n = 4;
  const px = Buffer.alloc(size * (size * 4 + 1));
  for (let y = 0; y < size; y++) {
    px[y * (size * 4 + 1)] = 0; // filter: none
    for (let x = 0; x < size; x++) {
      const acc = [0, 0, 0, 0];
      for (let sy = 0; sy < n; sy++) {
        for (let sx = 0; sx < n; sx++) {
          const c = colourAt((x + (sx + 0.5) / n) / size, (y + (sy + 0.5) / n) / size, opts);
          // Premultiplied accumulation, so edges against transparency do not darken.
          acc[0] += c[0] * c[3];
          acc[1] += c[1] * c[3];
          acc[2] += c[2] * c[3];
          acc[3] += c[3];
        }
      }
      const o = y * (size * 4 + 1) + 1 + x * 4;
      const a = acc[3];
      px[o] = a ? Math.round(acc[0] / a) : 0;
      px[o + 1] = a ? Math.round(acc[1] / a) : 0;
      px[o + 2] = a ? Math.round(acc[2] / a) : 0;
      px[o + 3] = Math.round(a / (n * n));
    }
  }
  return png(size, size, px);
}

const CRC_TABLE = Array.from({ length: 256 }, (_, i) => {
  let c = i;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
function png(w, h, raw) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const hex = (c) => `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`;
const pts = (poly) => poly.map(([x, y]) => `${x * 512},${y * 512}`).join(' ');
const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 512 512">
  <rect width="512" height="512" rx="${0.22 * 512}" fill="${hex(BG)}"/>
  <polygon points="${pts(HOUSE)}" fill="${hex(FG)}"/>
  <polygon points="${pts(FLAME_TIP)}" fill="${hex(FLAME)}"/>
  <circle cx="${FLAME_BASE.cx * 512}" cy="${FLAME_BASE.cy * 512}" r="${FLAME_BASE.r * 512}" fill="${hex(FLAME)}"/>
</svg>
`;

mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'icon.svg'), svg);
writeFileSync(join(out, 'icon-192.png'), render(192, { maskable: false }));
writeFileSync(join(out, 'icon-512.png'), render(512, { maskable: false }));
writeFileSync(join(out, 'icon-maskable-512.png'), render(512, { maskable: true }));
console.log(`icons written to ${out}`);
