import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

/** A delivery as the shop received it: verified (or not) with the `standardwebhooks` library. */
export interface Received {
  id: string;
  timestamp: string;
  signature: string;
  body: string;
  /** The parsed payload when the signature verified with the current secret; undefined otherwise. */
  verified: { type: string; timestamp: string; data: Record<string, unknown> } | undefined;
  /** What the receiver answered. */
  answered: number;
  at: number;
}

/**
 * A shop's webhook endpoint on loopback: verifies each delivery as a shop would, records it, and
 * answers what `answer` says (200 unless told otherwise).
 */
export interface ShopReceiver {
  url: string;
  received: Received[];
  /** Secrets to verify with (set after registering the endpoint). */
  secrets: string[];
  answer: (delivery: Received) => number;
  /** Verified events, once each by webhook-id, in the order they first arrived. */
  events(): Array<{ id: string; type: string; data: Record<string, unknown> }>;
  close(): Promise<void>;
}

export async function startShopReceiver(): Promise<ShopReceiver> {
  const received: Received[] = [];
  const receiver: ShopReceiver = {
    url: '',
    received,
    secrets: [],
    answer: () => 200,
    events() {
      const seen = new Set<string>();
      const out: Array<{ id: string; type: string; data: Record<string, unknown> }> = [];
      for (const r of received) {
        if (!r.verified || seen.has(r.id)) continue;
        seen.add(r.id);
        out.push({ id: r.id, type: r.verified.type, data: r.verified.data });
      }
      return out;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const headers = {
        'webhook-id': String(request.headers['webhook-id'] ?? ''),
        'webhook-timestamp': String(request.headers['webhook-timestamp'] ?? ''),
        'webhook-signature': String(request.headers['webhook-signature'] ?? ''),
      };
      let verified: Received['verified'];
      for (const secret of receiver.secrets) {
        try {
          verified = new Webhook(secret).verify(body, headers) as Received['verified'];
          break;
        } catch {
          // Not this secret (or not a valid delivery at all).
        }
      }
      const delivery: Received = {
        id: headers['webhook-id'],
        timestamp: headers['webhook-timestamp'],
        signature: headers['webhook-signature'],
        body,
        verified,
        answered: 0,
        at: Date.now(),
      };
      delivery.answered = verified ? receiver.answer(delivery) : 401;
      received.push(delivery);
      response.writeHead(delivery.answered, { 'content-type': 'text/plain' });
      response.end(delivery.answered < 300 ? 'ok' : 'not now');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/recoup`;
  return receiver;
}
