import type { GatewayName } from './payments-config.js';
import { paymentMethods, type PaymentMethod } from '../domain/vocabulary.js';
import type { PaymentGateway } from './payment-gateway.js';

/** The configured gateways, and which one takes each payment method. */
export class PaymentGateways {
  readonly #byName: Map<string, PaymentGateway>;
  readonly #forMethod: Record<PaymentMethod, GatewayName>;

  constructor(gateways: PaymentGateway[], forMethod: Record<PaymentMethod, GatewayName>) {
    this.#byName = new Map(gateways.map((g) => [g.name, g]));
    this.#forMethod = forMethod;
  }

  byName(name: string): PaymentGateway | undefined {
    return this.#byName.get(name);
  }

  /** The gateway configured for `method`, if it can take that method in `currency`. */
  forMethod(method: PaymentMethod, currency: string): PaymentGateway | undefined {
    const gateway = this.#byName.get(this.#forMethod[method]);
    return gateway?.supports(method, currency) ? gateway : undefined;
  }

  /** Methods some configured gateway can take in `currency`, in recoup's order. */
  methodsFor(currency: string): PaymentMethod[] {
    return paymentMethods.filter((m) => this.forMethod(m, currency) !== undefined);
  }

  all(): PaymentGateway[] {
    return [...this.#byName.values()];
  }
}
