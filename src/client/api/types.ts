/**
 * Wire types the client reads, in the spec's own shape (snake_case, never reshaped).
 * https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** A room event as /sync, /messages and /event return it ("ClientEventWithoutRoomID" plus room_id where present). */
export interface ClientEvent {
  event_id: string;
  type: string;
  sender: string;
  origin_server_ts: number;
  content: JsonObject;
  state_key?: string;
  redacts?: string;
  room_id?: string;
  unsigned?: UnsignedData;
}

export interface UnsignedData {
  age?: number;
  transaction_id?: string;
  prev_content?: JsonObject;
  redacted_because?: ClientEvent;
  'm.relations'?: { 'm.replace'?: ClientEvent; [rel: string]: unknown };
  [key: string]: unknown;
}

/** Stripped state (invites): no event ID, no timestamp. */
export interface StrippedEvent {
  type: string;
  state_key: string;
  sender: string;
  content: JsonObject;
}

/** Ephemeral and account-data events: a type and content only. */
export interface BasicEvent {
  type: string;
  content: JsonObject;
}

export interface JoinedRoomSync {
  summary?: { 'm.heroes'?: string[]; 'm.joined_member_count'?: number; 'm.invited_member_count'?: number };
  state?: { events?: ClientEvent[] };
  timeline?: { events?: ClientEvent[]; limited?: boolean; prev_batch?: string };
  ephemeral?: { events?: BasicEvent[] };
  account_data?: { events?: BasicEvent[] };
  unread_notifications?: { notification_count?: number; highlight_count?: number };
}

export interface InvitedRoomSync {
  invite_state?: { events?: StrippedEvent[] };
}

export interface LeftRoomSync {
  timeline?: { events?: ClientEvent[] };
}

export interface SyncResponse {
  next_batch: string;
  rooms?: {
    join?: Record<string, JoinedRoomSync>;
    invite?: Record<string, InvitedRoomSync>;
    leave?: Record<string, LeftRoomSync>;
    knock?: Record<string, unknown>;
  };
  account_data?: { events?: BasicEvent[] };
  presence?: { events?: BasicEvent[] };
}

export interface MessagesResponse {
  start: string;
  end?: string;
  chunk: ClientEvent[];
  state?: ClientEvent[];
}

export interface LoginResponse {
  user_id: string;
  access_token: string;
  device_id: string;
}

export interface Device {
  device_id: string;
  display_name?: string;
  last_seen_ip?: string;
  last_seen_ts?: number;
}

export interface UiaResponse {
  session?: string;
  flows: { stages: string[] }[];
  completed?: string[];
  params?: JsonObject;
  errcode?: string;
  error?: string;
}
