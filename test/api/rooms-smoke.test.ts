import { it, expect } from 'vitest';
import { newHomeserver, call } from '../helpers/homeserver.js';
import { newUser } from '../helpers/users.js';
import { newRoom, sendText, timelineRecords } from '../helpers/rooms.js';

it('smoke', async () => {
  const hs = await newHomeserver();
  const alice = await newUser(hs);
  for (const v of ['1', '6', '11', '12']) {
    const room = await newRoom(hs, alice, { room_version: v, name: 'x', topic: 't', room_alias_name: 'a' + v });
    const id = await sendText(hs, alice, room, 'hi');
    const recs = await timelineRecords(hs, room);
    console.log(v, room, id, recs.map((r) => r.json.type));
    const st = await call(hs, 'GET', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/state`, undefined, alice.accessToken);
    console.log(st.status, st.body.length);
  }
});
