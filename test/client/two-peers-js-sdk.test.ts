/**
 * Two real, unmodified matrix-js-sdk (v43) clients, each on its own `hearth serve` peer, the peers federating over
 * libp2p on loopback (B bootstrapped to A): alice on A creates a room and invites @bob:<B>; bob's client sees the
 * invite and joins; each sees the other's messages, typing and display name through /sync (issue 5: "matrix-js-sdk
 * clients on two Node peers see each other's messages through /sync").
 *
 * Every wait is on a client event with a timeout and re-checks the client's state first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientEvent, Preset, RoomEvent, RoomMemberEvent } from 'matrix-js-sdk';
import type { MatrixClient, MatrixEvent } from 'matrix-js-sdk';
import { registerUser } from '../helpers/serve.js';
import type { Account, ServedPeer } from '../helpers/serve.js';
import { startPeers } from '../federation-node/peers.js';
import { quietLogger as makeQuietLogger, waitFor as waitForEvent, waitForTimelineEvent as waitForTimelineEventIn, sdkClient, startAndSync as startAndSyncIn } from '../helpers/js-sdk.js';
import type { Emitter } from '../helpers/js-sdk.js';

const WAIT_MS = 20_000;

const quietLogger = makeQuietLogger();


function waitFor<T>(emitter: Emitter, events: readonly string[], check: () => T | undefined | null | false, what: string): Promise<T> {
  return waitForEvent(emitter, events, check, what, WAIT_MS);
}


function waitForTimelineEvent(client: MatrixClient, roomId: string, eventId: string): Promise<MatrixEvent> {
  return waitForTimelineEventIn(client, roomId, eventId, WAIT_MS);
}

describe('matrix-js-sdk clients on two federating Node peers', () => {
  let a: ServedPeer, b: ServedPeer;
  let aliceAccount: Account, bobAccount: Account;
  let alice: MatrixClient, bob: MatrixClient;
  let roomId: string;
  const clients: MatrixClient[] = [];

  const newClient = (peer: ServedPeer, account: Account): MatrixClient => sdkClient(clients, peer.url, account, quietLogger);

  const startAndSync = (client: MatrixClient): Promise<void> => startAndSyncIn(client, WAIT_MS);

  beforeAll(async () => {
    [a, b] = await startPeers(2);
    [aliceAccount, bobAccount] = await Promise.all([registerUser(a, 'alice'), registerUser(b, 'bob')]);
    alice = newClient(a, aliceAccount);
    bob = newClient(b, bobAccount);
    await Promise.all([startAndSync(alice), startAndSync(bob)]);
  }, 90_000);

  afterAll(async () => {
    for (const c of clients) c.stopClient();
    await Promise.all([a, b].map((p) => p?.dispose()));
  }, 60_000);

  it('the users live on different servers', () => {
    expect(a.serverName).not.toBe(b.serverName);
    expect(aliceAccount.userId).toBe(`@alice:${a.serverName}`);
    expect(bobAccount.userId).toBe(`@bob:${b.serverName}`);
  });

  it('alice invites bob across peers; bob sees the invite with the room name and joins', async () => {
    roomId = (await alice.createRoom({ name: 'Across peers', preset: Preset.PrivateChat })).room_id;
    await alice.invite(roomId, bobAccount.userId);
    const invited = await waitFor(bob, [ClientEvent.Room, RoomEvent.MyMembership], () => {
      const r = bob.getRoom(roomId);
      return r?.getMyMembership() === 'invite' ? r : undefined;
    }, "the invite in bob's client");
    expect(invited.name).toBe('Across peers');

    const joined = await bob.joinRoom(roomId, { viaServers: [a.serverName] });
    expect(joined.roomId).toBe(roomId);
    await waitFor(bob, [RoomEvent.MyMembership, RoomEvent.Timeline], () => bob.getRoom(roomId)?.getMyMembership() === 'join', 'bob joined in his client');
    await waitFor(
      alice,
      [RoomMemberEvent.Membership, RoomEvent.Timeline],
      () => alice.getRoom(roomId)?.getMember(bobAccount.userId)?.membership === 'join',
      "bob's join in alice's client",
    );
    // Bob's client has the room's state from A.
    await waitFor(bob, [RoomEvent.Name], () => bob.getRoom(roomId)?.name === 'Across peers', "the room name in bob's client");
  }, 60_000);

  it("each sees the other's messages through sync", async () => {
    const hello = (await alice.sendTextMessage(roomId, 'hello from A')).event_id;
    const seen = await waitForTimelineEvent(bob, roomId, hello);
    expect(seen.getSender()).toBe(aliceAccount.userId);
    expect(seen.getContent().body).toBe('hello from A');

    const reply = (await bob.sendTextMessage(roomId, 'hi from B')).event_id;
    const back = await waitForTimelineEvent(alice, roomId, reply);
    expect(back.getSender()).toBe(bobAccount.userId);
    expect(back.getContent().body).toBe('hi from B');
  }, 60_000);

  it('typing and a display name cross peers', async () => {
    await bob.sendTyping(roomId, true, 20_000);
    await waitFor(alice, [RoomMemberEvent.Typing], () => alice.getRoom(roomId)?.getMember(bobAccount.userId)?.typing === true, "bob typing in alice's client");
    await bob.setDisplayName('Bob on B');
    await waitFor(
      alice,
      [RoomMemberEvent.Name, RoomEvent.Timeline],
      () => alice.getRoom(roomId)?.getMember(bobAccount.userId)?.name === 'Bob on B',
      "bob's new name in alice's client",
    );
  }, 60_000);
});
