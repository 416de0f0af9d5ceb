import { randomBytes } from 'node:crypto';
import { storableEmail } from '../domain/addresses.js';
import { audit } from '../access/audit.js';
import type { EmailSender } from '../channels/email-sender.js';
import { ProviderError } from '../channels/provider-error.js';
import type { SmsSender } from '../channels/sms-sender.js';
import type { Db } from '../db/client.js';
import type { Channel, FailureCategory } from '../domain/vocabulary.js';
import { RecoupError, validationError, type Issue } from '../platform/errors.js';
import type { TemplateRenderer } from '../messages/template-renderer.js';
import { sampleMessageContext } from './cadence-checks.js';
import { cadenceSubject, type CadenceChange, type StoredCadenceVersion } from './cadence-versions.js';

export interface TestSendDeps {
  db: Db;
  /** The transports the service sends customer messages through, so the test proves them too. */
  sms: SmsSender;
  email: EmailSender;
  renderer: Pick<TemplateRenderer, 'renderSms' | 'renderEmail'>;
  publicUrl: string;
  shopName: string;
}

export interface TestSendRequest {
  version: StoredCadenceVersion;
  step: number;
  /** An ops address: E.164 number (SMS) or email address (email). The channel follows from it. */
  to: string;
  locale: string;
  failureCategory?: FailureCategory | undefined;
}

export interface TestSendResult {
  providerId: string;
  channel: Channel;
  /** Id given to the provider (`test_…`): file name in the outbox, part of the email's Message-ID. */
  messageId: string;
  locale: string;
}

const e164 = /^\+[1-9]\d{6,14}$/;

/** `sms` for an E.164 number, `email` for an email address (internationalised ones too), else undefined. */
export function channelForAddress(to: string): Channel | undefined {
  if (e164.test(to)) return 'sms';
  return storableEmail(to) ? 'email' : undefined;
}

/**
 * Sends one step of a cadence version, rendered for a sample order, to an ops address through the
 * real transport. It is not a customer message: nothing is written to `messages`, the retry link is
 * a placeholder, and the send (or the provider's refusal) is recorded in the audit log as
 * `cadence.test_sent`. A permanent refusal is a `validation` error at `to`; a transient or unknown
 * outcome is `unavailable`.
 */
export async function sendTestStep(
  deps: TestSendDeps,
  request: TestSendRequest,
  change: CadenceChange,
): Promise<TestSendResult> {
  const { cadence } = request.version;
  const channel = channelForAddress(request.to);
  const issues: Issue[] = [];
  if (!channel)
    issues.push({ path: 'to', message: 'must be an E.164 phone number (+8613800138000) or an email address' });
  const step = cadence.steps[request.step];
  if (!step) {
    issues.push({
      path: 'step',
      message: `must be a step of ${cadence.name} v${request.version.version}: 0 to ${cadence.steps.length - 1}`,
    });
  }
  if (!channel || !step || issues.length > 0) throw validationError(issues);

  const context = sampleMessageContext({
    publicUrl: deps.publicUrl,
    shopName: deps.shopName,
    currency: cadence.match.currencies.find((c) => c !== 'any'),
    failureCategory: request.failureCategory,
    offerMethods: step.offerMethods,
  });
  const messageId = `test_${randomBytes(12).toString('hex')}`;
  const rendered =
    channel === 'sms'
      ? deps.renderer.renderSms(step.template, request.locale, context)
      : deps.renderer.renderEmail(step.template, request.locale, context);

  const record = {
    version: request.version.version,
    step: request.step,
    template: step.template,
    channel,
    to: request.to,
    locale: rendered.locale,
    message_id: messageId,
  };
  try {
    const receipt =
      'body' in rendered
        ? await deps.sms.send({ messageId, to: request.to, body: rendered.body })
        : await deps.email.send({
            messageId,
            to: request.to,
            subject: rendered.subject,
            html: rendered.html,
            text: rendered.text,
          });
    await audit(deps.db, {
      actor: change.actor,
      action: 'cadence.test_sent',
      subject: cadenceSubject(cadence.name),
      after: { ...record, provider_id: receipt.providerId },
      at: change.at,
    });
    return { providerId: receipt.providerId, channel, messageId, locale: rendered.locale };
  } catch (err) {
    if (!(err instanceof ProviderError)) throw err;
    await audit(deps.db, {
      actor: change.actor,
      action: 'cadence.test_sent',
      subject: cadenceSubject(cadence.name),
      after: { ...record, error: { outcome: err.outcome, code: err.providerCode } },
      at: change.at,
    });
    if (err.outcome === 'failed') {
      throw validationError([{ path: 'to', message: `the provider refused it (${err.providerCode}): ${err.message}` }]);
    }
    throw new RecoupError('unavailable', `The ${channel} provider did not take the message (${err.providerCode})`, {
      cause: err,
    });
  }
}
