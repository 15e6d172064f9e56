import { describe, expect, it, vi } from 'vitest';
import * as errors from '../../src/api/errors.js';
import { MatrixError, errorResponse } from '../../src/api/errors.js';

describe('MatrixError constructors', () => {
  it('carry the errcode and status the spec gives', () => {
    const table: [MatrixError, number, string][] = [
      [errors.forbidden(), 403, 'M_FORBIDDEN'],
      [errors.notFound(), 404, 'M_NOT_FOUND'],
      [errors.unknownToken(), 401, 'M_UNKNOWN_TOKEN'],
      [errors.missingToken(), 401, 'M_MISSING_TOKEN'],
      [errors.badJson(), 400, 'M_BAD_JSON'],
      [errors.notJson(), 400, 'M_NOT_JSON'],
      [errors.missingParam('room_id'), 400, 'M_MISSING_PARAM'],
      [errors.invalidParam('limit', 'must be an integer'), 400, 'M_INVALID_PARAM'],
      [errors.tooLarge(), 413, 'M_TOO_LARGE'],
      [errors.limitExceeded(10), 429, 'M_LIMIT_EXCEEDED'],
      [errors.unrecognized(), 404, 'M_UNRECOGNIZED'],
      [errors.unrecognizedMethod(['GET']), 405, 'M_UNRECOGNIZED'],
      [errors.userInUse(), 400, 'M_USER_IN_USE'],
      [errors.invalidUsername(), 400, 'M_INVALID_USERNAME'],
      [errors.exclusive(), 400, 'M_EXCLUSIVE'],
      [errors.roomInUse(), 400, 'M_ROOM_IN_USE'],
      [errors.badState(), 400, 'M_BAD_STATE'],
      [errors.guestAccessForbidden(), 403, 'M_GUEST_ACCESS_FORBIDDEN'],
      [errors.unsupportedRoomVersion(), 400, 'M_UNSUPPORTED_ROOM_VERSION'],
      [errors.incompatibleRoomVersion('12'), 400, 'M_INCOMPATIBLE_ROOM_VERSION'],
      [errors.serverNotTrusted(), 400, 'M_SERVER_NOT_TRUSTED'],
      [errors.weakPassword(), 400, 'M_WEAK_PASSWORD'],
      [errors.threepidNotFound(), 400, 'M_THREEPID_NOT_FOUND'],
      [errors.userDeactivated(), 403, 'M_USER_DEACTIVATED'],
      [errors.userLocked(), 401, 'M_USER_LOCKED'],
      [errors.userSuspended(), 403, 'M_USER_SUSPENDED'],
      [errors.resourceLimitExceeded('mailto:admin@x'), 403, 'M_RESOURCE_LIMIT_EXCEEDED'],
      [errors.unknown(), 500, 'M_UNKNOWN'],
      [errors.notYetUploaded(), 504, 'M_NOT_YET_UPLOADED'],
      [errors.cannotOverwriteMedia(), 409, 'M_CANNOT_OVERWRITE_MEDIA'],
      [errors.wrongRoomKeysVersion('3'), 403, 'M_WRONG_ROOM_KEYS_VERSION'],
      [errors.unknownDevice(), 400, 'M_UNKNOWN_DEVICE'],
    ];
    for (const [e, status, errcode] of table) {
      expect(e).toBeInstanceOf(MatrixError);
      expect([e.errcode, e.status]).toEqual([errcode, status]);
      expect(e.name).toBe('MatrixError');
    }
  });

  it('carry the extra fields their errcodes define', () => {
    expect(errors.unknownToken(true).toJSON()).toMatchObject({ soft_logout: true });
    expect(errors.unknownToken(false).toJSON()).not.toHaveProperty('soft_logout');
    expect(errors.userLocked().toJSON()).toMatchObject({ soft_logout: true });
    expect(errors.incompatibleRoomVersion('12').toJSON()).toMatchObject({ room_version: '12' });
    expect(errors.resourceLimitExceeded('mailto:a@x').toJSON()).toMatchObject({ admin_contact: 'mailto:a@x' });
    expect(errors.userLimitExceeded('https://x/limits', { canUpgrade: true }).toJSON()).toMatchObject({ info_uri: 'https://x/limits', can_upgrade: true });
    expect(errors.wrongRoomKeysVersion('3').toJSON()).toMatchObject({ current_version: '3' });
    expect(errors.missingParam('room_id').message).toContain('room_id');
    expect(errors.invalidParam('limit', 'must be an integer').message).toBe("'limit' must be an integer");
  });
});

describe('errorResponse', () => {
  it('turns a MatrixError into its standard error response', async () => {
    const res = errorResponse(errors.forbidden('You are not invited'));
    expect(res.status).toBe(403);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.json()).toEqual({ errcode: 'M_FORBIDDEN', error: 'You are not invited' });
  });

  it('never lets extra data overwrite errcode or error', async () => {
    const e = new MatrixError(400, 'M_X', 'real', { data: { errcode: 'M_FAKE', error: 'fake', extra: 1 } });
    expect(await errorResponse(e).json()).toEqual({ errcode: 'M_X', error: 'real', extra: 1 });
  });

  it('adds Retry-After (seconds, rounded up) and retry_after_ms to 429s', async () => {
    const res = errorResponse(errors.limitExceeded(2001));
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('3');
    expect(await res.json()).toMatchObject({ errcode: 'M_LIMIT_EXCEEDED', retry_after_ms: 2001 });
    expect(errorResponse(errors.limitExceeded()).headers.get('retry-after')).toBeNull();
  });

  it('adds Allow to 405s', () => {
    expect(errorResponse(errors.unrecognizedMethod(['GET', 'PUT'])).headers.get('allow')).toBe('GET, PUT');
  });

  it('turns anything else into 500 M_UNKNOWN, logging the detail and keeping it out of the body', async () => {
    const logger = { error: vi.fn() };
    const secret = new TypeError("Cannot read properties of undefined (reading 'roomId') at /srv/hearth/src/x.ts:12");
    for (const thrown of [secret, 'a string', { code: 'EIO' }, undefined]) {
      const res = errorResponse(thrown, logger);
      expect(res.status).toBe(500);
      const text = await res.text();
      expect(JSON.parse(text)).toEqual({ errcode: 'M_UNKNOWN', error: 'Internal server error' });
      expect(text).not.toMatch(/roomId|srv|EIO/);
    }
    expect(logger.error).toHaveBeenCalledTimes(4);
    expect(logger.error.mock.calls[0][1]).toBe(secret);
  });

  it('logs MatrixErrors only when they are server errors', () => {
    const logger = { error: vi.fn() };
    errorResponse(errors.forbidden(), logger);
    expect(logger.error).not.toHaveBeenCalled();
    errorResponse(errors.connectionTimeout(), logger);
    expect(logger.error).toHaveBeenCalledTimes(1);
  });
});
