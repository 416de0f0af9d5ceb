import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { systemClock, type Clock } from '../platform/clock.js';
import { ProviderError } from './provider-error.js';
import type { SendReceipt, SmsMessage, SmsSender } from './sms-sender.js';

export interface OutboxSmsSenderOptions {
  /** Folder the `<messageId>.sms.json` files go to; created on first send. */
  dir: string;
  /** Source of `created_at` and `acceptedAt`. Default: the system clock. */
  clock?: Clock;
}

/** What an outbox SMS file holds. Snake case, like the rest of recoup's JSON on disk and on the wire. */
export interface OutboxSmsFile {
  to: string;
  body: string;
  message_id: string;
  status_callback_url: string | null;
  created_at: string;
}

/**
 * The "local" SMS transport: every message becomes `<dir>/<messageId>.sms.json`.
 * Selected by config like any other transport, for development, demos and tests.
 * Sending the same message id again replaces its file, so a re-send never shows up twice.
 */
export class OutboxSmsSender implements SmsSender {
  readonly transport = 'outbox';
  readonly #dir: string;
  readonly #clock: Clock;
  #closed = false;

  constructor(options: OutboxSmsSenderOptions) {
    this.#dir = options.dir;
    this.#clock = options.clock ?? systemClock;
  }

  async send(message: SmsMessage): Promise<SendReceipt> {
    if (this.#closed) throw senderClosed();
    const acceptedAt = this.#clock.now();
    const file: OutboxSmsFile = {
      to: message.to,
      body: message.body,
      message_id: message.messageId,
      status_callback_url: message.statusCallbackUrl ?? null,
      created_at: acceptedAt.toISOString(),
    };
    await writeOutboxFile(this.#dir, message.messageId, '.sms.json', `${JSON.stringify(file, null, 2)}\n`);
    return { providerId: `outbox-${message.messageId}`, acceptedAt };
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}

/** Message ids become file names: no separators, no leading dot, nothing a shell or another OS would trip on. */
const safeFileStem = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}$/;

/**
 * Writes `<dir>/<messageId><suffix>` atomically: a reader sees the whole file or none of it.
 * The temporary name is unique per call, so two concurrent sends of one message cannot
 * interleave; the later rename wins. Shared by the outbox senders.
 */
export async function writeOutboxFile(
  dir: string,
  messageId: string,
  suffix: string,
  content: string | Uint8Array,
): Promise<string> {
  if (!safeFileStem.test(messageId)) {
    throw new ProviderError(
      'failed',
      'INVALID_MESSAGE_ID',
      `message id ${JSON.stringify(messageId)} is not a safe file name`,
    );
  }
  const target = path.join(dir, `${messageId}${suffix}`);
  const temporary = path.join(dir, `.${messageId}${suffix}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(temporary, content);
    await rename(temporary, target);
    return target;
  } catch (error) {
    await rm(temporary, { force: true }).catch(() => undefined);
    // Nothing was written under the final name, so trying again later is safe.
    const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
    throw new ProviderError('retry', code, `could not write outbox file ${target}`, { cause: error });
  }
}

/** A sender that was closed refuses work; the message certainly did not go out, so it may be sent later. */
export function senderClosed(): ProviderError {
  return new ProviderError('retry', 'CLOSED', 'the sender is closed');
}
