import type { FailureCategory, PaymentMethod } from '../../../domain/vocabulary.js';
import type { GatewayPaymentStatus } from '../../payment-gateway.js';

/** A sandbox payment: everything its hosted page and its webhooks need. */
export interface SandboxPayment {
  id: string;
  idempotencyKey: string;
  orderId: string;
  attemptId: string;
  attemptNumber: number;
  amount: number;
  currency: string;
  method: PaymentMethod;
  description: string;
  locale: string;
  returnUrl: string;
  expiresAt: Date;
  device: 'desktop' | 'mobile' | undefined;
  status: GatewayPaymentStatus;
  failureCode: string | undefined;
  failureCategory: FailureCategory | undefined;
  createdAt: Date;
  paidAt: Date | undefined;
  /** When it became failed or cancelled. */
  closedAt: Date | undefined;
  amountRefunded: number;
}

export interface SandboxRefund {
  id: string;
  refundKey: string;
  paymentId: string;
  amount: number;
  currency: string;
  reason: string;
  status: 'succeeded';
  createdAt: Date;
}

/**
 * Where the sandbox keeps its state: the narrow set of calls it makes. The default,
 * InMemorySandboxStore, forgets everything on restart (open sandbox pages then answer 404),
 * which is fine for demos and tests; an integrator who wants sandbox payments to survive
 * restarts implements this over a table.
 */
export interface SandboxStore {
  getPayment(id: string): Promise<SandboxPayment | undefined>;
  getPaymentByKey(idempotencyKey: string): Promise<SandboxPayment | undefined>;
  /** Inserts or replaces by id. */
  savePayment(payment: SandboxPayment): Promise<void>;
  getRefundByKey(refundKey: string): Promise<SandboxRefund | undefined>;
  saveRefund(refund: SandboxRefund): Promise<void>;
}

export class InMemorySandboxStore implements SandboxStore {
  readonly #payments = new Map<string, SandboxPayment>();
  readonly #paymentIdsByKey = new Map<string, string>();
  readonly #refundsByKey = new Map<string, SandboxRefund>();

  async getPayment(id: string): Promise<SandboxPayment | undefined> {
    const payment = this.#payments.get(id);
    // Copies in and out, like a database would: callers cannot change stored state by accident.
    return payment && structuredClone(payment);
  }

  async getPaymentByKey(idempotencyKey: string): Promise<SandboxPayment | undefined> {
    const id = this.#paymentIdsByKey.get(idempotencyKey);
    return id === undefined ? undefined : this.getPayment(id);
  }

  async savePayment(payment: SandboxPayment): Promise<void> {
    this.#payments.set(payment.id, structuredClone(payment));
    this.#paymentIdsByKey.set(payment.idempotencyKey, payment.id);
  }

  async getRefundByKey(refundKey: string): Promise<SandboxRefund | undefined> {
    const refund = this.#refundsByKey.get(refundKey);
    return refund && structuredClone(refund);
  }

  async saveRefund(refund: SandboxRefund): Promise<void> {
    this.#refundsByKey.set(refund.refundKey, structuredClone(refund));
  }
}
