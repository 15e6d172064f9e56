/**
 * Store and forward and catching up: events for an offline server survive a restart of the sender and are
 * delivered when the server is back; a server without get_missing_events is caught up with backfill; rooms of
 * every version federate; createRoom invites users of other servers.
 * Spec: server-server-api.md §Transactions, §"Backfilling and retrieving missing events", rooms/v1.md … v12.md.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { call } from '../helpers/homeserver.js';
import { enc, newPublicRoom, newRoom, sendText } from '../helpers/rooms.js';
import { newUser } from '../helpers/users.js';
import type { Federation } from '../helpers/federation.js';
import { newFederation, SyncView } from '../helpers/federation.js';

const C = '/_matrix/client/v3';
let fed: Federation | undefined;

afterEach(async () => {
  await fed?.stop();
  fed = undefined;
});

describe('catching up', () => {
  test('events queued for an offline server survive a restart of the sending server', async () => {
    fed = await newFederation(2);
    const [a, b] = fed.servers;
    const alice = await newUser(a, 'alice');
    const bob = await newUser(b, 'bob');
    const room = await newPublicRoom(a, alice);
    expect((await call(b, 'POST', `${C}/join/${enc(room)}?via=${enc(a.serverName)}`, {}, bob.accessToken)).status).toBe(200);
    await fed.settle();
    const vb = new SyncView(b, bob);
    await vb.poll();

    fed.offline(b);
    for (let i = 0; i < 3; i++) await sendText(a, alice, room, `queued ${i}`);
    await fed.settle();
    const queued = await a.services.ctx.kv.read((tx) => tx.count('federation_outbox', { prefix: [b.serverName] }));
    expect(queued).toBe(3);

    // A restarts on the same storage.
    await a.stop();
    fed.servers.splice(fed.servers.indexOf(a), 1);
    const a2 = await fed.add(a.services.ctx.kv);
    expect(a2.serverName).toBe(a.serverName);

    fed.online(b);
    for (let i = 0; i < 3; i++) await vb.waitForMessage(room, `queued ${i}`);
    await fed.settle();
    expect(await a2.services.ctx.kv.read((tx) => tx.count('federation_outbox', { prefix: [b.serverName] }))).toBe(0);
    // And the restarted server still federates both ways.
    await sendText(b, bob, room, 'welcome back');
    const va = new SyncView(a2, alice);
    await va.waitForMessage(room, 'welcome back');
  });

  test('a gap is filled with backfill when the sender has no get_missing_events', async () => {
    fed = await newFederation(3);
    const [a, b, c] = fed.servers;
    const alice = await newUser(a, 'alice');
    const bob = await newUser(b, 'bob');
    const carol = await newUser(c, 'carol');
    const room = await newPublicRoom(a, alice);
    for (const [hs, u] of [[b, bob], [c, carol]] as const) {
      expect((await call(hs, 'POST', `${C}/join/${enc(room)}?via=${enc(a.serverName)}`, {}, u.accessToken)).status).toBe(200);
    }
    await fed.settle();
    const vc = new SyncView(c, carol);
    await vc.poll();
    fed.offline(c);
    await sendText(a, alice, room, 'gap 1');
    await sendText(a, alice, room, 'gap 2');
    await fed.settle();
    await a.federation.sender.forget(c.serverName);
    fed.online(c);
    const asked: string[] = [];
    fed.net.intercept = (from, _to, req) => {
      if (from !== c.serverName) return undefined;
      asked.push(req.path.split('?')[0].split('/')[4]);
      // B answers get_missing_events with 404 M_UNRECOGNIZED, as a server without it would.
      return req.path.includes('get_missing_events') ? { ...req, path: '/_matrix/federation/v1/unsupported' } : undefined;
    };
    await sendText(b, bob, room, 'after the gap');
    await vc.waitForMessage(room, 'after the gap');
    fed.net.intercept = undefined;
    expect(vc.messages(room)).toEqual(expect.arrayContaining(['gap 1', 'gap 2', 'after the gap']));
    expect(asked).toContain('backfill');
  });
});

describe('membership changes made elsewhere', () => {
  test('a user on B kicked by A: the room moves to leave in their /sync, with what they were', async () => {
    fed = await newFederation(2);
    const [a, b] = fed.servers;
    const alice = await newUser(a, 'alice');
    const bob = await newUser(b, 'bob');
    const room = await newPublicRoom(a, alice);
    expect((await call(b, 'POST', `${C}/join/${enc(room)}?via=${enc(a.serverName)}`, {}, bob.accessToken)).status).toBe(200);
    await fed.settle();
    const vb = new SyncView(b, bob);
    await vb.poll();
    expect((await call(a, 'POST', `${C}/rooms/${enc(room)}/kick`, { user_id: bob.userId, reason: 'bye' }, alice.accessToken)).status).toBe(200);
    await vb.until(() => vb.left.has(room), 5000, 'the room in leave');
    const joined = await call(b, 'GET', `${C}/joined_rooms`, undefined, bob.accessToken);
    expect(joined.body.joined_rooms).not.toContain(room);
    const leave = await call(b, 'GET', `${C}/rooms/${enc(room)}/state/m.room.member/${enc(bob.userId)}`, undefined, bob.accessToken);
    expect(leave.body).toMatchObject({ membership: 'leave', reason: 'bye' });
  });
});

describe('room versions', () => {
  test('rooms of every version federate: remote join, messages both ways', async () => {
    fed = await newFederation(2);
    const [a, b] = fed.servers;
    const alice = await newUser(a, 'alice');
    const bob = await newUser(b, 'bob');
    const va = new SyncView(a, alice);
    const vb = new SyncView(b, bob);
    await Promise.all([va.poll(), vb.poll()]);
    for (const version of ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12']) {
      const room = await newPublicRoom(a, alice, { room_version: version });
      const res = await call(b, 'POST', `${C}/join/${enc(room)}?via=${enc(a.serverName)}`, {}, bob.accessToken);
      expect(res.status, `v${version}: ${JSON.stringify(res.body)}`).toBe(200);
      await sendText(a, alice, room, `v${version} from A`);
      await sendText(b, bob, room, `v${version} from B`);
      await vb.waitForMessage(room, `v${version} from A`);
      await va.waitForMessage(room, `v${version} from B`);
    }
  });

  test('createRoom invites users of other servers (is_direct kept)', async () => {
    fed = await newFederation(2);
    const [a, b] = fed.servers;
    const alice = await newUser(a, 'alice');
    const bob = await newUser(b, 'bob');
    const vb = new SyncView(b, bob);
    await vb.poll();
    const room = await newRoom(a, alice, { invite: [bob.userId], is_direct: true, preset: 'trusted_private_chat' });
    const inv = await vb.until(() => vb.invites.get(room), 5000, 'invite');
    const own = inv.invite_state.events.find((e: any) => e.type === 'm.room.member' && e.state_key === bob.userId);
    expect(own.content.is_direct).toBe(true);
    expect((await call(b, 'POST', `${C}/rooms/${enc(room)}/join`, {}, bob.accessToken)).status).toBe(200);
    await sendText(b, bob, room, 'thanks for the invite');
    const va = new SyncView(a, alice);
    await va.waitForMessage(room, 'thanks for the invite');
  });
});
