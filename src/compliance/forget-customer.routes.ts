import type { FastifyInstance } from 'fastify';
import type { InFlightWait } from '../messages/in-flight.js';
import type { Clock } from '../platform/clock.js';
import type { Db } from '../db/client.js';
import { principalActor } from '../access/audit.js';
import { requireScope, type KeyResolver } from '../access/auth.js';
import { forgetCustomer } from './forget-customer.js';

export interface ForgetCustomerRouteDeps {
  db: Db;
  clock: Clock;
  keys: KeyResolver;
  /** How long answers wait for messages in flight (src/messages/in-flight.ts). Default: the default send lease and accept grace. */
  inFlightWait?: InFlightWait | undefined;
  /** The outbox transports' folder (OUTBOX_DIR): the customer's files there are deleted too. */
  outboxDir?: string | undefined;
}

/**
 * `POST /v1/customers/:id/forget` (scope `admin`): erases the customer's personal data, keeps the
 * anonymised financial records (see forgetCustomer). 200 either way, with `status`
 * `forgotten` or `already_forgotten`; 404 for an unknown customer.
 */
export async function forgetCustomerRoutes(app: FastifyInstance, deps: ForgetCustomerRouteDeps): Promise<void> {
  app.post<{ Params: { id: string } }>(
    '/v1/customers/:id/forget',
    { onRequest: requireScope(deps.keys, 'admin') },
    async (request) => {
      const actor = request.principal ? principalActor(request.principal) : 'api';
      const result = await forgetCustomer(deps, request.params.id, actor);
      return {
        customer_id: result.customerId,
        status: result.status,
        forgotten_at: result.forgottenAt.toISOString(),
        erased: result.erased,
      };
    },
  );
}
