/** Pure helpers of the client: linkify, avatars, names → localparts, IDs, dates. */
import { describe, expect, it } from 'vitest';
import { generatedLocalpart, localpartFromName, randomString } from '../../../src/client/lib/account.js';
import { colourIndex, initials } from '../../../src/client/lib/avatar.js';
import { dayKey, dayLabel, formatBytes, typingText } from '../../../src/client/lib/format.js';
import { isRoomAlias, isRoomId, isUserId, localpart, serverName } from '../../../src/client/lib/ids.js';
import { isSafeHref, linkify } from '../../../src/client/lib/linkify.js';

describe('linkify', () => {
  it('splits text around http(s) URLs and keeps sentence punctuation out of the link', () => {
    expect(linkify('see https://matrix.org/docs, then www.example.com.')).toEqual([
      { kind: 'text', text: 'see ' },
      { kind: 'link', text: 'https://matrix.org/docs', href: 'https://matrix.org/docs' },
      { kind: 'text', text: ', then ' },
      { kind: 'link', text: 'www.example.com', href: 'https://www.example.com' },
      { kind: 'text', text: '.' },
    ]);
  });

  it('keeps a closing parenthesis that belongs to the URL', () => {
    const parts = linkify('(https://en.wikipedia.org/wiki/Fire_(element))');
    expect(parts[1]).toEqual({ kind: 'link', text: 'https://en.wikipedia.org/wiki/Fire_(element)', href: 'https://en.wikipedia.org/wiki/Fire_(element)' });
    expect(parts[2]).toEqual({ kind: 'text', text: ')' });
  });

  it('never links javascript: or data: URLs and leaves markup as text', () => {
    const text = 'javascript:alert(1) data:text/html,<b>x</b> <img src=x onerror=alert(1)>';
    expect(linkify(text)).toEqual([{ kind: 'text', text }]);
    expect(isSafeHref('javascript:alert(1)')).toBe(false);
    expect(isSafeHref('https://ok.example/')).toBe(true);
  });

  it('returns plain text unchanged, emoji included', () => {
    expect(linkify('hello 🔥 world')).toEqual([{ kind: 'text', text: 'hello 🔥 world' }]);
    expect(linkify('')).toEqual([]);
  });
});

describe('avatars', () => {
  it('takes the first letter or emoji of a name, skipping sigils', () => {
    expect(initials('alice')).toBe('A');
    expect(initials('@bob:example.org')).toBe('B');
    expect(initials('  #room')).toBe('R');
    expect(initials('👩‍🚀 Astro')).toBe('👩‍🚀');
    expect(initials('')).toBe('?');
  });

  it('gives each ID a stable colour in the palette', () => {
    const a = colourIndex('@alice:hs');
    expect(colourIndex('@alice:hs')).toBe(a);
    expect(a).toBeGreaterThanOrEqual(0);
    expect(a).toBeLessThan(8);
    const spread = new Set(['@a:x', '@b:x', '@c:x', '@d:x', '@e:x', '@f:x', '@g:x', '@h:x'].map(colourIndex));
    expect(spread.size).toBeGreaterThan(3);
  });
});

describe('first-run names', () => {
  it('turns a display name into a valid localpart', () => {
    expect(localpartFromName('Zoë Smith')).toBe('zoe-smith');
    expect(localpartFromName('  Ada   Lovelace!! ')).toBe('ada-lovelace');
    expect(localpartFromName('o.brien_2')).toBe('o.brien_2');
    expect(localpartFromName('🔥🔥')).toBe('');
    expect(localpartFromName('x'.repeat(100))).toHaveLength(64);
  });

  it('generates strong random passwords and fallback localparts', () => {
    const a = randomString(24);
    expect(a).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(randomString(24)).not.toBe(a);
    expect(generatedLocalpart()).toMatch(/^user-[a-z0-9]{6}$/);
  });
});

describe('identifiers', () => {
  it('recognises user IDs, room IDs (with and without server) and aliases', () => {
    expect(isUserId('@alice:example.org')).toBe(true);
    expect(isUserId('@alice:[::1]:8448')).toBe(true);
    expect(isUserId('alice')).toBe(false);
    expect(isUserId('@alice')).toBe(false);
    expect(isRoomId('!abc:example.org')).toBe(true);
    expect(isRoomId('!wLW7PhCA4kSCEYGjyFeBHt85cg7hvhkQCvFts1O7Cko')).toBe(true);
    expect(isRoomId('#abc:example.org')).toBe(false);
    expect(isRoomAlias('#garden:example.org')).toBe(true);
    expect(isRoomAlias('#garden')).toBe(false);
    expect(localpart('@alice:example.org')).toBe('alice');
    expect(serverName('@alice:example.org:8448')).toBe('example.org:8448');
  });
});

describe('dates and small texts', () => {
  const now = new Date(2025, 5, 15, 12, 0).getTime();

  it('labels days as Today, Yesterday, or a date (with the year when not this year)', () => {
    expect(dayLabel(new Date(2025, 5, 15, 0, 1).getTime(), now)).toBe('Today');
    expect(dayLabel(new Date(2025, 5, 14, 23, 59).getTime(), now)).toBe('Yesterday');
    const older = dayLabel(new Date(2025, 2, 3, 9).getTime(), now);
    expect(older).not.toMatch(/Today|Yesterday|2025/);
    expect(dayLabel(new Date(2023, 2, 3, 9).getTime(), now)).toMatch(/2023/);
  });

  it('compares local calendar days', () => {
    expect(dayKey(new Date(2025, 0, 1, 0, 0).getTime())).toBe(dayKey(new Date(2025, 0, 1, 23, 59).getTime()));
    expect(dayKey(new Date(2025, 0, 1, 23, 59).getTime())).toBeLessThan(dayKey(new Date(2025, 0, 2, 0, 0).getTime()));
  });

  it('describes who is typing', () => {
    expect(typingText([])).toBe('');
    expect(typingText(['Alice'])).toBe('Alice is typing…');
    expect(typingText(['Alice', 'Bob'])).toBe('Alice and Bob are typing…');
    expect(typingText(['A', 'B', 'C'])).toBe('Several people are typing…');
  });

  it('formats byte counts', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1_234_567)).toBe('1.2 MB');
    expect(formatBytes(-1)).toBe('?');
  });
});
