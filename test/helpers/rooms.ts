/**
 * Room builders: `const room = await newRoom(hs, alice)`, `await joinRoom(hs, bob, room)`,
 * `const id = await sendText(hs, alice, room, 'hi')`. Each goes through the real API and fails the test with the
 * response body when the server refuses.
 */
import { expect } from 'vitest';
import type { Homeserver } from '../../src/homeserver.js';
import type { EventRecord } from '../../src/storage/records.js';
import { STORES } from '../../src/storage/schema.js';
import type { CallResult } from './homeserver.js';
import { call } from './homeserver.js';
import type { TestUser } from './users.js';

const C = '/_matrix/client/v3';
let txnCounter = 0;

export const enc = encodeURIComponent;

function ok<T>(res: CallResult<T>): T {
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

/** POST /createRoom; returns the room ID. */
export async function newRoom(hs: Homeserver, user: TestUser, body: Record<string, unknown> = {}): Promise<string> {
  return ok(await call(hs, 'POST', `${C}/createRoom`, body, user.accessToken)).room_id;
}

/** A public room (preset public_chat) that anyone may join. */
export function newPublicRoom(hs: Homeserver, user: TestUser, body: Record<string, unknown> = {}): Promise<string> {
  return newRoom(hs, user, { preset: 'public_chat', ...body });
}

export function nextTxnId(): string {
  return `txn${++txnCounter}`;
}

/** PUT /send; returns the raw result (for error cases). */
export function trySend(
  hs: Homeserver,
  user: TestUser,
  roomId: string,
  content: unknown,
  type = 'm.room.message',
  txnId = nextTxnId(),
): Promise<CallResult> {
  return call(hs, 'PUT', `${C}/rooms/${enc(roomId)}/send/${enc(type)}/${enc(txnId)}`, content, user.accessToken);
}

/** Sends an event and returns its ID. */
export async function send(
  hs: Homeserver,
  user: TestUser,
  roomId: string,
  content: Record<string, unknown>,
  type = 'm.room.message',
): Promise<string> {
  return ok(await trySend(hs, user, roomId, content, type)).event_id;
}

export function sendText(hs: Homeserver, user: TestUser, roomId: string, body: string): Promise<string> {
  return send(hs, user, roomId, { msgtype: 'm.text', body });
}

/** PUT /state; returns the raw result. */
export function trySetState(
  hs: Homeserver,
  user: TestUser,
  roomId: string,
  type: string,
  stateKey: string,
  content: unknown,
): Promise<CallResult> {
  return call(hs, 'PUT', `${C}/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`, content, user.accessToken);
}

export async function setState(
  hs: Homeserver,
  user: TestUser,
  roomId: string,
  type: string,
  stateKey: string,
  content: Record<string, unknown>,
): Promise<string> {
  return ok(await trySetState(hs, user, roomId, type, stateKey, content)).event_id;
}

/** POST /rooms/{roomId}/{action} for join, leave, forget, invite, kick, ban, unban. */
export function membership(
  hs: Homeserver,
  user: TestUser,
  roomId: string,
  action: 'join' | 'leave' | 'forget' | 'invite' | 'kick' | 'ban' | 'unban',
  body: Record<string, unknown> = {},
): Promise<CallResult> {
  return call(hs, 'POST', `${C}/rooms/${enc(roomId)}/${action}`, body, user.accessToken);
}

export async function joinRoom(hs: Homeserver, user: TestUser, roomId: string): Promise<void> {
  ok(await membership(hs, user, roomId, 'join'));
}

export async function invite(hs: Homeserver, inviter: TestUser, roomId: string, invitee: TestUser | string): Promise<void> {
  const userId = typeof invitee === 'string' ? invitee : invitee.userId;
  ok(await membership(hs, inviter, roomId, 'invite', { user_id: userId }));
}

/** GET /rooms/{roomId}/state/{type}/{stateKey} (content), raw. */
export function getState(hs: Homeserver, user: TestUser, roomId: string, type: string, stateKey = ''): Promise<CallResult> {
  return call(hs, 'GET', `${C}/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`, undefined, user.accessToken);
}

/** The stored record of an event (what the pipeline wrote), read straight from storage. */
export function storedEvent(hs: Homeserver, eventId: string): Promise<EventRecord | undefined> {
  return hs.services.ctx.kv.read((tx) => tx.get<EventRecord>(STORES.events, [eventId]));
}

/** Every event of a room's timeline, in order, from storage. */
export async function timelineRecords(hs: Homeserver, roomId: string): Promise<EventRecord[]> {
  return hs.services.ctx.kv.read(async (tx) => {
    const rows = await tx.range<string>(STORES.roomTimeline, { prefix: [roomId] });
    const recs = await tx.getMany<EventRecord>(
      STORES.events,
      rows.map(([, id]) => [id]),
    );
    return recs.filter((r): r is EventRecord => r !== undefined);
  });
}
