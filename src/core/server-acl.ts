/**
 * Server ACLs: whether a server may take part in a room, from the content of its m.room.server_acl event.
 * Spec: shared/matrix-spec/data/event-schemas/schema/m.room.server_acl.yaml (the five steps),
 * content/client-server-api/modules/server_acls.md, content/appendices.md §"Glob-style matching".
 */
import type { JsonObject } from './json.js';

/** The host part of a server name: the port is never considered (`evil.com:8448` is `evil.com`). */
function hostOf(serverName: string): string {
  if (serverName.startsWith('[')) {
    const end = serverName.indexOf(']');
    return end < 0 ? serverName : serverName.slice(0, end + 1);
  }
  const colon = serverName.lastIndexOf(':');
  return colon < 0 ? serverName : serverName.slice(0, colon);
}

function isIpLiteral(host: string): boolean {
  if (host.startsWith('[') && host.endsWith(']')) return true;
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host);
}

const globCache = new Map<string, RegExp>();

/** A glob (`*` any run, `?` one character), matched case-insensitively against the whole name. */
function globRegExp(glob: string): RegExp {
  let re = globCache.get(glob);
  if (!re) {
    const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
    re = new RegExp(`^${body}$`, 'is');
    if (globCache.size > 1000) globCache.clear();
    globCache.set(glob, re);
  }
  return re;
}

function matchesAny(list: unknown, host: string): boolean {
  if (!Array.isArray(list)) return false;
  return list.some((g) => typeof g === 'string' && globRegExp(g).test(host));
}

/**
 * Whether `serverName` is allowed by an ACL event's content; `undefined` content means the room has no ACL.
 * Steps: 1. no ACL → allow; 2. IP literal with allow_ip_literals false → deny; 3. in `deny` → deny;
 * 4. in `allow` → allow; 5. otherwise deny.
 */
export function serverAclAllows(content: JsonObject | undefined, serverName: string): boolean {
  if (content === undefined) return true;
  const host = hostOf(serverName);
  // allow_ip_literals defaults to true when missing or not a boolean.
  if (content.allow_ip_literals === false && isIpLiteral(host)) return false;
  if (matchesAny(content.deny, host)) return false;
  return matchesAny(content.allow, host);
}
