/**
 * One key, three names: a Hearth homeserver's ed25519 seed is its event-signing key, its server name (the public key
 * in base32, src/core/server-key.ts) and its libp2p identity (an Ed25519 peer ID embeds the public key in an
 * identity multihash). So a server name and a peer ID convert into each other with no lookup, and Noise, which
 * proves the remote holds the peer ID's key, authenticates the remote's server name.
 * Spec for peer IDs: https://github.com/libp2p/specs/blob/master/peer-ids/peer-ids.md
 */
import { generateKeyPairFromSeed, publicKeyFromRaw } from '@libp2p/crypto/keys';
import type { Ed25519PrivateKey, PeerId } from '@libp2p/interface';
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id';
import { publicKeyFromServerName, serverNameFromPublicKey } from '../core/server-key.js';

/** The libp2p private key of a homeserver seed (the same ed25519 key that signs its events). */
export function libp2pKeyFromSeed(seed: Uint8Array): Promise<Ed25519PrivateKey> {
  return generateKeyPairFromSeed('Ed25519', seed);
}

/** The peer ID of a Hearth server name, or undefined when the name is not one (a DNS name, a typo). */
export function serverNameToPeerId(serverName: string): PeerId | undefined {
  const raw = publicKeyFromServerName(serverName);
  if (raw === undefined) return undefined;
  return peerIdFromPublicKey(publicKeyFromRaw(raw));
}

/** The Hearth server name of a peer, or undefined for peers whose key is not Ed25519 (not a Hearth server). */
export function peerIdToServerName(peerId: PeerId | string): string | undefined {
  let id: PeerId;
  try {
    id = typeof peerId === 'string' ? peerIdFromString(peerId) : peerId;
  } catch {
    return undefined;
  }
  if (id.type !== 'Ed25519' || id.publicKey === undefined) return undefined;
  return serverNameFromPublicKey(id.publicKey.raw);
}
