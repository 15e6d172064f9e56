/**
 * Client-Server push rules and notifications endpoints (handlers in src/services/push-rules.ts).
 * Spec: data/api/client-server/pushrules.yaml, notifications.yaml; content/client-server-api/modules/push.md.
 */
import type { PushRulesService } from '../../services/push-rules.js';
import type { AnyEndpoint } from '../endpoint.js';
import { defineEndpoint } from '../endpoint.js';
import { queryInt } from '../request.js';

/** GET /notifications: Synapse's default page size; larger pages are capped. */
const NOTIFICATIONS_DEFAULT_LIMIT = 50;
const NOTIFICATIONS_MAX_LIMIT = 1000;

export function pushRulesEndpoints(pushRules: PushRulesService): AnyEndpoint[] {
  /** `before`/`after` of PUT /pushrules/…: absent or empty means not given. */
  const anchor = (q: URLSearchParams, name: string) => q.get(name) || undefined;
  return [
    /** GET /_matrix/client/v3/pushrules/ */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/pushrules/',
      auth: 'accessToken',
      operationId: 'getPushRules',
      handler: async ({ principal }) => ({ global: await pushRules.getRuleset(principal) }),
    }),
    /** GET /_matrix/client/v3/pushrules/global/ */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/pushrules/global/',
      auth: 'accessToken',
      operationId: 'getPushRulesGlobal',
      handler: ({ principal }) => pushRules.getRuleset(principal),
    }),
    /** GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId} */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/pushrules/global/{kind}/{ruleId}',
      auth: 'accessToken',
      operationId: 'getPushRule',
      handler: ({ principal, params }) => pushRules.getRule(principal, params.kind, params.ruleId),
    }),
    /** PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId} */
    defineEndpoint({
      method: 'PUT',
      path: '/_matrix/client/v3/pushrules/global/{kind}/{ruleId}',
      auth: 'accessToken',
      operationId: 'setPushRule',
      handler: async ({ principal, params, body, query }) => {
        await pushRules.putRule(principal, params.kind, params.ruleId, body, {
          before: anchor(query, 'before'),
          after: anchor(query, 'after'),
        });
        return {};
      },
    }),
    /** DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId} */
    defineEndpoint({
      method: 'DELETE',
      path: '/_matrix/client/v3/pushrules/global/{kind}/{ruleId}',
      auth: 'accessToken',
      operationId: 'deletePushRule',
      handler: async ({ principal, params }) => {
        await pushRules.deleteRule(principal, params.kind, params.ruleId);
        return {};
      },
    }),
    /** GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled',
      auth: 'accessToken',
      operationId: 'isPushRuleEnabled',
      handler: ({ principal, params }) => pushRules.getEnabled(principal, params.kind, params.ruleId),
    }),
    /** PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled */
    defineEndpoint({
      method: 'PUT',
      path: '/_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled',
      auth: 'accessToken',
      operationId: 'setPushRuleEnabled',
      handler: async ({ principal, params, body }) => {
        // The schema requires a boolean `enabled`.
        await pushRules.setEnabled(principal, params.kind, params.ruleId, body.enabled === true);
        return {};
      },
    }),
    /** GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions',
      auth: 'accessToken',
      operationId: 'getPushRuleActions',
      handler: ({ principal, params }) => pushRules.getActions(principal, params.kind, params.ruleId),
    }),
    /** PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions */
    defineEndpoint({
      method: 'PUT',
      path: '/_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions',
      auth: 'accessToken',
      operationId: 'setPushRuleActions',
      handler: async ({ principal, params, body }) => {
        await pushRules.setActions(principal, params.kind, params.ruleId, body.actions);
        return {};
      },
    }),
    /** GET /_matrix/client/v3/notifications */
    defineEndpoint({
      method: 'GET',
      path: '/_matrix/client/v3/notifications',
      auth: 'accessToken',
      operationId: 'getNotifications',
      handler: ({ principal, query }) =>
        pushRules.notifications(principal, {
          from: query.get('from') ?? undefined,
          limit: Math.min(queryInt(query, 'limit', NOTIFICATIONS_DEFAULT_LIMIT, { min: 1 }), NOTIFICATIONS_MAX_LIMIT),
          onlyHighlight: query.get('only') === 'highlight',
        }),
    }),
  ];
}
