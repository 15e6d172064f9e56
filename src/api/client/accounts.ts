/**
 * Client-Server endpoints of accounts, sessions and devices (handlers in src/services/accounts.ts).
 * Spec: data/api/client-server/{registration,registration_tokens,login,refresh,logout,whoami,password_management,
 * account_deactivation,device_management}.yaml.
 */
import type { Services } from '../../services/index.js';
import type { AnyEndpoint } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';
import { badJson } from '../errors.js';
import { queryEnum, requireQuery } from '../request.js';

export function accountEndpoints(s: Services): AnyEndpoint[] {
  const accounts = s.accounts;
  return [
    /** POST /_matrix/client/v3/register */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/register',
      auth: 'none',
      operationId: 'register',
      handler: ({ body, query }) => accounts.register(body, queryEnum(query, 'kind', ['user', 'guest'] as const, 'user')),
    }),
    /** GET /_matrix/client/v3/register/available */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/register/available',
      auth: 'none',
      operationId: 'checkUsernameAvailability',
      handler: async ({ query }) => ({ available: await accounts.usernameAvailable(requireQuery(query, 'username')) }),
    }),
    /** GET /_matrix/client/v1/register/m.login.registration_token/validity */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v1/register/m.login.registration_token/validity',
      auth: 'none',
      operationId: 'registrationTokenValidity',
      handler: ({ query }) => ({ valid: accounts.registrationTokenValid(requireQuery(query, 'token')) }),
    }),
    /** GET /_matrix/client/v3/login */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/login',
      auth: 'none',
      operationId: 'getLoginFlows',
      handler: () => accounts.loginFlows(),
    }),
    /** POST /_matrix/client/v3/login */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/login',
      auth: 'none',
      operationId: 'login',
      handler: ({ body }) => accounts.login(body),
    }),
    /** POST /_matrix/client/v3/refresh */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/refresh',
      auth: 'none',
      operationId: 'refresh',
      handler: ({ body }) => {
        if (typeof body.refresh_token !== 'string') throw badJson("'refresh_token' must be a string");
        return accounts.refresh(body.refresh_token);
      },
    }),
    /** POST /_matrix/client/v3/logout */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/logout',
      auth: 'accessToken',
      operationId: 'logout',
      handler: async ({ principal }) => {
        await accounts.logout(principal);
        return {};
      },
    }),
    /** POST /_matrix/client/v3/logout/all */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/logout/all',
      auth: 'accessToken',
      operationId: 'logout_all',
      handler: async ({ principal }) => {
        await accounts.logoutAll(principal);
        return {};
      },
    }),
    /** GET /_matrix/client/v3/account/whoami */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/account/whoami',
      auth: 'accessToken',
      operationId: 'getTokenOwner',
      handler: ({ principal }) => {
        const out: Record<string, unknown> = { user_id: principal.userId, is_guest: principal.isGuest === true };
        if (principal.deviceId !== undefined) out.device_id = principal.deviceId;
        return out;
      },
    }),
    /** POST /_matrix/client/v3/account/password */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/account/password',
      auth: 'optionalAccessToken',
      operationId: 'changePassword',
      handler: async ({ principal, body, accessToken }) => {
        await accounts.changePassword(principal, body, accessToken);
        return {};
      },
    }),
    /** POST /_matrix/client/v3/account/deactivate */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/account/deactivate',
      auth: 'optionalAccessToken',
      operationId: 'deactivateAccount',
      handler: ({ principal, body }) => accounts.deactivate(principal, body),
    }),
    /** GET /_matrix/client/v3/devices */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/devices',
      auth: 'accessToken',
      operationId: 'getDevices',
      handler: async ({ principal }) => ({ devices: await accounts.listDevices(principal.userId) }),
    }),
    /** GET /_matrix/client/v3/devices/{deviceId} */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/devices/{deviceId}',
      auth: 'accessToken',
      operationId: 'getDevice',
      handler: ({ principal, params }) => accounts.getDevice(principal.userId, params.deviceId),
    }),
    /** PUT /_matrix/client/v3/devices/{deviceId} */
    defineEndpoint({
      method: 'PUT',
      path: '/_matrix/client/v3/devices/{deviceId}',
      auth: 'accessToken',
      operationId: 'updateDevice',
      handler: async ({ principal, params, body }) => {
        await accounts.updateDevice(principal.userId, params.deviceId, body);
        return {};
      },
    }),
    /** DELETE /_matrix/client/v3/devices/{deviceId} */
    defineEndpoint({
      method: 'DELETE',
      path: '/_matrix/client/v3/devices/{deviceId}',
      auth: 'accessToken',
      operationId: 'deleteDevice',
      handler: async ({ principal, params, body }) => {
        await accounts.deleteDevices(principal, [params.deviceId], body.auth, `DELETE /devices/${params.deviceId}`);
        return {};
      },
    }),
    /** POST /_matrix/client/v3/delete_devices */
    defineEndpoint({
      method: 'POST',
      path: '/_matrix/client/v3/delete_devices',
      auth: 'accessToken',
      operationId: 'deleteDevices',
      handler: async ({ principal, body }) => {
        const devices = body.devices;
        if (!Array.isArray(devices) || !devices.every((d) => typeof d === 'string')) {
          throw badJson("'devices' must be a list of device IDs");
        }
        await accounts.deleteDevices(principal, devices as string[], body.auth, `POST /delete_devices ${JSON.stringify([...devices].sort())}`);
        return {};
      },
    }),
  ];
}
