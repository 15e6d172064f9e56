/**
 * Hearth's self-certifying server names: a server's name *is* its Ed25519 public key, so its signing key is known
 * from the name alone and no key lookup over the network is needed.
 * Spec: shared/matrix-spec/content/appendices.md §"Server Name" (the name is one DNS label of `[a-z2-7]`, valid
 * under the grammar) and content/server-server-api.md §"Publishing Keys" (the `/_matrix/key/v2/server` object).
 *
 * Name = the 32-byte public key as lowercase RFC 4648 base32 without padding: 52 characters (256 bits, the last
 * character carrying one bit and four zero bits). Key ID = `ed25519:hearth`. A name is accepted only in exactly
 * the form we produce (length, alphabet, zero trailing bits), so one key has one name.
 *
 * Base32 is written here (it is 20 lines) rather than taken from a package: none of the installed dependencies
 * exports one, and adding a small, rarely-maintained package to the core for this is not worth the supply-chain
 * surface.
 */
import { encodeBase64 } from './base64.js';
import { generateSeed, publicKeyFromSeed } from './crypto/ed25519.js';
import type { JsonObject } from './json.js';
import type { SigningKey } from './signing.js';
import { signJson } from './signing.js';

export const HEARTH_KEY_ID = 'ed25519:hearth';
export const HEARTH_SERVER_NAME_LENGTH = 52;

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

function base32Encode(bytes: Uint8Array): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(acc >>> bits) & 31];
    }
  }
  if (bits > 0) out += ALPHABET[(acc << (5 - bits)) & 31];
  return out;
}

/** Decode unpadded lowercase base32; undefined for other characters or non-zero trailing bits. */
function base32Decode(s: string): Uint8Array | undefined {
  const out = new Uint8Array(Math.floor((s.length * 5) / 8));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < s.length; i++) {
    const v = ALPHABET.indexOf(s[i]);
    if (v < 0) return undefined;
    acc = ((acc << 5) | v) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >>> bits) & 0xff;
    }
  }
  if ((acc & ((1 << bits) - 1)) !== 0) return undefined;
  return out;
}

export interface ServerIdentity {
  serverName: string;
  key: SigningKey;
}

/** The Hearth server name of an Ed25519 public key. */
export function serverNameFromPublicKey(publicKey: Uint8Array): string {
  if (publicKey.length !== 32) throw new RangeError('Ed25519 public key must be 32 bytes');
  return base32Encode(publicKey);
}

/** The public key a Hearth server name encodes, or undefined for anything that is not exactly such a name
 *  (wrong length, upper case, a port, padding, non-zero trailing bits). */
export function publicKeyFromServerName(name: string): Uint8Array | undefined {
  if (typeof name !== 'string' || name.length !== HEARTH_SERVER_NAME_LENGTH) return undefined;
  const key = base32Decode(name);
  return key?.length === 32 ? key : undefined;
}

export function isHearthServerName(name: string): boolean {
  return publicKeyFromServerName(name) !== undefined;
}

/** A server identity from a stored 32-byte seed. */
export function serverIdentityFromSeed(seed: Uint8Array): ServerIdentity {
  const publicKey = publicKeyFromSeed(seed);
  return { serverName: serverNameFromPublicKey(publicKey), key: { keyId: HEARTH_KEY_ID, seed, publicKey } };
}

/** A new random server identity. */
export function newServerIdentity(): ServerIdentity {
  return serverIdentityFromSeed(generateSeed());
}

/**
 * The server's `/_matrix/key/v2/server` response: its one verify key, no old keys, `valid_until_ts`, signed by
 * itself. The key never changes (it is the name), but the response format requires `valid_until_ts`; receivers
 * use the lesser of it and 7 days ahead, so a horizon of about 7 days is enough.
 */
export async function serverKeysResponse(identity: ServerIdentity, validUntilTs: number): Promise<JsonObject> {
  const body: JsonObject = {
    server_name: identity.serverName,
    verify_keys: { [identity.key.keyId]: { key: encodeBase64(identity.key.publicKey) } },
    old_verify_keys: {},
    valid_until_ts: validUntilTs,
  };
  return signJson(body, identity.serverName, identity.key);
}

/** The verify key of `keyId` for `serverName` with no network lookup: the key encoded in a Hearth name under
 *  `ed25519:hearth`; undefined for other names and other key IDs. */
export function resolveVerifyKey(serverName: string, keyId: string): Uint8Array | undefined {
  return keyId === HEARTH_KEY_ID ? publicKeyFromServerName(serverName) : undefined;
}
