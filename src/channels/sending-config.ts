import { z } from 'zod';
import { defaultTextableTypes, phoneNumberTypes, type PhoneNumberType } from '../domain/phone-numbers.js';
import { documented, duration, emptyToUndefined, optionalText, whole, type EnvOf } from '../platform/config-fields.js';

const group = 'Sending';

/**
 * Which transport sends each channel, and how sending behaves whatever the provider. A provider's
 * own variables live beside its sender (twilio-config.ts, smtp-config.ts).
 */
export const sendingEnv = {
  SMS_TRANSPORT: documented(z.preprocess(emptyToUndefined, z.enum(['outbox', 'twilio']).optional()), {
    group,
    description: '`outbox` (files in OUTBOX_DIR) or `twilio`.',
    default: '`twilio` when its credentials are set, else `outbox`',
  }),
  EMAIL_TRANSPORT: documented(z.preprocess(emptyToUndefined, z.enum(['outbox', 'smtp']).optional()), {
    group,
    description: '`outbox` (files in OUTBOX_DIR) or `smtp`.',
    default: '`smtp` when SMTP_URL is set, else `outbox`',
  }),
  EMAIL_FROM: documented(z.string().default('recoup <noreply@localhost>'), {
    group,
    description: 'Sender of reminder emails.',
    default: '`recoup <noreply@localhost>`',
  }),
  SMS_NUMBER_TYPES: documented(
    z.preprocess(
      emptyToUndefined,
      z
        .string()
        .default(defaultTextableTypes.join(','))
        .transform((text, ctx) => {
          const types = text.split(',').map((part) => part.trim().toLowerCase());
          const unknown = types.filter((type) => !(phoneNumberTypes as readonly string[]).includes(type));
          if (unknown.length > 0) {
            ctx.addIssue({
              code: 'custom',
              message: `unknown number type ${unknown.map((t) => `"${t}"`).join(', ')}; expected some of ${phoneNumberTypes.join(', ')}`,
            });
            return z.NEVER;
          }
          return [...new Set(types)] as PhoneNumberType[];
        }),
    ),
    {
      group,
      description: `The kinds of phone number recoup texts, comma separated, as libphonenumber tells them apart: ${phoneNumberTypes.map((t) => `\`${t}\``).join(', ')}. A number of another kind is left out of the event that brings it (the event is applied without it, the order gets the other reminders, and the answer lists it under \`warnings\`) and refused on the retry page. At intake a number libphonenumber cannot place is kept (its metadata can lag behind new ranges) until a provider refuses it.`,
      default: `\`${defaultTextableTypes.join(',')}\``,
    },
  ),
  OUTBOX_DIR: optionalText({
    group,
    description: 'Where outbox transports write messages (`.eml` and `.sms.json` files).',
    default: '`DATA_DIR/outbox`',
  }),
  SEND_RATE_LIMIT: documented(z.preprocess(emptyToUndefined, z.coerce.number().int().min(1).optional()), {
    group,
    description:
      "Provider throughput across all workers together: at most this many step jobs (each sends at most one message, SMS or email) start per SEND_RATE_WINDOW. BullMQ's global rate limiter: a limited job waits in the queue, it does not fail.",
    default: 'no limit',
  }),
  SEND_RATE_WINDOW: duration('1s', { group, description: 'The window of SEND_RATE_LIMIT.' }, '10ms'),
  SEND_MAX_ATTEMPTS: documented(whole(z.coerce.number().int().min(1).max(20).default(5)), {
    group,
    description: 'Attempts for a message whose provider answered with a transient error.',
    default: '`5`',
  }),
  SEND_RETRY_BACKOFF: duration('15s', {
    group,
    description: 'First retry delay after a transient provider error (429, 5xx); doubles per attempt.',
  }),
  PROVIDER_TIMEOUT: duration('10s', { group, description: 'Timeout of a call to an SMS or email provider.' }),
  PROVIDER_ACCEPT_GRACE: duration('5s', {
    group,
    description:
      "How long after its timeout a provider may still accept a request it received: a message whose call timed out or was cut (`unknown`) holds the answers to payments, STOP and address changes this much longer than one in flight (src/messages/in-flight.ts). recoup's guarantee assumes providers accept within PROVIDER_TIMEOUT + this.",
  }),
  SMS_LOOKUP_AFTER: duration(
    '2m',
    {
      group,
      description:
        'An SMS whose sending outcome is unknown is looked up at the provider this long after its claim, and again each time its age has doubled; lookup passes run this often.',
    },
    '1s',
  ),
  SMS_LOOKUP_UNTIL: duration('24h', {
    group,
    description:
      'No more lookups once the claim is this old. The default is past the 10 hours Twilio may keep a message queued, after which finding nothing proves a message was never sent.',
  }),
};

export type SendingEnv = EnvOf<typeof sendingEnv>;
/** The variable that chooses the SMS transport; Twilio's checks and settings depend on it. */
export type SmsChoice = Pick<SendingEnv, 'SMS_TRANSPORT'>;
/** The variable that chooses the email transport. */
export type EmailChoice = Pick<SendingEnv, 'EMAIL_TRANSPORT'>;
