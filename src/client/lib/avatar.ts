/** Initials avatars: the first letter (or emoji) of a name, on a colour that stays the same for a user everywhere. */

const PALETTE_SIZE = 8;

/** The first grapheme of the name, upper-cased, skipping a leading sigil ('@alice' → 'A', '🦊 fox' → '🦊'). */
export function initials(name: string): string {
  const trimmed = name.trim().replace(/^[@#!+]+/, '');
  if (trimmed === '') return '?';
  const Seg = (Intl as unknown as { Segmenter?: new (l?: string, o?: { granularity: string }) => { segment(s: string): Iterable<{ segment: string }> } }).Segmenter;
  let first: string;
  if (Seg) {
    first = '';
    for (const { segment } of new Seg(undefined, { granularity: 'grapheme' }).segment(trimmed)) {
      first = segment;
      break;
    }
  } else {
    first = Array.from(trimmed)[0] ?? '?';
  }
  return first.toUpperCase();
}

/** Index 0–7 into the avatar palette, from a stable hash of the user (or room) ID. */
export function colourIndex(id: string): number {
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) >>> 0;
  return h % PALETTE_SIZE;
}
