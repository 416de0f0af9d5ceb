import { describe, expect, it } from 'vitest';
import { RecoupError } from '../../src/platform/errors.js';
import { parseEvent } from '../../src/domain/event-schema.js';
import { makeEvent } from '../helpers/service.js';

function refusal(body: unknown): RecoupError {
  try {
    parseEvent(body);
  } catch (err) {
    if (err instanceof RecoupError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('parseEvent and text that is not Unicode', () => {
  it('refuses a lone surrogate by field (Postgres would refuse it as text and as jsonb)', () => {
    const base = makeEvent();
    const error = refusal({
      ...base,
      id: '\ud800',
      order: { ...base.order, customer: { ...base.order.customer, name: 'Li \udc00Lei' } },
    });
    expect(error.code).toBe('validation');
    expect(error.issues.map((i) => i.path).sort()).toEqual(['id', 'order.customer.name']);
  });

  it('refuses a NUL character by field (Postgres text cannot hold U+0000)', () => {
    const base = makeEvent();
    const error = refusal({
      ...base,
      id: '\u0000',
      order: { ...base.order, description: 'gift\u0000', customer: { ...base.order.customer, name: 'Li Lei' } },
    });
    expect(error.code).toBe('validation');
    expect(error.issues.map((i) => i.path).sort()).toEqual(['id', 'order.description']);
    expect(error.issues[0]?.message).toBe('must be valid Unicode text without NUL characters');
  });

  it('takes surrogate pairs (emoji, supplementary CJK) as they are', () => {
    const base = makeEvent();
    const event = parseEvent({
      ...base,
      order: { ...base.order, description: '🎁 礼物 𠀀', customer: { ...base.order.customer, name: '李雷 😀' } },
    });
    expect(event.order?.description).toBe('🎁 礼物 𠀀');
    expect(event.order?.customer.name).toBe('李雷 😀');
  });
});

describe('parseEvent and customer addresses', () => {
  it('takes an email trimmed and lower-cased, the form suppressions compare', () => {
    const base = makeEvent();
    const event = parseEvent({
      ...base,
      order: { ...base.order, customer: { ...base.order.customer, email: ' Li@Example.COM ' } },
    });
    expect(event.order?.customer?.email).toBe('li@example.com');
  });

  it('still refuses what is not an email address once trimmed', () => {
    const base = makeEvent();
    const error = refusal({
      ...base,
      order: { ...base.order, customer: { ...base.order.customer, email: 'Li @Example.COM' } },
    });
    expect(error.issues.map((i) => i.path)).toEqual(['order.customer.email']);
  });
});
