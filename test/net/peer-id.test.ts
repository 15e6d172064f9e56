/** A Hearth server name and its libp2p peer ID are the same key: both directions, no network. */
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { describe, expect, test } from 'vitest';
import { generateSeed } from '../../src/core/crypto/ed25519.js';
import { serverIdentityFromSeed } from '../../src/core/server-key.js';
import { libp2pKeyFromSeed, peerIdToServerName, serverNameToPeerId } from '../../src/net/peer-id.js';

describe('server name ↔ peer ID', () => {
  test('the libp2p key of a seed has the peer ID of the seed’s server name, and back', async () => {
    const seed = generateSeed();
    const { serverName } = serverIdentityFromSeed(seed);
    const peerId = peerIdFromPrivateKey(await libp2pKeyFromSeed(seed));
    expect(serverNameToPeerId(serverName)?.equals(peerId)).toBe(true);
    expect(peerIdToServerName(peerId)).toBe(serverName);
    expect(peerIdToServerName(peerId.toString())).toBe(serverName);
  });

  test('a fixed seed maps to a fixed name and peer ID (RFC 8032 test key 1)', async () => {
    const seed = Uint8Array.from(Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex'));
    const { serverName } = serverIdentityFromSeed(seed);
    const peerId = serverNameToPeerId(serverName)!;
    expect(peerId.type).toBe('Ed25519');
    expect(Buffer.from(peerId.publicKey!.raw).toString('hex')).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    expect(peerIdFromPrivateKey(await libp2pKeyFromSeed(seed)).toString()).toBe(peerId.toString());
  });

  test('names that are not Hearth names have no peer ID', () => {
    const { serverName } = serverIdentityFromSeed(generateSeed());
    for (const bad of ['matrix.org', 'localhost:8448', serverName.toUpperCase(), serverName.slice(1), `${serverName}a`, '', `${serverName.slice(0, -1)}b`]) {
      expect(serverNameToPeerId(bad), bad).toBeUndefined();
    }
  });

  test('peers whose key is not Ed25519, and garbage strings, have no server name', async () => {
    const secp = peerIdFromPrivateKey(await generateKeyPair('secp256k1'));
    expect(peerIdToServerName(secp)).toBeUndefined();
    expect(peerIdToServerName('not-a-peer-id')).toBeUndefined();
  });
});
