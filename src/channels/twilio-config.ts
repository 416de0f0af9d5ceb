import type { z } from 'zod';
import { optionalText, type EnvOf } from '../platform/config-fields.js';
import type { SmsChoice } from './sending-config.js';

const group = 'Twilio (SMS)';

/** Twilio's variables. Which SMS transport runs is SMS_TRANSPORT's choice (sending-config.ts); see twilioChosen. */
export const twilioEnv = {
  TWILIO_ACCOUNT_SID: optionalText({
    group,
    secret: true,
    description:
      'Account SID (`AC…`) of the Twilio account that sends SMS. Set with TWILIO_AUTH_TOKEN, SMS go through Twilio unless SMS_TRANSPORT says otherwise.',
  }),
  TWILIO_AUTH_TOKEN: optionalText({
    group,
    secret: true,
    description:
      "Auth token of that account: authenticates API calls and checks the signatures of Twilio's status callbacks and inbound messages.",
  }),
  TWILIO_MESSAGING_SERVICE_SID: optionalText({
    group,
    description:
      'Messaging Service (`MG…`) that sends, choosing the number itself. With Twilio, this or TWILIO_FROM is required.',
  }),
  TWILIO_FROM: optionalText({
    group,
    description: 'Sender number (E.164) or alphanumeric sender id, when no Messaging Service is set.',
    example: '+15005550006',
  }),
  TWILIO_API_URL: optionalText({
    group,
    description: 'Base URL of the Twilio API, for tests against a local fake.',
    default: "Twilio's own",
  }),
};

export type TwilioEnv = EnvOf<typeof twilioEnv>;

/** Twilio's part of the configuration, when it sends SMS. */
export interface TwilioConfig {
  accountSid: string;
  authToken: string;
  messagingServiceSid: string | undefined;
  from: string | undefined;
  apiUrl: string | undefined;
}

/** SMS_TRANSPORT=twilio, or no SMS_TRANSPORT and Twilio's credentials are set. */
export function twilioChosen(env: SmsChoice & Pick<TwilioEnv, 'TWILIO_ACCOUNT_SID' | 'TWILIO_AUTH_TOKEN'>): boolean {
  return (env.SMS_TRANSPORT ?? (env.TWILIO_ACCOUNT_SID && env.TWILIO_AUTH_TOKEN ? 'twilio' : 'outbox')) === 'twilio';
}

export function checkTwilioEnv(env: SmsChoice & TwilioEnv, ctx: z.RefinementCtx): void {
  if (!twilioChosen(env)) return;
  // Twilio is either asked for or chosen because its credentials are set; say which.
  const because = env.SMS_TRANSPORT ? 'when SMS_TRANSPORT=twilio' : 'to send SMS through Twilio';
  for (const key of ['TWILIO_ACCOUNT_SID', 'TWILIO_AUTH_TOKEN'] as const) {
    if (!env[key]) ctx.addIssue({ code: 'custom', path: [key], message: `required ${because}` });
  }
  if (!env.TWILIO_MESSAGING_SERVICE_SID && !env.TWILIO_FROM) {
    ctx.addIssue({
      code: 'custom',
      path: ['TWILIO_FROM'],
      message: `set TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM ${because}`,
    });
  }
}

export function twilioConfig(env: TwilioEnv): TwilioConfig {
  return {
    accountSid: env.TWILIO_ACCOUNT_SID ?? '',
    authToken: env.TWILIO_AUTH_TOKEN ?? '',
    messagingServiceSid: env.TWILIO_MESSAGING_SERVICE_SID,
    from: env.TWILIO_FROM,
    apiUrl: env.TWILIO_API_URL,
  };
}
