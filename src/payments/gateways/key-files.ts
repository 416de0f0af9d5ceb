import fs from 'node:fs';
import type { z } from 'zod';

/** A key given as a file path rather than its text (PEM, or the bare base64 Alipay's tools print). */
function looksLikePath(value: string): boolean {
  return /^\.{0,2}\//.test(value) || /\.(pem|crt|cer|key|txt)$/i.test(value);
}

/** The key's text: the value itself (`\n` escapes accepted), or the file it names. */
export function pemOrFile(value: string): string {
  if (value.includes('-----BEGIN') || !looksLikePath(value)) return value.replace(/\\n/g, '\n');
  return fs.readFileSync(value, 'utf8');
}

/** An issue for a key variable that names a file that does not exist. */
export function checkKeyFile(env: Record<string, unknown>, key: string, ctx: z.RefinementCtx): void {
  const value = env[key];
  if (typeof value === 'string' && !value.includes('-----BEGIN') && looksLikePath(value) && !fs.existsSync(value)) {
    ctx.addIssue({ code: 'custom', path: [key], message: `no file ${value}` });
  }
}
