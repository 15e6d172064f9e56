/**
 * `hearth serve` as a real process over real HTTP and LevelDB: the command line, registration modes, clean stop,
 * durability across restarts and crashes, CORS.
 * Spec: shared/matrix-spec/content/client-server-api/_index.md (#web-browser-clients, #account-registration,
 * #token-authenticated-registration).
 */
import { describe, expect, it } from 'vitest';
import { expectStatus, http, loginUser, registerUser, runCli, startServe } from '../helpers/serve.js';
import type { Account, ServedPeer } from '../helpers/serve.js';

const enc = encodeURIComponent;
let txn = 0;

async function createRoom(peer: ServedPeer, who: Account, body: Record<string, unknown> = {}): Promise<string> {
  const res = await http(peer, 'POST', '/_matrix/client/v3/createRoom', body, who.accessToken);
  return expectStatus(res, 200, 'createRoom').room_id as string;
}

async function send(peer: ServedPeer, who: Account, roomId: string, body: string): Promise<string> {
  const res = await http(
    peer,
    'PUT',
    `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/t${++txn}`,
    { msgtype: 'm.text', body },
    who.accessToken,
  );
  return expectStatus(res, 200, 'send').event_id as string;
}

describe('hearth serve: command line', () => {
  it('prints one ready line with the URL it listens on and its server name', async () => {
    const peer = await startServe();
    expect(peer.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(Number(new URL(peer.url).port)).toBeGreaterThan(0);
    expect(typeof peer.serverName).toBe('string');
    expect(peer.serverName.length).toBeGreaterThan(0);
    const versions = await http(peer, 'GET', '/_matrix/client/versions');
    expect(versions.status).toBe(200);
    expect(versions.body.versions).toContain('v1.19');
    await peer.dispose();
  });

  it('--help prints the usage and exits 0', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: hearth <serve\|start>/);
    for (const opt of ['--host', '--port', '--data', '--registration', '--registration-token', '--no-guests', '--public-url']) {
      expect(r.stdout).toContain(opt);
    }
  });

  it.each([
    ['an unknown option', ['serve', '--bogus'], /bogus/],
    ['a port that is not a number', ['serve', '--port', 'eighty'], /--port.*eighty/],
    ['a port out of range', ['serve', '--port', '70000'], /--port.*70000/],
    ['an unknown registration mode', ['serve', '--registration', 'maybe'], /--registration must be open, token or closed/],
    ['token mode without a token', ['serve', '--registration', 'token'], /--registration-token/],
    ['an unknown command', ['launch'], /unknown command 'launch'/],
    ['no command', [], /Usage: hearth/],
  ])('exits 2 on %s, saying why', async (_what, argv, why) => {
    const r = await runCli(argv);
    expect(r.code).toBe(2);
    expect(r.stdout + r.stderr).toMatch(why);
    expect(r.stdout).not.toMatch(/^ready /m);
  });
});

