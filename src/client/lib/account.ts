/**
 * First-run helpers: turning a display name into a Matrix localpart, and a strong password when none is chosen.
 * https://spec.matrix.org/v1.19/appendices/#user-identifiers (localparts: a-z 0-9 . _ = - /)
 */

/**
 * "Zoë Smith" → "zoe-smith". Letters lose their accents, anything outside the allowed set becomes '-', runs and
 * edges are trimmed. Empty when nothing usable is left (a name in emoji or a non-Latin script): the caller then
 * picks a generated one.
 */
export function localpartFromName(name: string): string {
  return name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9._=-]+/g, '-')
    .replace(/-{2,}/g, '-')
    .replace(/^[-._=]+|[-._=]+$/g, '')
    .slice(0, 64);
}

/** Random bytes as unpadded base64url: `bytes` = 24 gives 192 bits in 32 characters. */
export function randomString(bytes = 24): string {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  let s = '';
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** A localpart for names that give none: "user-" and 6 random lowercase characters. */
export function generatedLocalpart(): string {
  return 'user-' + randomString(6).toLowerCase().replace(/[^a-z0-9]/g, '').slice(0, 6).padEnd(6, '0');
}
