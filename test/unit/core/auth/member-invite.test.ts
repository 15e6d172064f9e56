// Rule 5.4 [v1–v7: 5.3; v6–v7: 4.3; v8–v11: 4.4]: membership invite, including third-party invites (5.4.1).
import { describe, it } from 'vitest';
import { encodeBase64, encodeBase64Url } from '../../../../src/core/base64.js';
import { publicKeyFromSeed } from '../../../../src/core/crypto/ed25519.js';
import type { JsonObject } from '../../../../src/core/json.js';
import type { RoomVersion } from '../../../../src/core/room-versions.js';
import { signJsonSync } from '../../../../src/core/signing.js';
import { authorize } from '../../../../src/core/auth/rules.js';
import type { TestRoom } from './helpers.js';
import { ALICE, ALL_VERSIONS, BOB, CAROL, defaultPowerLevels, expectAllowed, expectRejected, newRoom } from './helpers.js';

// The identity server's key, and a second key it did not use.
const IS_SEED = new Uint8Array(32).fill(7);
const IS_KEY = { keyId: 'ed25519:0', seed: IS_SEED, publicKey: publicKeyFromSeed(IS_SEED) };
const OTHER_KEY = publicKeyFromSeed(new Uint8Array(32).fill(9));

function signedFor(mxid: string, token: string): JsonObject {
  return signJsonSync({ mxid, token, sender: ALICE }, 'id.example.net', IS_KEY);
}

/** A room where Alice (creator) has put an m.room.third_party_invite with token 'tok'. */
function roomWithThirdPartyInvite(version: RoomVersion, inviteContent?: JsonObject, sender = ALICE): TestRoom {
  const room = newRoom(version);
  room.put(
    room.event({
      type: 'm.room.third_party_invite',
      sender,
      state_key: 'tok',
      content: inviteContent ?? {
        display_name: 'b...@example.com',
        key_validity_url: 'https://id.example.net/_matrix/identity/v2/pubkey/isvalid',
        public_key: encodeBase64(IS_KEY.publicKey),
      },
    }),
  );
  return room;
}
function tpInvite(room: TestRoom, tpi: JsonObject | string | null, sender = ALICE, target = BOB) {
  return room.memberEvent(sender, target, 'invite', { third_party_invite: tpi });
}

describe.each(ALL_VERSIONS)('5.4 invite, room version $id', (version) => {
  it('5.4.4: a joined sender at the invite level invites → allow', () => {
    const room = newRoom(version);
    room.setMember(BOB, 'join');
    expectAllowed(authorize(room.memberEvent(BOB, CAROL, 'invite'), room, version));
  });
  it('5.4.4: re-inviting an invited or departed user → allow', () => {
    const room = newRoom(version);
    room.setMember(CAROL, 'invite', ALICE);
    expectAllowed(authorize(room.memberEvent(ALICE, CAROL, 'invite'), room, version));
    room.setMember(CAROL, 'leave');
    expectAllowed(authorize(room.memberEvent(ALICE, CAROL, 'invite'), room, version));
  });
  it('5.4.2: a sender who is not joined → reject', () => {
    const room = newRoom(version);
    room.setMember(BOB, 'invite', ALICE);
    expectRejected(authorize(room.memberEvent(BOB, CAROL, 'invite'), room, version), /not joined/);
  });
  it.each(['join', 'ban'])('5.4.3: a target whose membership is %s → reject', (m) => {
    const room = newRoom(version);
    room.setMember(CAROL, m, m === 'ban' ? ALICE : CAROL);
    expectRejected(authorize(room.memberEvent(ALICE, CAROL, 'invite'), room, version), new RegExp(`membership is ${m}`));
  });
  it('5.4.5: below the invite level → reject', () => {
    const room = newRoom(version, { powerLevels: { ...defaultPowerLevels(version), invite: 10 } });
    room.setMember(BOB, 'join');
    expectRejected(authorize(room.memberEvent(BOB, CAROL, 'invite'), room, version), /may not invite/);
  });
  it('5.4.4: the invite level defaults to 0 when unset', () => {
    const pl = defaultPowerLevels(version);
    delete pl.invite;
    const room = newRoom(version, { powerLevels: pl });
    room.setMember(BOB, 'join');
    expectAllowed(authorize(room.memberEvent(BOB, CAROL, 'invite'), room, version));
  });
  it('5.4.4: a stringy invite level (v1–v9) counts; v10+ ignores it and uses the default', () => {
    const room = newRoom(version, { powerLevels: { ...defaultPowerLevels(version), invite: '10' } });
    room.setMember(BOB, 'join');
    const r = authorize(room.memberEvent(BOB, CAROL, 'invite'), room, version);
    if (version.integerPowerLevels) expectAllowed(r);
    else expectRejected(r, /may not invite/);
  });
});

