/**
 * Recognising what a person typed: a user ID, a room ID or a room alias.
 * https://spec.matrix.org/v1.19/appendices/#identifier-grammar
 */

const SERVER = '[A-Za-z0-9.\\-:\\[\\]]+';

export function isUserId(s: string): boolean {
  return new RegExp(`^@[^:\\s]+:${SERVER}$`).test(s) && s.length <= 255;
}

export function isRoomId(s: string): boolean {
  // Room v12 room IDs carry no server name: "!<hash>".
  return /^![^\s:]+(:[A-Za-z0-9.\-:[\]]+)?$/.test(s) && s.length <= 255;
}

export function isRoomAlias(s: string): boolean {
  return new RegExp(`^#[^:\\s]+:${SERVER}$`).test(s) && s.length <= 255;
}

/** "@alice:example.org" → "alice" */
export function localpart(userId: string): string {
  const i = userId.indexOf(':');
  return userId.slice(1, i < 0 ? undefined : i);
}

/** "@alice:example.org" → "example.org" */
export function serverName(userId: string): string {
  const i = userId.indexOf(':');
  return i < 0 ? '' : userId.slice(i + 1);
}
