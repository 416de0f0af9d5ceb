/**
 * Every kind of event recoup tells the shop about, with what it means. The triggers of
 * migrations/0009_webhooks.sql and appendOutboundEvents write them; docs/webhooks.md and the
 * OpenAPI document describe them from here.
 */
export const outboundEventTypes = {
  'recovery.started': 'A failed or abandoned payment started a recovery for the order.',
  'message.sent': 'A provider accepted a reminder (one per reminder: only sent to endpoints that ask for it).',
  'message.failed':
    'A provider refused a reminder for good (one per reminder: only sent to endpoints that ask for it).',
  'payment.succeeded':
    'The order was paid: through a retry link (`collected_by: recoup`, money in the gateway account the shop has not been told about otherwise) or as the shop reported (`collected_by: shop`).',
  'recovery.ended':
    'The recovery ended: `recovered`, `exhausted` (expired), `stopped` or `cancelled`, with the reason.',
  'recovery.resumed':
    'Ops resumed a stopped recovery: its reminders go on, and a later `recovery.ended` ends it again.',
  'refund.succeeded': 'A refund went through: a duplicate payment refunded automatically, or one ops asked for.',
  'customer.opted_out': 'The customer opted out of a channel (a STOP reply, an unsubscribe, ops).',
  'customer.opted_in': 'The customer opted back in to a channel (a START reply, ops).',
  'reminder.after_payment':
    'A provider accepted a reminder after the order was paid or cancelled: the one failure the send protocol cannot rule out. The shop may want to apologise.',
} as const;

export type OutboundEventType = keyof typeof outboundEventTypes;

export const allOutboundEventTypes = Object.keys(outboundEventTypes) as OutboundEventType[];

/** One per reminder: delivered only to endpoints that list them. */
export const highVolumeEventTypes: readonly OutboundEventType[] = ['message.sent', 'message.failed'];

/** What an endpoint registered without `events` receives. */
export const defaultEventTypes = allOutboundEventTypes.filter((type) => !highVolumeEventTypes.includes(type));

export function isOutboundEventType(type: string): type is OutboundEventType {
  return Object.hasOwn(outboundEventTypes, type);
}
