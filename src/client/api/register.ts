/**
 * Account creation through user-interactive authentication: the first /register answers 401 with flows, then
 * each stage is completed with the session until the server returns the login.
 * https://spec.matrix.org/v1.19/client-server-api/#user-interactive-authentication-api
 * https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3register
 */
import type { MatrixApi } from './client.js';
import { MatrixApiError } from './http.js';
import type { JsonObject, LoginResponse, UiaResponse } from './types.js';

/** The server only offers flows that need a registration token, and none was given. */
export class RegistrationTokenRequired extends Error {
  override name = 'RegistrationTokenRequired';
}

export interface RegisterInput {
  username: string;
  password: string;
  deviceName: string;
  registrationToken?: string;
}

const DUMMY = 'm.login.dummy';
const TOKEN = 'm.login.registration_token';

/** Picks the first flow whose every stage this client can complete with what it has. */
export function chooseFlow(flows: UiaResponse['flows'], haveToken: boolean): string[] | undefined {
  const can = (s: string) => s === DUMMY || (s === TOKEN && haveToken);
  return flows.find((f) => f.stages.every(can))?.stages;
}

export async function registerAccount(api: MatrixApi, input: RegisterInput): Promise<LoginResponse> {
  const base: JsonObject = {
    username: input.username,
    password: input.password,
    initial_device_display_name: input.deviceName,
  };
  let uia = await uiaStep(api, base);
  if ('access_token' in uia) return uia;
  const stages = chooseFlow(uia.flows ?? [], input.registrationToken !== undefined);
  if (!stages) {
    if (uia.flows?.some((f) => f.stages.includes(TOKEN))) throw new RegistrationTokenRequired('this homeserver needs a registration token');
    throw new MatrixApiError(403, 'M_FORBIDDEN', 'this homeserver does not allow creating accounts here');
  }
  for (const stage of stages) {
    if (uia.completed?.includes(stage)) continue;
    const auth: JsonObject = { type: stage, session: uia.session ?? null };
    if (stage === TOKEN) auth.token = input.registrationToken ?? '';
    const next = await uiaStep(api, { ...base, auth });
    if ('access_token' in next) return next;
    if (next.errcode) throw new MatrixApiError(401, next.errcode, next.error ?? 'registration step failed');
    uia = next;
  }
  throw new MatrixApiError(401, 'M_UNKNOWN', 'the homeserver did not finish registration');
}

async function uiaStep(api: MatrixApi, body: JsonObject): Promise<LoginResponse | UiaResponse> {
  try {
    return await api.register(body);
  } catch (e) {
    if (e instanceof MatrixApiError && e.status === 401 && Array.isArray(e.body.flows)) return e.body as unknown as UiaResponse;
    throw e;
  }
}