describe.each(ALL_VERSIONS)('5.4.1 third-party invites, room version $id', (version) => {
  it('5.4.1.7: signed by the public_key of the m.room.third_party_invite → allow', () => {
    const room = roomWithThirdPartyInvite(version);
    expectAllowed(authorize(tpInvite(room, { display_name: 'b', signed: signedFor(BOB, 'tok') }), room, version));
  });
  it('5.4.1.7.2: signed by one of public_keys (URL-safe encoding) → allow', () => {
    const room = roomWithThirdPartyInvite(version, {
      display_name: 'b',
      key_validity_url: 'https://id.example.net/v',
      public_key: encodeBase64(OTHER_KEY),
      public_keys: [{ public_key: 'not base64!' }, { public_key: encodeBase64Url(IS_KEY.publicKey) }],
    });
    expectAllowed(authorize(tpInvite(room, { signed: signedFor(BOB, 'tok') }), room, version));
  });
  it('5.4.1 skips 5.4.2: the invite is allowed by the signature alone (sender not joined)', () => {
    const room = roomWithThirdPartyInvite(version, undefined, CAROL);
    expectAllowed(authorize(tpInvite(room, { signed: signedFor(BOB, 'tok') }, CAROL), room, version));
  });
  it('5.4.1.1: the target is banned → reject', () => {
    const room = roomWithThirdPartyInvite(version);
    room.setMember(BOB, 'ban', ALICE);
    expectRejected(authorize(tpInvite(room, { signed: signedFor(BOB, 'tok') }), room, version), /banned/);
  });
  it.each([
    ['no signed', {}],
    ['signed not an object', { signed: 'x' }],
    ['third_party_invite not an object', 'x'],
    ['third_party_invite null', null],
  ])('5.4.1.2: %s → reject', (_what, tpi) => {
    const room = roomWithThirdPartyInvite(version);
    expectRejected(authorize(tpInvite(room, tpi as JsonObject), room, version), /no signed object/);
  });
  it.each([
    ['no mxid', { token: 'tok' }],
    ['no token', { mxid: BOB }],
    ['a numeric token', { mxid: BOB, token: 5 }],
  ])('5.4.1.3: signed with %s → reject', (_what, signed) => {
    const room = roomWithThirdPartyInvite(version);
    expectRejected(authorize(tpInvite(room, { signed }), room, version), /no mxid and token/);
  });
  it('5.4.1.4: mxid ≠ state_key → reject', () => {
    const room = roomWithThirdPartyInvite(version);
    expectRejected(authorize(tpInvite(room, { signed: signedFor(CAROL, 'tok') }), room, version), /mxid is not the state_key/);
  });
  it('5.4.1.5: no m.room.third_party_invite for the token → reject', () => {
    const room = roomWithThirdPartyInvite(version);
    expectRejected(
      authorize(tpInvite(room, { signed: signedFor(BOB, 'other-token') }), room, version),
      /no m\.room\.third_party_invite/,
    );
  });
  it('5.4.1.6: the sender did not send the m.room.third_party_invite → reject', () => {
    const room = roomWithThirdPartyInvite(version);
    room.setMember(CAROL, 'join');
    expectRejected(authorize(tpInvite(room, { signed: signedFor(BOB, 'tok') }, CAROL), room, version), /did not send/);
  });
  it('5.4.1.8: signed by a key the invite does not list → reject', () => {
    const room = roomWithThirdPartyInvite(version, { public_key: encodeBase64(OTHER_KEY) });
    expectRejected(authorize(tpInvite(room, { signed: signedFor(BOB, 'tok') }), room, version), /not signed/);
  });
  it('5.4.1.8: a signed object altered after signing → reject', () => {
    const room = roomWithThirdPartyInvite(version);
    const signed = { ...signedFor(BOB, 'tok'), sender: CAROL };
    expectRejected(authorize(tpInvite(room, { signed }), room, version), /not signed/);
  });
  it('5.4.1.8: no signatures, or an invite without usable keys → reject, no throw', () => {
    const room = roomWithThirdPartyInvite(version, { public_key: 42, public_keys: 'x' } as unknown as JsonObject);
    expectRejected(authorize(tpInvite(room, { signed: signedFor(BOB, 'tok') }), room, version), /not signed/);
    const room2 = roomWithThirdPartyInvite(version);
    expectRejected(authorize(tpInvite(room2, { signed: { mxid: BOB, token: 'tok', signatures: 'x' } }), room2, version), /not signed/);
  });
});
