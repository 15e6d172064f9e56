/**
 * Which servers we share rooms with, read from the homeserver's storage: the servers of the joined members of every
 * room a local user has joined. These are the peers the network keeps connected (and redials after a restart or a
 * dropped connection), so room traffic does not wait for a dial.
 */
import { isHearthServerName } from '../core/server-key.js';
import type { Kv, Key } from '../storage/kv.js';
import type { MemberRecord, UserRoomRecord } from '../storage/records.js';
import { STORES } from '../storage/schema.js';

/** The server part of a user ID (`@alice:server` → `server`), or undefined. */
function serverOf(userId: string): string | undefined {
  const i = userId.indexOf(':');
  return i < 0 ? undefined : userId.slice(i + 1);
}

/** Hearth servers other than `self` with a joined member in a room a local user has joined. One read transaction. */
export async function sharedRoomServers(kv: Kv, self: string): Promise<string[]> {
  return kv.read(async (tx) => {
    const memberships = await tx.range<UserRoomRecord>(STORES.userRooms);
    const rooms = new Set<string>();
    for (const [key, rec] of memberships) if (rec.membership === 'join' && typeof key[1] === 'string') rooms.add(key[1]);
    const servers = new Set<string>();
    const lists = await Promise.all([...rooms].map((roomId) => tx.range<MemberRecord>(STORES.roomMembers, { prefix: [roomId] as Key })));
    for (const rows of lists) {
      for (const [key, rec] of rows) {
        if (rec.membership !== 'join' || typeof key[1] !== 'string') continue;
        const server = serverOf(key[1]);
        if (server !== undefined && server !== self && isHearthServerName(server)) servers.add(server);
      }
    }
    return [...servers];
  });
}
