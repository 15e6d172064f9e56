/**
 * End-to-end encryption with real clients: two matrix-js-sdk 43 clients with the Rust crypto stack
 * (`initRustCrypto`, in memory) against `hearth serve`. Alice sends a message in an m.megolm.v1.aes-sha2 room and
 * Bob's client decrypts it — which needs /keys/upload (device and one-time keys), /keys/query, /keys/claim,
 * olm-encrypted to-device delivery of the room key and the /sync extensions (one-time key counts, device lists)
 * to all work together.
 *
 * Every wait is on a client event with a timeout and re-checks the state first, so nothing depends on timing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientEvent, MatrixEventEvent, RoomEvent, RoomMemberEvent, createClient } from 'matrix-js-sdk';
import { logger as sdkGlobalLogger } from 'matrix-js-sdk/lib/logger.js';
import type { MatrixClient, MatrixEvent } from 'matrix-js-sdk';
import { http, registerUser, startServe } from '../helpers/serve.js';
import type { Account, ServedPeer } from '../helpers/serve.js';
import { quietLogger as makeQuietLogger, waitFor as waitForEvent } from '../helpers/js-sdk.js';
import type { Emitter } from '../helpers/js-sdk.js';

const WAIT_MS = 20_000;

// Parts of the SDK (the event queue) log through its global logger (a loglevel logger) at info level.
(sdkGlobalLogger as unknown as { setLevel(level: string): void }).setLevel('warn');

const quietLogger = makeQuietLogger();


function waitFor<T>(emitter: Emitter, events: readonly string[], check: () => T | undefined | null | false, what: string): Promise<T> {
  return waitForEvent(emitter, events, check, what, WAIT_MS);
}

describe('end-to-end encryption with matrix-js-sdk and Rust crypto', () => {
  let peer: ServedPeer;
  let aliceAccount: Account;
  let bobAccount: Account;
  const clients: MatrixClient[] = [];

  async function cryptoClient(account: Account): Promise<MatrixClient> {
    const client = createClient({
      baseUrl: peer.url,
      userId: account.userId,
      accessToken: account.accessToken,
      deviceId: account.deviceId,
      logger: quietLogger,
    });
    clients.push(client);
    await client.initRustCrypto({ useIndexedDB: false });
    const synced = waitFor(client, [ClientEvent.Sync], () => client.isInitialSyncComplete(), `${account.userId}'s first sync`);
    await client.startClient({ initialSyncLimit: 10 });
    await synced;
    return client;
  }

  /** Polls /keys/query until the device's identity keys are on the server (the client uploads them in the background). */
  async function keysPublished(account: Account): Promise<Record<string, any>> {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const res = await http(peer, 'POST', '/_matrix/client/v3/keys/query', { device_keys: { [account.userId]: [] } }, account.accessToken);
      const dev = res.body.device_keys?.[account.userId]?.[account.deviceId];
      if (dev) return dev;
      if (Date.now() > deadline) throw new Error(`${account.userId}'s device keys never reached the server`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  beforeAll(async () => {
    peer = await startServe();
    aliceAccount = await registerUser(peer, 'alice');
    bobAccount = await registerUser(peer, 'bob');
  }, 60_000);

  afterAll(() => {
    for (const c of clients) c.stopClient();
  });

  it('bob decrypts the message alice sends in an encrypted room', async () => {
    const [alice, bob] = await Promise.all([cryptoClient(aliceAccount), cryptoClient(bobAccount)]);

    // Both devices publish identity keys, signed by their own ed25519 key, and one-time keys.
    const [aliceKeys, bobKeys] = await Promise.all([keysPublished(aliceAccount), keysPublished(bobAccount)]);
    expect(aliceKeys.keys[`ed25519:${aliceAccount.deviceId}`]).toBe((await alice.getCrypto()!.getOwnDeviceKeys()).ed25519);
    expect(bobKeys.algorithms).toContain('m.megolm.v1.aes-sha2');

    const { room_id: roomId } = await alice.createRoom({
      invite: [bobAccount.userId],
      initial_state: [{ type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } }],
    });
    await waitFor(bob, [ClientEvent.Room, RoomEvent.MyMembership], () => bob.getRoom(roomId)?.getMyMembership() === 'invite', "the invite in bob's client");
    await bob.joinRoom(roomId);
    await waitFor(
      alice,
      [RoomMemberEvent.Membership, RoomEvent.Timeline],
      () => alice.getRoom(roomId)?.getMember(bobAccount.userId)?.membership === 'join',
      "bob's join in alice's client",
    );
    expect(await alice.getCrypto()!.isEncryptionEnabledInRoom(roomId)).toBe(true);

    // Alice's client learns bob's device through /keys/query (device_lists.changed told it bob is new).
    const devices = await alice.getCrypto()!.getUserDeviceInfo([bobAccount.userId], true);
    expect([...(devices.get(bobAccount.userId)?.keys() ?? [])]).toContain(bobAccount.deviceId);

    const { event_id: eventId } = await alice.sendTextMessage(roomId, 'the secret is hearth');

    // On the wire it is ciphertext; the server never sees the body.
    const raw = await http(peer, 'GET', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(eventId)}`, undefined, bobAccount.accessToken);
    expect(raw.body.type).toBe('m.room.encrypted');
    expect(JSON.stringify(raw.body)).not.toContain('the secret is hearth');

    const decrypted = await waitFor(
      bob,
      [RoomEvent.Timeline, MatrixEventEvent.Decrypted],
      () => {
        const ev: MatrixEvent | undefined = bob.getRoom(roomId)?.getLiveTimeline().getEvents().find((e) => e.getId() === eventId);
        return ev && !ev.isDecryptionFailure() && ev.getClearContent()?.body !== undefined ? ev : undefined;
      },
      "the decrypted message in bob's client",
    );
    expect(decrypted.isEncrypted()).toBe(true);
    expect(decrypted.getClearContent()?.body).toBe('the secret is hearth');
    expect(decrypted.getType()).toBe('m.room.message');

  }, 90_000);
});
