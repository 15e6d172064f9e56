/**
 * The published room directory over federation: we serve ours (GET/POST /_matrix/federation/v1/publicRooms) and
 * fetch another server's for our clients' `/publicRooms?server=<remote>` (DirectoryService.remoteDirectory).
 * Spec: shared/matrix-spec/data/api/server-server/public_rooms.yaml.
 */
import { badJson, invalidParam, unknown } from '../api/errors.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isJsonObject } from '../core/json.js';
import type { DirectoryService, PublicRoomsChunk, PublicRoomsQuery, PublicRoomsResponse } from '../services/directory.js';
import type { ServiceContext } from '../services/context.js';
import { RemoteError } from './remote.js';
import type { RemoteClient } from './remote.js';

const F = '/_matrix/federation/v1';
/** Most entries kept from another server's answer. */
const MAX_REMOTE_CHUNK = 500;

export class FederationDirectory {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly directory: DirectoryService,
    private readonly remote: RemoteClient,
  ) {}

  /** GET /_matrix/federation/v1/publicRooms */
  serveGet(query: URLSearchParams): Promise<JsonObject> {
    const limitRaw = query.get('limit');
    let limit: number | undefined;
    if (limitRaw !== null) {
      if (!/^\d{1,9}$/.test(limitRaw)) throw invalidParam('limit', 'must be a non-negative integer');
      limit = Number(limitRaw);
    }
    const allRaw = query.get('include_all_networks');
    if (allRaw !== null && allRaw !== 'true' && allRaw !== 'false') throw invalidParam('include_all_networks', 'must be true or false');
    return this.serve({
      limit,
      since: query.get('since') ?? undefined,
      includeAllNetworks: allRaw === 'true',
      thirdPartyInstanceId: query.get('third_party_instance_id') ?? undefined,
    });
  }

  /** POST /_matrix/federation/v1/publicRooms */
  servePost(body: JsonObject): Promise<JsonObject> {
    const { limit, since, filter, include_all_networks: all, third_party_instance_id: tp } = body;
    if (limit !== undefined && typeof limit !== 'number') throw badJson("'limit' must be an integer");
    if (since !== undefined && typeof since !== 'string') throw badJson("'since' must be a string");
    if (filter !== undefined && !isJsonObject(filter)) throw badJson("'filter' must be an object");
    if (all !== undefined && typeof all !== 'boolean') throw badJson("'include_all_networks' must be a boolean");
    if (tp !== undefined && typeof tp !== 'string') throw badJson("'third_party_instance_id' must be a string");
    return this.serve({ limit, since, filter, includeAllNetworks: all === true, thirdPartyInstanceId: tp });
  }

  private async serve(q: PublicRoomsQuery): Promise<JsonObject> {
    // Our own directory, whoever asks (it is public by definition).
    return (await this.directory.publicRooms({ ...q, server: undefined })) as unknown as JsonObject;
  }

  /** Another server's directory, for DirectoryService.remoteDirectory. */
  async fetch(server: string, q: PublicRoomsQuery): Promise<PublicRoomsResponse> {
    let body: JsonObject;
    try {
      if (q.filter !== undefined || q.thirdPartyInstanceId !== undefined || q.includeAllNetworks) {
        const req: JsonObject = {};
        if (q.limit !== undefined) req.limit = q.limit;
        if (q.since !== undefined) req.since = q.since;
        if (q.filter !== undefined) req.filter = q.filter as JsonValue;
        if (q.includeAllNetworks) req.include_all_networks = true;
        if (q.thirdPartyInstanceId !== undefined) req.third_party_instance_id = q.thirdPartyInstanceId;
        body = await this.remote.request(server, 'POST', `${F}/publicRooms`, req);
      } else {
        const params = new URLSearchParams();
        if (q.limit !== undefined) params.set('limit', String(q.limit));
        if (q.since !== undefined) params.set('since', q.since);
        const qs = params.toString();
        body = await this.remote.get(server, `${F}/publicRooms${qs ? `?${qs}` : ''}`);
      }
    } catch (e) {
      this.ctx.logger.debug('federation: remote directory failed', { server, error: e });
      // The remote's own refusal of the request (a bad `since`) is the client's error; anything else is ours.
      if (e instanceof RemoteError && e.status === 400) throw invalidParam('since', `was refused by ${server}`);
      throw unknown(`The room directory of ${server} could not be fetched`, 502);
    }
    const chunk = Array.isArray(body.chunk) ? body.chunk.filter(isChunk).slice(0, MAX_REMOTE_CHUNK) : [];
    const res: PublicRoomsResponse = {
      chunk,
      total_room_count_estimate: typeof body.total_room_count_estimate === 'number' ? body.total_room_count_estimate : chunk.length,
    };
    if (typeof body.next_batch === 'string') res.next_batch = body.next_batch;
    if (typeof body.prev_batch === 'string') res.prev_batch = body.prev_batch;
    return res;
  }
}

/** The chunk fields the spec requires, with the right types. */
function isChunk(v: JsonValue): v is JsonObject & PublicRoomsChunk {
  return (
    isJsonObject(v) &&
    typeof v.room_id === 'string' &&
    typeof v.num_joined_members === 'number' &&
    typeof v.world_readable === 'boolean' &&
    typeof v.guest_can_join === 'boolean'
  );
}