describe('hearth serve: registration modes', () => {
  it('is open on loopback by default', async () => {
    const peer = await startServe();
    const alice = await registerUser(peer, 'alice');
    expect(alice.userId).toBe(`@alice:${peer.serverName}`);
    const whoami = await http(peer, 'GET', '/_matrix/client/v3/account/whoami', undefined, alice.accessToken);
    expect(whoami.status).toBe(200);
    expect(whoami.body.user_id).toBe(alice.userId);
  });

  it('--registration closed refuses registration with 403 M_FORBIDDEN', async () => {
    const peer = await startServe({ args: ['--registration', 'closed'] });
    const res = await http(peer, 'POST', '/_matrix/client/v3/register', {
      username: 'mallory',
      password: 'a password',
      auth: { type: 'm.login.dummy' },
    });
    expect(res.status).toBe(403);
    expect(res.body.errcode).toBe('M_FORBIDDEN');
    const login = await http(peer, 'POST', '/_matrix/client/v3/login', {
      type: 'm.login.password',
      identifier: { type: 'm.id.user', user: 'mallory' },
      password: 'a password',
    });
    expect(login.status).toBe(403);
  });

  it('--registration token asks for a registration token and accepts a valid one', async () => {
    const peer = await startServe({ args: ['--registration', 'token', '--registration-token', 'let-me-in'] });
    const probe = await http(peer, 'POST', '/_matrix/client/v3/register', { username: 'carol', password: 'a password' });
    expect(probe.status).toBe(401);
    const flows = probe.body.flows as { stages: string[] }[];
    expect(flows.length).toBeGreaterThan(0);
    for (const f of flows) expect(f.stages).toContain('m.login.registration_token');

    // A wrong token fails the stage (the spec's 401 with an errcode) and registers nobody.
    const wrong = await http(peer, 'POST', '/_matrix/client/v3/register', {
      username: 'carol',
      password: 'a password',
      auth: { type: 'm.login.registration_token', token: 'guess', session: probe.body.session },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.body.errcode).toBeDefined();
    expect(wrong.body.user_id).toBeUndefined();
    // A dummy stage alone is not enough.
    const dummy = await http(peer, 'POST', '/_matrix/client/v3/register', {
      username: 'carol',
      password: 'a password',
      auth: { type: 'm.login.dummy' },
    });
    expect(dummy.body.access_token).toBeUndefined();

    const carol = await registerUser(peer, 'carol', { password: 'a password', registrationToken: 'let-me-in' });
    expect(carol.userId).toBe(`@carol:${peer.serverName}`);
    expect(carol.accessToken).toEqual(expect.any(String));
  });
});

describe('hearth serve: lifecycle and durability', () => {
  it('exits 0 promptly on SIGTERM, even with a /sync long poll in flight', async () => {
    const peer = await startServe();
    const alice = await registerUser(peer, 'alice');
    const first = await http(peer, 'GET', '/_matrix/client/v3/sync?timeout=0', undefined, alice.accessToken);
    expect(first.status).toBe(200);
    const poll = http(peer, 'GET', `/_matrix/client/v3/sync?timeout=30000&since=${enc(first.body.next_batch)}`, undefined, alice.accessToken)
      .catch((e: unknown) => e);
    // Give the long poll time to reach the server; the assertion is on the exit, not on this delay.
    await new Promise((r) => setTimeout(r, 200));
    const started = performance.now();
    const exit = await peer.stop('SIGTERM');
    const ms = performance.now() - started;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(ms).toBeLessThan(5000);
    await poll;
  });

  it('keeps its name, accounts, rooms and events across a restart', async () => {
    const peer = await startServe();
    const name = peer.serverName;
    const alice = await registerUser(peer, 'alice');
    const bob = await registerUser(peer, 'bob');
    const roomId = await createRoom(peer, alice, { name: 'Durable', preset: 'public_chat' });
    expectStatus(await http(peer, 'POST', `/_matrix/client/v3/join/${enc(roomId)}`, {}, bob.accessToken), 200, 'join');
    const sent: string[] = [];
    for (let i = 0; i < 5; i++) sent.push(await send(peer, i % 2 ? bob : alice, roomId, `message ${i}`));
    const topic = await http(
      peer,
      'PUT',
      `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.topic/`,
      { topic: 'kept on disk' },
      alice.accessToken,
    );
    expectStatus(topic, 200, 'set topic');

    await peer.restart();
    expect(peer.serverName).toBe(name);

    // Old tokens still work and a password login works.
    const whoami = await http(peer, 'GET', '/_matrix/client/v3/account/whoami', undefined, alice.accessToken);
    expect(whoami.body.user_id).toBe(alice.userId);
    const bob2 = await loginUser(peer, bob.userId, bob.password);
    const joined = await http(peer, 'GET', '/_matrix/client/v3/joined_rooms', undefined, bob2.accessToken);
    expect(joined.body.joined_rooms).toEqual([roomId]);

    const roomName = await http(peer, 'GET', `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.name/`, undefined, bob2.accessToken);
    expect(roomName.status).toBe(200);
    expect(roomName.body).toEqual({ name: 'Durable' });
    const topicNow = await http(peer, 'GET', `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.topic/`, undefined, bob2.accessToken);
    expect(topicNow.body).toEqual({ topic: 'kept on disk' });
    const members = await http(peer, 'GET', `/_matrix/client/v3/rooms/${enc(roomId)}/joined_members`, undefined, bob2.accessToken);
    expect(Object.keys(members.body.joined).sort()).toEqual([alice.userId, bob.userId].sort());

    const messages = await http(
      peer,
      'GET',
      `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=50`,
      undefined,
      bob2.accessToken,
    );
    expect(messages.status).toBe(200);
    const bodies = (messages.body.chunk as any[]).filter((e) => e.type === 'm.room.message').map((e) => e.content.body);
    expect(bodies).toEqual(['message 4', 'message 3', 'message 2', 'message 1', 'message 0']);
    const ids = (messages.body.chunk as any[]).map((e) => e.event_id);
    for (const id of sent) expect(ids).toContain(id);

    // The server keeps working after the restart: new events continue the same room.
    const after = await send(peer, bob2, roomId, 'after restart');
    const sync = await http(peer, 'GET', '/_matrix/client/v3/sync?timeout=0', undefined, alice.accessToken);
    const timeline = sync.body.rooms.join[roomId].timeline.events as any[];
    expect(timeline.map((e) => e.event_id)).toContain(after);
  });

  it('loses no acknowledged event when killed with SIGKILL during a write load', async () => {
    const peer = await startServe();
    const alice = await registerUser(peer, 'alice');
    const roomId = await createRoom(peer, alice, { preset: 'private_chat' });

    const acked: string[] = [];
    let stopped = false;
    let failures = 0;
    // Four concurrent senders (so several transactions share LevelDB group commits), each recording what the
    // server acknowledged with a 200.
    const sender = async (w: number) => {
      for (let i = 0; !stopped; i++) {
        try {
          const res = await fetch(`${peer.url}/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/w${w}-${i}`, {
            method: 'PUT',
            headers: { authorization: `Bearer ${alice.accessToken}`, 'content-type': 'application/json' },
            body: JSON.stringify({ msgtype: 'm.text', body: `load ${w}/${i}` }),
          });
          const body = (await res.json()) as { event_id?: string };
          if (res.status === 200 && body.event_id) acked.push(body.event_id);
        } catch {
          // The connection died with the server: this send was never acknowledged.
          failures++;
          return;
        }
      }
    };
    const senders = [0, 1, 2, 3].map(sender);
    // Kill mid-load, once a good number of sends have been acknowledged.
    const deadline = Date.now() + 20_000;
    while (acked.length < 150 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(acked.length).toBeGreaterThanOrEqual(150);
    const exit = await peer.kill9();
    expect(exit.signal).toBe('SIGKILL');
    stopped = true;
    await Promise.all(senders);
    expect(failures).toBeGreaterThan(0); // the kill really happened with requests in flight

    await peer.restart();
    const ackedNow = [...acked];
    const missing: string[] = [];
    for (const id of ackedNow) {
      const res = await http(peer, 'GET', `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(id)}`, undefined, alice.accessToken);
      if (res.status !== 200 || res.body.event_id !== id) missing.push(`${id}: ${res.status}`);
    }
    expect(missing).toEqual([]);
    // And the room still accepts sends afterwards (the crash left consistent state).
    await send(peer, alice, roomId, 'after the crash');
  });
});

describe('hearth serve: CORS', () => {
  it('sends CORS headers on responses, errors included, and answers a preflight from another origin', async () => {
    const peer = await startServe();
    const origin = { origin: 'https://app.example.org' };
    const ok = await http(peer, 'GET', '/_matrix/client/versions', undefined, undefined, origin);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe('*');

    const err = await http(peer, 'GET', '/_matrix/client/v3/account/whoami', undefined, undefined, origin);
    expect(err.status).toBe(401);
    expect(err.body.errcode).toBe('M_MISSING_TOKEN');
    expect(err.headers.get('access-control-allow-origin')).toBe('*');

    const unknownPath = await http(peer, 'GET', '/_matrix/client/v3/no/such/thing', undefined, undefined, origin);
    expect(unknownPath.status).toBe(404);
    expect(unknownPath.body.errcode).toBe('M_UNRECOGNIZED');
    expect(unknownPath.headers.get('access-control-allow-origin')).toBe('*');

    const pre = await fetch(`${peer.url}/_matrix/client/v3/rooms/!x:y/send/m.room.message/1`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example.org',
        'access-control-request-method': 'PUT',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    expect(pre.status).toBeLessThan(300);
    expect(pre.headers.get('access-control-allow-origin')).toBe('*');
    expect(pre.headers.get('access-control-allow-methods')).toContain('PUT');
    const allowed = (pre.headers.get('access-control-allow-headers') ?? '').toLowerCase();
    expect(allowed).toContain('authorization');
    expect(allowed).toContain('content-type');
  });
});
