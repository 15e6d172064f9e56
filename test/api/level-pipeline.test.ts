/**
 * The event pipeline on LevelDB (the Node peer's storage), where a room's next event is built while the disk syncs
 * the previous one (kv.writeOrdered, rooms.ts submit): concurrent senders in one room share sync batches and still
 * make one linear, complete DAG; a batch that fails takes down the events built on it and nothing else, and the room
 * goes on from what is on disk.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { createHomeserver } from '../../src/homeserver.js';
import type { Homeserver } from '../../src/homeserver.js';
import { openLevelKv } from '../../src/storage/level-kv.js';
import type { LevelKv } from '../../src/storage/level-kv.js';
import { HOMESERVER_STORES } from '../../src/storage/schema.js';
import { call } from '../helpers/homeserver.js';
import { enc, joinRoom, newPublicRoom, trySend } from '../helpers/rooms.js';
import type { TestUser } from '../helpers/users.js';
import { newUser } from '../helpers/users.js';

const C = '/_matrix/client/v3';
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function levelHomeserver(): Promise<{ hs: Homeserver; kv: LevelKv }> {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-pipeline-'));
  const kv = await openLevelKv({ name: join(dir, 'db'), stores: HOMESERVER_STORES });
  const hs = await createHomeserver({ kv });
  cleanups.push(async () => {
    await hs.stop();
    await kv.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { hs, kv };
}

interface Ev {
  event_id: string;
  type: string;
  content: { body?: string };
}

/** Every event of the room, oldest first, through /messages. */
async function history(hs: Homeserver, user: TestUser, roomId: string): Promise<Ev[]> {
  const out: Ev[] = [];
  let from: string | undefined;
  for (;;) {
    const q = new URLSearchParams({ dir: 'b', limit: '100', ...(from ? { from } : {}) });
    const r = await call(hs, 'GET', `${C}/rooms/${enc(roomId)}/messages?${q}`, undefined, user.accessToken);
    expect(r.status).toBe(200);
    out.push(...r.body.chunk);
    if (!r.body.end || r.body.chunk.length === 0) break;
    from = r.body.end;
  }
  return out.reverse();
}

/** The federation form of an event (prev_events, depth): GET /event with the stored PDU is not exposed, so read it. */
async function pdus(kv: LevelKv, ids: readonly string[]): Promise<Array<{ prev_events: string[]; depth: number }>> {
  const recs = await kv.read((tx) => tx.getMany<{ json: { prev_events: string[]; depth: number } }>('events', ids.map((id) => [id])));
  return recs.map((r) => r!.json);
}

function countBatches(kv: LevelKv): () => number {
  const db = kv as unknown as { writeBatch: (...args: unknown[]) => Promise<void> };
  const original = db.writeBatch.bind(db);
  let n = 0;
  db.writeBatch = (...args: unknown[]) => {
    n++;
    return original(...args);
  };
  return () => n;
}

describe('the event pipeline on LevelDB', () => {
  test('8 concurrent senders in one room: every message lands once, in one linear chain, sharing sync batches', async () => {
    const { hs, kv } = await levelHomeserver();
    const owner = await newUser(hs);
    const roomId = await newPublicRoom(hs, owner);
    const senders: TestUser[] = [];
    for (let i = 0; i < 8; i++) {
      const u = await newUser(hs);
      await joinRoom(hs, u, roomId);
      senders.push(u);
    }
    const batches = countBatches(kv);
    const ids = await Promise.all(
      senders.map(async (u, w) => {
        const mine: string[] = [];
        for (let i = 0; i < 15; i++) {
          const r = await trySend(hs, u, roomId, { msgtype: 'm.text', body: `${w}/${i}` });
          expect(r.status, JSON.stringify(r.body)).toBe(200);
          mine.push(r.body.event_id);
        }
        return mine;
      }),
    );
    expect(batches()).toBeLessThan(120);
    const events = await history(hs, owner, roomId);
    const messages = events.filter((e) => e.type === 'm.room.message');
    expect(messages.map((e) => e.event_id).sort()).toEqual(ids.flat().sort());
    // Linear: each event's only prev event is the one before it, one deeper.
    const json = await pdus(kv, events.map((e) => e.event_id));
    for (let i = 1; i < events.length; i++) {
      expect(json[i].prev_events).toEqual([events[i - 1].event_id]);
      expect(json[i].depth).toBe(json[i - 1].depth + 1);
    }
  }, 60_000);

  test('a failed batch fails the sends built on it; the room continues from what is on disk', async () => {
    const { hs, kv } = await levelHomeserver();
    const alice = await newUser(hs);
    const roomId = await newPublicRoom(hs, alice);
    const before = await trySend(hs, alice, roomId, { msgtype: 'm.text', body: 'before' });
    expect(before.status).toBe(200);

    const db = kv as unknown as { writeBatch: (...args: unknown[]) => Promise<void> };
    const original = db.writeBatch.bind(db);
    let failNext = true;
    let failed!: () => void;
    const afterFailure = new Promise<void>((r) => (failed = r));
    db.writeBatch = async (...args: unknown[]) => {
      if (failNext) {
        failNext = false;
        // Slow enough for the next sends to be built on top of this batch's event.
        await new Promise((r) => setTimeout(r, 30));
        setTimeout(failed, 5);
        throw new Error('disk on fire');
      }
      return original(...args);
    };
    // 'during 2' is built on the head holding 'during 1' but reaches its write only after that batch failed.
    const rooms = hs.services.rooms;
    const sign = rooms.sign.bind(rooms);
    rooms.sign = async (proto, version, resolve) => {
      if ((proto.content as { body?: string }).body === 'during 2') await afterFailure;
      return sign(proto, version, resolve);
    };
    const results = await Promise.all(
      [1, 2, 3].map((i) => trySend(hs, alice, roomId, { msgtype: 'm.text', body: `during ${i}` })),
    );
    expect(results[0].status).toBe(500);
    expect(results[1].status).toBe(500);
    const after = await trySend(hs, alice, roomId, { msgtype: 'm.text', body: 'after' });
    expect(after.status, JSON.stringify(after.body)).toBe(200);

    const events = await history(hs, alice, roomId);
    const ids = new Set(events.map((e) => e.event_id));
    for (const r of results) {
      if (r.status === 200) expect(ids.has(r.body.event_id)).toBe(true);
      else expect(r.status).toBe(500);
    }
    // Nothing on disk refers to an event that is not there.
    const json = await pdus(kv, events.map((e) => e.event_id));
    for (const j of json.slice(1)) for (const prev of j.prev_events) expect(ids.has(prev)).toBe(true);
    expect(events[events.length - 1].event_id).toBe(after.body.event_id);
  }, 60_000);
});
