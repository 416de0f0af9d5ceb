import formbody from '@fastify/formbody';
import type { FastifyInstance } from 'fastify';
import twilio from 'twilio';
import { twilioBadAddress } from '../channels/twilio-sms-sender.js';
import type { Clock } from '../clock.js';
import type { Db } from '../db/client.js';
import { RecoupError } from '../errors.js';
import { applyDeliveryUpdate } from '../messages/delivery-status.js';

export interface TwilioWebhookDeps {
  db: Db;
  clock: Clock;
  /** Twilio's auth token signs every callback. */
  authToken: string;
  publicUrl: string;
}

/**
 * Twilio delivery callbacks. The signature is checked against the exact public URL
 * Twilio was given (PUBLIC_URL + path), so it holds behind proxies that rewrite hosts.
 */
export async function twilioWebhookRoutes(app: FastifyInstance, deps: TwilioWebhookDeps): Promise<void> {
  await app.register(formbody);

  app.post('/webhooks/twilio/status', async (request, reply) => {
    const params = (request.body ?? {}) as Record<string, string>;
    const signature = request.headers['x-twilio-signature'];
    const url = `${deps.publicUrl}/webhooks/twilio/status`;
    if (typeof signature !== 'string' || !twilio.validateRequest(deps.authToken, signature, url, params)) {
      throw new RecoupError('forbidden', 'Invalid Twilio signature');
    }
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
        providerId: sid,
        providerStatus: status,
        errorCode: params.ErrorCode,
        badAddress: code === undefined || Number.isNaN(code) ? undefined : twilioBadAddress(code),
      },
      deps.clock.now(),
    );
    return reply.status(204).send();
  });
}
