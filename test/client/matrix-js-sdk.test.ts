/**
 * A real, unmodified matrix-js-sdk (v43, default MemoryStore, no crypto) against `hearth serve` over HTTP: the
 * everyday life of a room as a client sees it — register/login, create, invite, join, messages both ways through
 * /sync, typing, receipts, a profile change, back-pagination, redaction, leave — and all of it still there after the
 * peer restarts.
 *
 * Every wait is on a client event with a timeout and re-checks the client's state first, so nothing depends on
 * timing; the steps run in order and share the room.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ClientEvent,
  EventType,
  MatrixEvent,
  NotificationCountType,
  Preset,
  RoomEvent,
  RoomMemberEvent,
  createClient,
} from 'matrix-js-sdk';
import type { MatrixClient, Room } from 'matrix-js-sdk';
import { http, registerUser, startServe } from '../helpers/serve.js';
import type { Account, ServedPeer } from '../helpers/serve.js';
import { quietLogger as makeQuietLogger, waitFor as waitForEvent, timelineEvent, waitForTimelineEvent as waitForTimelineEventIn, sdkClient, startAndSync as startAndSyncIn } from '../helpers/js-sdk.js';
import type { Emitter } from '../helpers/js-sdk.js';

const WAIT_MS = 10_000;

const quietLogger = makeQuietLogger();

const clients: MatrixClient[] = [];

function newClient(peer: ServedPeer, account: Account): MatrixClient {
  return sdkClient(clients, peer.url, account, quietLogger);
}

function waitFor<T>(emitter: Emitter, events: readonly string[], check: () => T | undefined | null | false, what: string): Promise<T> {
  return waitForEvent(emitter, events, check, what, WAIT_MS);
}

function startAndSync(client: MatrixClient, initialSyncLimit = 20): Promise<void> {
  return startAndSyncIn(client, WAIT_MS, initialSyncLimit);
}


function waitForTimelineEvent(client: MatrixClient, roomId: string, eventId: string): Promise<MatrixEvent> {
  return waitForTimelineEventIn(client, roomId, eventId, WAIT_MS);
}

function membership(client: MatrixClient, roomId: string, userId: string): string | undefined {
  return client.getRoom(roomId)?.getMember(userId)?.membership;
}

describe('matrix-js-sdk against hearth serve', () => {
  let peer: ServedPeer;
  let aliceAccount: Account;
  let bobAccount: Account;
  let alice: MatrixClient;
  let bob: MatrixClient;
  let roomId: string;
  let helloId: string;
  let replyId: string;
  const history: string[] = [];

  beforeAll(async () => {
    peer = await startServe();
  });

  afterAll(() => {
    for (const c of clients) c.stopClient();
  });

  it('registers alice and logs bob in through the SDK', async () => {
    const anon = createClient({ baseUrl: peer.url, logger: quietLogger });
    const reg = await anon.registerRequest({
      username: 'alice',
      password: 'alice-password',
      auth: { type: 'm.login.dummy' },
      initial_device_display_name: 'js-sdk',
    });
    expect(reg.user_id).toBe(`@alice:${peer.serverName}`);
    aliceAccount = { userId: reg.user_id, accessToken: reg.access_token!, deviceId: reg.device_id!, password: 'alice-password' };

    await registerUser(peer, 'bob', { password: 'bob-password' });
    const login = await anon.loginRequest({
      type: 'm.login.password',
      identifier: { type: 'm.id.user', user: 'bob' },
      password: 'bob-password',
    });
    expect(login.user_id).toBe(`@bob:${peer.serverName}`);
    bobAccount = { userId: login.user_id, accessToken: login.access_token, deviceId: login.device_id, password: 'bob-password' };

    alice = newClient(peer, aliceAccount);
    bob = newClient(peer, bobAccount);
    await Promise.all([startAndSync(alice), startAndSync(bob)]);
  });

  it('alice creates a room and invites bob; bob joins with joinRoom', async () => {
    const created = await alice.createRoom({ name: 'Hearth and js-sdk', preset: Preset.PrivateChat });
    roomId = created.room_id;
    const room = await waitFor(alice, [ClientEvent.Room, RoomEvent.Name], () => {
      const r = alice.getRoom(roomId);
      return r?.name === 'Hearth and js-sdk' ? r : undefined;
    }, 'the new room in alice\'s client');
    expect(room.getMyMembership()).toBe('join');

    await alice.invite(roomId, bobAccount.userId);
    const invited = await waitFor(bob, [ClientEvent.Room, RoomEvent.MyMembership], () => {
      const r = bob.getRoom(roomId);
      return r?.getMyMembership() === 'invite' ? r : undefined;
    }, 'the invite in bob\'s client');
    // The invite carries stripped state: bob sees the room's name before joining.
    expect(invited.name).toBe('Hearth and js-sdk');

    const joined = await bob.joinRoom(roomId);
    expect(joined.roomId).toBe(roomId);
    await waitFor(bob, [RoomEvent.MyMembership, RoomEvent.Timeline], () => bob.getRoom(roomId)?.getMyMembership() === 'join', 'bob joined in his client');
    await waitFor(alice, [RoomMemberEvent.Membership, RoomEvent.Timeline], () => membership(alice, roomId, bobAccount.userId) === 'join', 'bob\'s join in alice\'s client');
  });

  it('each sees the other\'s messages through sync', async () => {
    helloId = (await alice.sendTextMessage(roomId, 'hello bob')).event_id;
    const seen = await waitForTimelineEvent(bob, roomId, helloId);
    expect(seen.getSender()).toBe(aliceAccount.userId);
    expect(seen.getContent().body).toBe('hello bob');

    replyId = (await bob.sendTextMessage(roomId, 'hi alice')).event_id;
    const reply = await waitForTimelineEvent(alice, roomId, replyId);
    expect(reply.getSender()).toBe(bobAccount.userId);
    expect(reply.getContent().body).toBe('hi alice');
    history.push('hello bob', 'hi alice');
  });

  it('typing notifications reach the other member', async () => {
    const aliceTyping = (typing: boolean) =>
      waitFor(bob, [RoomMemberEvent.Typing], () => bob.getRoom(roomId)?.getMember(aliceAccount.userId)?.typing === typing, `alice typing=${typing} in bob's client`);
    await alice.sendTyping(roomId, true, 20_000);
    await aliceTyping(true);
    await alice.sendTyping(roomId, false, 0);
    await aliceTyping(false);
  });

  it('a read receipt reaches the other member', async () => {
    const hello = timelineEvent(bob, roomId, helloId)!;
    await bob.sendReadReceipt(hello);
    const receipt = await waitFor(alice, [RoomEvent.Receipt], () => {
      const r = alice.getRoom(roomId)?.getReadReceiptForUserId(bobAccount.userId, true);
      return r?.eventId === helloId ? r : undefined;
    }, 'bob\'s receipt in alice\'s client');
    expect(receipt.data.ts).toEqual(expect.any(Number));
  });

  it('unread notification counts follow messages, mentions, read receipts and a muted room', async () => {
    const room = alice.getRoom(roomId)!;
    const counts = () => [room.getUnreadNotificationCount(NotificationCountType.Total), room.getUnreadNotificationCount(NotificationCountType.Highlight)];
    const countsAre = (total: number, highlight: number, what: string) =>
      waitFor(alice, [ClientEvent.Sync, RoomEvent.Timeline, RoomEvent.Receipt], () => {
        const [t, h] = counts();
        return t === total && h === highlight;
      }, `alice's counts ${total}/${highlight} ${what}`);
    const bobSays = async (content: Record<string, unknown>) => {
      const id = (await bob.sendMessage(roomId, { msgtype: 'm.text', ...content } as never)).event_id;
      return waitForTimelineEvent(alice, roomId, id);
    };

    // Bob's "hi alice" is unread for alice and names her: one notification, highlighted.
    await countsAre(1, 1, 'for the unread reply');
    await alice.sendReadReceipt(timelineEvent(alice, roomId, replyId)!);
    await countsAre(0, 0, 'after reading');

    // A plain message notifies (a one-to-one room), an intentional mention (m.mentions) also highlights.
    await bobSays({ body: 'just chatting' });
    await countsAre(1, 0, 'after a plain message');
    const mention = await bobSays({ body: 'look at this', 'm.mentions': { user_ids: [aliceAccount.userId] } });
    await countsAre(2, 1, 'after a mention');
    await alice.sendReadReceipt(mention);
    await countsAre(0, 0, 'after reading the mention');

    // Muting the room (a room rule with dont_notify) reaches the client as m.push_rules and stops the counting.
    await alice.setRoomMutePushRule('global', roomId, true);
    await waitFor(alice, [ClientEvent.AccountData], () => alice.pushRules?.global.room?.some((r) => r.rule_id === roomId), 'the mute rule in alice\'s m.push_rules');
    expect(alice.getRoomPushRule('global', roomId)?.actions).toEqual(['dont_notify']);
    await bobSays({ body: 'while muted' });
    expect(counts()).toEqual([0, 0]);
    await alice.setRoomMutePushRule('global', roomId, false);
    expect(alice.getRoomPushRule('global', roomId)).toBeUndefined();
    await bobSays({ body: 'after unmuting' });
    await countsAre(1, 0, 'after unmuting');
    history.push('just chatting', 'look at this', 'while muted', 'after unmuting');
  });

  it('a display name change shows up as a member event', async () => {
    await bob.setDisplayName('Bobby');
    await waitFor(alice, [RoomMemberEvent.Name, RoomEvent.Timeline], () => alice.getRoom(roomId)?.getMember(bobAccount.userId)?.name === 'Bobby', 'bob\'s new name in alice\'s client');
    const memberEvents = alice
      .getRoom(roomId)!
      .getLiveTimeline()
      .getEvents()
      .filter((e) => e.getType() === EventType.RoomMember && e.getStateKey() === bobAccount.userId);
    expect(memberEvents.at(-1)!.getContent()).toMatchObject({ membership: 'join', displayname: 'Bobby' });
  });

  it('paginates back over more than 50 messages with scrollback', async () => {
    for (let i = 0; i < 60; i++) {
      const body = `history ${i}`;
      await alice.sendTextMessage(roomId, body);
      history.push(body);
    }
    // A fresh client with a short initial sync must page back to see them all.
    const bob2 = newClient(peer, bobAccount);
    await startAndSync(bob2, 5);
    const room = await waitFor(bob2, [ClientEvent.Room], () => bob2.getRoom(roomId), 'the room in a fresh client');
    const bodies = (r: Room) =>
      r.getLiveTimeline().getEvents().filter((e) => e.getType() === EventType.RoomMessage).map((e) => e.getContent().body as string);
    expect(bodies(room).length).toBeLessThanOrEqual(5);
    let pages = 0;
    while (!room.getLiveTimeline().getEvents().some((e) => e.getType() === EventType.RoomCreate)) {
      await bob2.scrollback(room, 20);
      if (++pages > 20) throw new Error(`no m.room.create after ${pages} pages; have ${bodies(room).length} messages`);
    }
    expect(pages).toBeGreaterThanOrEqual(3);
    expect(bodies(room)).toEqual(history);
    bob2.stopClient();
  });

  it('a redaction reaches the other member', async () => {
    const redacted = waitFor(bob, [RoomEvent.Redaction, RoomEvent.Timeline], () => timelineEvent(bob, roomId, replyId)?.isRedacted(), 'the redaction in bob\'s client');
    await alice.redactEvent(roomId, replyId, undefined, { reason: 'tidying up' });
    await redacted;
    expect(timelineEvent(bob, roomId, replyId)!.getContent()).toEqual({});
    history.splice(history.indexOf('hi alice'), 1);
  });

  it('bob leaves and alice sees it', async () => {
    await bob.leave(roomId);
    await waitFor(alice, [RoomMemberEvent.Membership, RoomEvent.Timeline], () => membership(alice, roomId, bobAccount.userId) === 'leave', 'bob\'s leave in alice\'s client');
    await waitFor(bob, [RoomEvent.MyMembership, ClientEvent.Room, ClientEvent.DeleteRoom], () => bob.getRoom(roomId)?.getMyMembership() !== 'join', 'the leave in bob\'s client');
  });

  it('after a restart of the peer, a fresh client finds everything still there', async () => {
    for (const c of clients) c.stopClient();
    await peer.restart();

    // The old token still works and a new login works too.
    const anon = createClient({ baseUrl: peer.url, logger: quietLogger });
    const login = await anon.loginRequest({
      type: 'm.login.password',
      identifier: { type: 'm.id.user', user: aliceAccount.userId },
      password: aliceAccount.password,
    });
    expect(login.user_id).toBe(aliceAccount.userId);
    const whoami = await http(peer, 'GET', '/_matrix/client/v3/account/whoami', undefined, bobAccount.accessToken);
    expect(whoami.body.user_id).toBe(bobAccount.userId);

    const fresh = newClient(peer, { ...aliceAccount, accessToken: login.access_token, deviceId: login.device_id });
    await startAndSync(fresh, 10);
    const room = await waitFor(fresh, [ClientEvent.Room], () => fresh.getRoom(roomId), 'the room after the restart');
    expect(room.name).toBe('Hearth and js-sdk');
    expect(room.getMyMembership()).toBe('join');
    expect(room.getMember(bobAccount.userId)?.membership).toBe('leave');

    while (!room.getLiveTimeline().getEvents().some((e) => e.getType() === EventType.RoomCreate)) {
      await fresh.scrollback(room, 50);
    }
    const events = room.getLiveTimeline().getEvents();
    const messages = events.filter((e) => e.getType() === EventType.RoomMessage && !e.isRedacted());
    expect(messages.map((e) => e.getContent().body)).toEqual(history);
    const reply = events.find((e) => e.getId() === replyId)!;
    expect(reply.isRedacted()).toBe(true);
    const bobMember = events.filter((e) => e.getType() === EventType.RoomMember && e.getStateKey() === bobAccount.userId);
    expect(bobMember.map((e) => e.getContent().membership)).toEqual(['invite', 'join', 'join', 'leave']);
    expect(bobMember[2].getContent().displayname).toBe('Bobby');

    // And it still works: a message sent now arrives in the fresh client.
    const after = await fresh.sendTextMessage(roomId, 'after the restart');
    await waitForTimelineEvent(fresh, roomId, after.event_id);
    fresh.stopClient();
  });
});
