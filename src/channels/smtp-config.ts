import type { z } from 'zod';
import { optionalText, type EnvOf } from '../platform/config-fields.js';
import type { EmailChoice } from './sending-config.js';

/** The SMTP transport's variable. Which email transport runs is EMAIL_TRANSPORT's choice (sending-config.ts); see smtpChosen. */
export const smtpEnv = {
  SMTP_URL: optionalText({
    group: 'SMTP (email)',
    secret: true,
    description:
      'SMTP server that sends email (pooled connections), as `smtp://user:password@host:587` or `smtps://…:465`. Set, email goes out through it unless EMAIL_TRANSPORT says otherwise.',
  }),
};

export type SmtpEnv = EnvOf<typeof smtpEnv>;

/** The SMTP transport's part of the configuration, when it sends email. */
export interface SmtpConfig {
  smtpUrl: string;
}

/** EMAIL_TRANSPORT=smtp, or no EMAIL_TRANSPORT and SMTP_URL is set. */
export function smtpChosen(env: EmailChoice & SmtpEnv): boolean {
  return (env.EMAIL_TRANSPORT ?? (env.SMTP_URL ? 'smtp' : 'outbox')) === 'smtp';
}

export function checkSmtpEnv(env: EmailChoice & SmtpEnv, ctx: z.RefinementCtx): void {
  if (env.EMAIL_TRANSPORT === 'smtp' && !env.SMTP_URL) {
    ctx.addIssue({ code: 'custom', path: ['SMTP_URL'], message: 'required when EMAIL_TRANSPORT=smtp' });
  }
}

export function smtpConfig(env: SmtpEnv): SmtpConfig {
  return { smtpUrl: env.SMTP_URL ?? '' };
}
