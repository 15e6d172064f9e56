/**
 * A small typed Client-Server API client: only the calls this app makes, each one line over `Http`.
 * https://spec.matrix.org/v1.19/client-server-api/
 */
import { Http, path } from './http.js';
import type { FetchFn } from './http.js';
import type { ClientEvent, Device, JsonObject, LoginResponse, MessagesResponse, SyncResponse } from './types.js';

const V3 = '/_matrix/client/v3';

export interface CreateRoomOptions {
  name?: string;
  topic?: string;
  visibility?: 'public' | 'private';
  preset?: 'private_chat' | 'public_chat' | 'trusted_private_chat';
  invite?: string[];
  is_direct?: boolean;
  room_alias_name?: string;
}

export interface MemberEventsResponse {
  chunk: ClientEvent[];
}

export class MatrixApi {
  readonly http: Http;

  constructor(init: { baseUrl: string; accessToken?: string; fetch?: FetchFn }) {
    this.http = new Http(init);
  }

  get baseUrl(): string {
    return this.http.baseUrl;
  }

  versions(signal?: AbortSignal): Promise<{ versions: string[] }> {
    return this.http.request('GET', '/_matrix/client/versions', { anonymous: true, signal });
  }

  /** One /register round; a 401 with flows comes back as MatrixApiError with the UIA body. */
  register(body: JsonObject): Promise<LoginResponse> {
    return this.http.request('POST', `${V3}/register`, { body, anonymous: true });
  }

  login(user: string, password: string, deviceName: string): Promise<LoginResponse> {
    return this.http.request('POST', `${V3}/login`, {
      anonymous: true,
      body: {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user },
        password,
        initial_device_display_name: deviceName,
      },
    });
  }

  logout(): Promise<unknown> {
    return this.http.request('POST', `${V3}/logout`, { body: {} });
  }

  whoami(): Promise<{ user_id: string; device_id?: string }> {
    return this.http.request('GET', `${V3}/account/whoami`);
  }

  sync(opts: { since?: string; timeout?: number; filter?: string; signal?: AbortSignal }): Promise<SyncResponse> {
    return this.http.request('GET', `${V3}/sync`, {
      query: { since: opts.since, timeout: opts.timeout, filter: opts.filter },
      signal: opts.signal,
    });
  }

  send(roomId: string, type: string, txnId: string, content: JsonObject): Promise<{ event_id: string }> {
    return this.http.request('PUT', `${V3}` + path`/rooms/${roomId}/send/${type}/${txnId}`, {
      body: content,
    });
  }

  redact(roomId: string, eventId: string, txnId: string, reason?: string): Promise<{ event_id: string }> {
    return this.http.request('PUT', `${V3}` + path`/rooms/${roomId}/redact/${eventId}/${txnId}`, {
      body: reason ? { reason } : {},
    });
  }

  messages(roomId: string, from: string | undefined, limit: number, signal?: AbortSignal): Promise<MessagesResponse> {
    return this.http.request('GET', `${V3}` + path`/rooms/${roomId}/messages`, {
      query: { dir: 'b', from, limit },
      signal,
    });
  }

  members(roomId: string): Promise<MemberEventsResponse> {
    return this.http.request('GET', `${V3}` + path`/rooms/${roomId}/members`);
  }

  roomState(roomId: string): Promise<ClientEvent[]> {
    return this.http.request('GET', `${V3}` + path`/rooms/${roomId}/state`);
  }

  setState(roomId: string, type: string, stateKey: string, content: JsonObject): Promise<{ event_id: string }> {
    return this.http.request('PUT', `${V3}` + path`/rooms/${roomId}/state/${type}/${stateKey}`, { body: content });
  }

  createRoom(opts: CreateRoomOptions): Promise<{ room_id: string }> {
    return this.http.request('POST', `${V3}/createRoom`, { body: opts as JsonObject });
  }

  join(roomIdOrAlias: string): Promise<{ room_id: string }> {
    return this.http.request('POST', `${V3}` + path`/join/${roomIdOrAlias}`, { body: {} });
  }

  leave(roomId: string): Promise<unknown> {
    return this.http.request('POST', `${V3}` + path`/rooms/${roomId}/leave`, { body: {} });
  }

  forget(roomId: string): Promise<unknown> {
    return this.http.request('POST', `${V3}` + path`/rooms/${roomId}/forget`, { body: {} });
  }

  invite(roomId: string, userId: string): Promise<unknown> {
    return this.http.request('POST', `${V3}` + path`/rooms/${roomId}/invite`, { body: { user_id: userId } });
  }

  kick(roomId: string, userId: string, reason?: string): Promise<unknown> {
    return this.http.request('POST', `${V3}` + path`/rooms/${roomId}/kick`, { body: withReason({ user_id: userId }, reason) });
  }

  ban(roomId: string, userId: string, reason?: string): Promise<unknown> {
    return this.http.request('POST', `${V3}` + path`/rooms/${roomId}/ban`, { body: withReason({ user_id: userId }, reason) });
  }

  unban(roomId: string, userId: string): Promise<unknown> {
    return this.http.request('POST', `${V3}` + path`/rooms/${roomId}/unban`, { body: { user_id: userId } });
  }

  sendReceipt(roomId: string, eventId: string): Promise<unknown> {
    return this.http.request('POST', `${V3}` + path`/rooms/${roomId}/receipt/m.read/${eventId}`, { body: {} });
  }

  setTyping(roomId: string, userId: string, typing: boolean, timeout = 30_000): Promise<unknown> {
    return this.http.request('PUT', `${V3}` + path`/rooms/${roomId}/typing/${userId}`, {
      body: typing ? { typing, timeout } : { typing },
    });
  }

  profile(userId: string): Promise<{ displayname?: string; avatar_url?: string }> {
    return this.http.request('GET', `${V3}` + path`/profile/${userId}`);
  }

  setDisplayName(userId: string, displayname: string): Promise<unknown> {
    return this.http.request('PUT', `${V3}` + path`/profile/${userId}/displayname`, { body: { displayname } });
  }

  devices(): Promise<{ devices: Device[] }> {
    return this.http.request('GET', `${V3}/devices`);
  }

  setAccountData(userId: string, type: string, content: JsonObject): Promise<unknown> {
    return this.http.request('PUT', `${V3}` + path`/user/${userId}/account_data/${type}`, { body: content });
  }
}

function withReason(body: JsonObject, reason: string | undefined): JsonObject {
  return reason ? { ...body, reason } : body;
}
