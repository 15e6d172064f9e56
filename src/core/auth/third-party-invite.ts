/**
 * Rule 5.4.1.7 [v1–v7: 5.3.1.7, v6–v11: 4.x]: does any signature in `third_party_invite.signed` match a public key of
 * the m.room.third_party_invite event?
 *
 * Spec: shared/matrix-spec/content/rooms/v12.md §Authorisation rules; server-server-api.md §Verifying the invite;
 * data/event-schemas/schema/m.room.third_party_invite.yaml (content.public_key, content.public_keys[].public_key:
 * Ed25519 keys in standard or URL-safe unpadded Base64).
 */
import { decodeBase64 } from '../base64.js';
import type { JsonObject } from '../json.js';
import { isJsonObject } from '../json.js';
import { verifyJsonSignatureSync } from '../signing.js';

/** The public keys of an m.room.third_party_invite: `public_key` (7.1) and each `public_keys[].public_key` (7.2). */
export function thirdPartyInvitePublicKeys(inviteContent: JsonObject): Uint8Array[] {
  const encoded: string[] = [];
  if (typeof inviteContent.public_key === 'string') encoded.push(inviteContent.public_key);
  if (Array.isArray(inviteContent.public_keys)) {
    for (const k of inviteContent.public_keys) {
      if (isJsonObject(k) && typeof k.public_key === 'string') encoded.push(k.public_key);
    }
  }
  const out: Uint8Array[] = [];
  for (const s of encoded) {
    const bytes = decodeBase64(s);
    if (bytes) out.push(bytes);
  }
  return out;
}

/** True if some Ed25519 signature in `signed.signatures` verifies under one of the invite's public keys. */
export function thirdPartyInviteSignatureMatches(signed: JsonObject, inviteContent: JsonObject): boolean {
  const keys = thirdPartyInvitePublicKeys(inviteContent);
  if (keys.length === 0 || !isJsonObject(signed.signatures)) return false;
  for (const [server, byKey] of Object.entries(signed.signatures)) {
    if (!isJsonObject(byKey)) continue;
    for (const keyId of Object.keys(byKey)) {
      if (!keyId.startsWith('ed25519:')) continue;
      for (const key of keys) {
        if (verifyJsonSignatureSync(signed, server, keyId, key)) return true;
      }
    }
  }
  return false;
}
