/**
 * Splits message text into plain text and links, so the UI renders links as elements and never as HTML.
 * Only http(s) URLs (and bare www. hosts) become links; trailing punctuation stays text.
 */

export type TextPart = { kind: 'text'; text: string } | { kind: 'link'; text: string; href: string };

const URL_RE = /\b(?:https?:\/\/|www\.)[^\s<>"]+/gi;
const TRAILING_CHAR = /[.,;:!?'")\]}>]/;

export function linkify(text: string): TextPart[] {
  const parts: TextPart[] = [];
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    let url = m[0];
    const start = m.index ?? 0;
    // Drop sentence punctuation from the end, but keep a ')' that closes a '(' inside the URL ("…/Fire_(element)").
    while (TRAILING_CHAR.test(url.slice(-1))) {
      if (url.endsWith(')') && count(url, '(') >= count(url, ')')) break;
      url = url.slice(0, -1);
    }
    const href = /^www\./i.test(url) ? `https://${url}` : url;
    if (!isSafeHref(href)) continue;
    if (start > last) parts.push({ kind: 'text', text: text.slice(last, start) });
    parts.push({ kind: 'link', text: url, href });
    last = start + url.length;
  }
  if (last < text.length) parts.push({ kind: 'text', text: text.slice(last) });
  return parts;
}

function count(s: string, ch: string): number {
  return s.split(ch).length - 1;
}

/** Only absolute http(s) URLs with a host: never javascript:, data: or anything the browser might run. */
export function isSafeHref(href: string): boolean {
  try {
    const u = new URL(href);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname.length > 0;
  } catch {
    return false;
  }
}
