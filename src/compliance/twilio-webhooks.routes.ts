import formbody from '@fastify/formbody';
import type { InFlightWait } from '../messages/in-flight.js';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import twilio from 'twilio';
import { parseTwilioPrice, twilioBadAddress } from '../channels/twilio-sms-sender.js';
import type { Clock } from '../platform/clock.js';
import { handleInboundSms } from './inbound-sms.js';
import { smsReplyText } from './sms-keywords.js';
import type { Db } from '../db/client.js';
import { RecoupError } from '../platform/errors.js';
import type { ReminderAfterPaymentObserver } from '../messages/after-payment.js';
import { applyDeliveryUpdate } from '../messages/delivery-status.js';

export interface TwilioWebhookDeps {
  db: Db;
  clock: Clock;
  /** Twilio's auth token signs every callback. */
  authToken: string;
  publicUrl: string;
  /** Named in the replies to STOP / START / HELP. Default: "us". */
  shopName?: string | undefined;
  /** Language of the replies when the customer's is unknown. Default en. */
  defaultLocale?: string | undefined;
  /** How long answers wait for messages in flight (src/messages/in-flight.ts). Default: the default send lease and accept grace. */
  inFlightWait?: InFlightWait | undefined;
  /** Told of a message a callback shows was accepted after its order's payment (metrics, logs). */
  onReminderAfterPayment?: ReminderAfterPaymentObserver | undefined;
}

/**
 * Where Twilio reports the delivery status of messages, under PUBLIC_URL. The adapter is given this
 * as its `statusCallbackBase` and appends each message's id (src/app/deps.ts).
 */
export const twilioStatusCallbackPath = '/webhooks/twilio/status';

/**
 * Twilio webhooks: delivery callbacks and incoming messages. The signature is checked against the
 * exact public URL Twilio was given (PUBLIC_URL + path), so it holds behind proxies that rewrite
 * hosts; a request that fails it is answered 403 before anything is read or recorded. Twilio posts
 * forms only: any other body (JSON too) is answered 415 unread.
 */
export async function twilioWebhookRoutes(app: FastifyInstance, deps: TwilioWebhookDeps): Promise<void> {
  app.removeAllContentTypeParsers();
  await app.register(formbody);

  const deliveryCallback = async (request: FastifyRequest, path: string, messageId: string | undefined) => {
    const params = signedParams(deps, request, path);
    const sid = params.MessageSid ?? params.SmsSid;
    const status = params.MessageStatus ?? params.SmsStatus;
    if (!sid || !status) {
      throw new RecoupError('validation', 'MessageSid and MessageStatus are required', {
        issues: [{ path: sid ? 'MessageStatus' : 'MessageSid', message: 'required' }],
      });
    }
    const code = params.ErrorCode ? Number(params.ErrorCode) : undefined;
    await applyDeliveryUpdate(
      deps.db,
      {
        messageId,
        providerId: sid,
        providerStatus: status,
        errorCode: params.ErrorCode,
        badAddress: code === undefined || Number.isNaN(code) ? undefined : twilioBadAddress(code),
        price: parseTwilioPrice(params.Price, params.PriceUnit),
      },
      deps.clock.now(),
      deps.onReminderAfterPayment,
    );
  };

  /**
   * Delivery callbacks of a message, named by recoup's message id: they find a message whose
   * acceptance was never heard of (outcome `unknown`), which has no Twilio SID to be found by.
   */
  app.post<{ Params: { messageId: string } }>(`${twilioStatusCallbackPath}/:messageId`, async (request, reply) => {
    const { messageId } = request.params;
    await deliveryCallback(request, `${twilioStatusCallbackPath}/${encodeURIComponent(messageId)}`, messageId);
    return reply.status(204).send();
  });

  /** Delivery callbacks by Twilio SID only: messages sent before callbacks named the message. */
  app.post(twilioStatusCallbackPath, async (request, reply) => {
    await deliveryCallback(request, twilioStatusCallbackPath, undefined);
    return reply.status(204).send();
  });

  /**
   * Replies to reminders (the number's "A message comes in" webhook). Opt-out, opt-in and help
   * keywords are acted on (see handleInboundSms) and answered with TwiML in the customer's language;
   * anything else gets an empty answer. When Twilio's Advanced Opt-Out already answered
   * (`OptOutType` is set), recoup records the change but does not answer a second time.
   */
  app.post('/webhooks/twilio/inbound', async (request, reply) => {
    const params = signedParams(deps, request, '/webhooks/twilio/inbound');
    const from = params.From;
    const messageSid = params.MessageSid ?? params.SmsSid;
    if (!from || !messageSid) {
      throw new RecoupError('validation', 'From and MessageSid are required', {
        issues: [{ path: from ? 'MessageSid' : 'From', message: 'required' }],
      });
    }
    const result = await handleInboundSms(
      { db: deps.db, clock: deps.clock, defaultLocale: deps.defaultLocale ?? 'en', inFlightWait: deps.inFlightWait },
      { messageSid, from, body: params.Body ?? '', optOutType: params.OptOutType },
    );
    request.log.info({ command: result.command, changed: result.changed, repeat: result.repeat }, 'inbound sms');
    const answer =
      result.command === 'none' || params.OptOutType
        ? undefined
        : smsReplyText(result.command, result.locale, deps.shopName);
    return reply
      .status(200)
      .type('text/xml; charset=utf-8')
      .send(
        answer === undefined
          ? '<?xml version="1.0" encoding="UTF-8"?><Response/>'
          : `<?xml version="1.0" encoding="UTF-8"?><Response><Message>${escapeXml(answer)}</Message></Response>`,
      );
  });
}

/**
 * The form fields of a request Twilio signed for `${publicUrl}${path}`; throws `forbidden` otherwise,
 * and `unsupported_media_type` for a request that is not a form (a body-less one has no parser to refuse it).
 */
function signedParams(deps: TwilioWebhookDeps, request: FastifyRequest, path: string): Record<string, string> {
  if (!/^application\/x-www-form-urlencoded\s*(;|$)/i.test(request.headers['content-type'] ?? '')) {
    throw new RecoupError('unsupported_media_type', 'Send the body as application/x-www-form-urlencoded');
  }
  const params = (request.body ?? {}) as Record<string, string>;
  const signature = request.headers['x-twilio-signature'];
  const url = `${deps.publicUrl}${path}`;
  if (typeof signature !== 'string' || !twilio.validateRequest(deps.authToken, signature, url, params)) {
    throw new RecoupError('forbidden', 'Invalid Twilio signature');
  }
  return params;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&${{ '<': 'lt', '>': 'gt', '&': 'amp', "'": 'apos', '"': 'quot' }[c]};`);
}
