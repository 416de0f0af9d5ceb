import type { Channel, FailureCategory, PaymentMethod } from '../domain/vocabulary.js';
import { channels, paymentMethods } from '../domain/vocabulary.js';
import type { OrderItem } from '../db/schema.js';
import type { Issue } from '../platform/errors.js';
import type { MessageContext } from '../messages/message-context.js';
import type { TemplateRenderer } from '../messages/template-renderer.js';
import type { CadenceValidationOptions } from './parse-cadence.js';
import { previewLocales, previewRetryUrl, renderBoth } from './preview.js';

/** The payment methods the configured gateways take in a currency (payments' PaymentGateways). */
export interface OfferedMethods {
  methodsFor(currency: string): PaymentMethod[];
}

/**
 * Checks that need more than the cadence file: whether each step's template can be sent on the
 * channels the step may use (rendered with a sample order, as the dispatcher would render it), and
 * whether the configured payment gateways take the methods a step offers. Used for saves through
 * the API; `recoup cadences apply` keeps the file-only checks.
 */
export interface CadenceCheckDeps {
  renderer: Pick<TemplateRenderer, 'has' | 'locales' | 'renderSms' | 'renderEmail'>;
  /** Undefined: offered methods are not checked (no payments configured in this process). */
  gateways?: OfferedMethods | undefined;
  publicUrl: string;
  shopName: string;
  /** Every template must exist in these. Default en and zh-CN. */
  requiredLocales?: readonly string[];
}

/** Validation options for a cadence saved through the API: templates, locales and the checks below. */
export function cadenceValidationOptions(deps: CadenceCheckDeps): CadenceValidationOptions {
  return {
    templates: deps.renderer,
    requiredLocales: [...(deps.requiredLocales ?? previewLocales)],
    extraIssues: (input) => [...channelIssues(input, deps), ...offeredMethodIssues(input, deps)],
  };
}

/**
 * The sample order's cart (12900 minor units in all). No pictures: a made-up image address would
 * show as a broken image in a test send.
 */
export const sampleItems: readonly OrderItem[] = [
  { name: 'West Lake Longjing tea gift box', quantity: 2, amount: 9800 },
  { name: 'Celadon tea cup', quantity: 1, amount: 3100 },
];

/** An order to render templates against when there is no real one (validation, test sends). */
export function sampleMessageContext(options: {
  publicUrl: string;
  shopName: string;
  currency?: string;
  failureCategory?: FailureCategory;
  offerMethods?: PaymentMethod[];
}): MessageContext {
  return {
    shop: { name: options.shopName },
    customer: { name: 'Li Lei' },
    order: {
      id: 'ord_SAMPLE',
      description: '2 items',
      amount: 12900,
      currency: options.currency ?? 'CNY',
      items: sampleItems,
    },
    failureCategory: options.failureCategory ?? 'insufficient_funds',
    offerMethods: options.offerMethods ?? [...paymentMethods],
    retryUrl: previewRetryUrl(options.publicUrl),
  };
}

const channelNames: Record<Channel, string> = { sms: 'SMS', email: 'email' };

/**
 * A step can use a channel when its template renders a non-empty message for it in every required
 * locale: an SMS body, or an email subject and text. The step's own channel is reported at
 * `steps[i].channel`; with `switch_channel_on_failure` (default on) the step may also go out on the
 * other channel, reported at `steps[i].template`. A template that fails to render is reported once.
 */
function channelIssues(input: Record<string, unknown>, deps: CadenceCheckDeps): Issue[] {
  const issues: Issue[] = [];
  const switching = input.switch_channel_on_failure !== false;
  const locales = deps.requiredLocales ?? previewLocales;
  stepsOf(input).forEach((step, index) => {
    const channel = channels.find((c) => c === step.channel);
    const template = step.template;
    if (!channel || typeof template !== 'string' || !deps.renderer.has(template)) return;
    const context = sampleMessageContext({ publicUrl: deps.publicUrl, shopName: deps.shopName });
    const empty: Record<Channel, string[]> = { sms: [], email: [] };
    for (const locale of locales.filter((l) => deps.renderer.locales(template).includes(l))) {
      const rendered = renderBoth(deps, template, locale, context, `steps[${index}].template`, issues);
      if (!rendered) return;
      if (rendered.sms.body === '') empty.sms.push(locale);
      if (rendered.email.subject === '' || rendered.email.text.trim() === '') empty.email.push(locale);
    }
    const other: Channel = channel === 'sms' ? 'email' : 'sms';
    if (empty[channel].length > 0) {
      issues.push({
        path: `steps[${index}].channel`,
        message: `template "${template}" cannot be sent by ${channelNames[channel]}: ${partsOf(channel)} empty in ${empty[channel].join(', ')}`,
      });
    }
    if (switching && empty[other].length > 0) {
      issues.push({
        path: `steps[${index}].template`,
        message:
          `template "${template}" has no ${channelNames[other]} (${partsOf(other)} empty in ${empty[other].join(', ')}), ` +
          `but switch_channel_on_failure would send this step by ${channelNames[other]}; ` +
          `set switch_channel_on_failure: false or use a template with both`,
      });
    }
  });
  return issues;
}

function partsOf(channel: Channel): string {
  return channel === 'sms' ? 'its sms part renders' : 'its subject or text part renders';
}

/**
 * Each listed `offer_methods` entry must be taken by some configured gateway in at least one
 * currency the cadence matches (`any`: every ISO 4217 currency), or the retry page could never show
 * it. Steps without `offer_methods` get the defaults, which the retry page filters per currency.
 */
function offeredMethodIssues(input: Record<string, unknown>, deps: CadenceCheckDeps): Issue[] {
  const gateways = deps.gateways;
  if (!gateways) return [];
  const listed = isRecord(input.match) && Array.isArray(input.match.currencies) ? input.match.currencies : undefined;
  const named = (listed ?? ['any']).filter((c): c is string => typeof c === 'string');
  const currencies = named.includes('any') ? Intl.supportedValuesOf('currency') : named;
  const supported = new Set(currencies.flatMap((currency) => gateways.methodsFor(currency)));

  const issues: Issue[] = [];
  stepsOf(input).forEach((step, index) => {
    if (!Array.isArray(step.offer_methods)) return;
    (step.offer_methods as unknown[]).forEach((method, j) => {
      const known = paymentMethods.find((m) => m === method);
      if (!known || supported.has(known)) return;
      issues.push({
        path: `steps[${index}].offer_methods[${j}]`,
        message: named.includes('any')
          ? `no configured payment gateway takes ${known} in any currency`
          : `no configured payment gateway takes ${known} in ${named.join(', ')}; offer another method or match other currencies`,
      });
    });
  });
  return issues;
}

function stepsOf(input: Record<string, unknown>): Array<Record<string, unknown>> {
  return Array.isArray(input.steps) ? (input.steps as unknown[]).map((s) => (isRecord(s) ? s : {})) : [];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
