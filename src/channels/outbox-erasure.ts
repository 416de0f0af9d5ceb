import { opendir, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import addressparser from 'nodemailer/lib/addressparser';
import { RecoupError } from '../platform/errors.js';

/** Which outbox files to erase: those of these messages, and those addressed to one of a person's addresses. */
export interface OutboxErasure {
  /** recoup's message ids; their files are named after them and go without being opened. */
  messageIds: ReadonlySet<string>;
  /**
   * Whether an addressee (an SMS file's `to`, an address of an email's To or Cc) is the person's.
   * Absent: only the files of `messageIds` go, and no file is opened.
   */
  isAddressee?: ((channel: 'sms' | 'email', address: string) => boolean) | undefined;
}

// `<messageId>.sms.json` and `<messageId>.eml` as the outbox senders write them, and the
// `.<messageId><suffix>.<hex>.tmp` a write cut short by a crash leaves behind.
const outboxName = /^(?!\.)(?<stem>.+?)(?<suffix>\.sms\.json|\.eml)$/;
const temporaryName = /^\.(?<stem>.+?)(?<suffix>\.sms\.json|\.eml)\.[0-9a-f]{12}\.tmp$/;

/**
 * Deletes the files of `dir` that `erasure` designates and returns how many it deleted. The
 * folder is read as it is listed, so an outbox of any size takes memory for one file at a time.
 * No folder: nothing to erase. A file that cannot be read or parsed cannot be shown to be the
 * person's and stays (unless its name is one of `messageIds`); a file that is the person's but
 * cannot be deleted is a RecoupError `unavailable`, so the caller does not report an erasure
 * that did not happen.
 */
export async function eraseOutboxFiles(dir: string, erasure: OutboxErasure): Promise<number> {
  let folder;
  try {
    folder = await opendir(dir);
  } catch (error) {
    if (isCode(error, 'ENOENT', 'ENOTDIR')) return 0;
    throw new RecoupError('unavailable', 'The outbox folder cannot be read', { cause: error });
  }
  let erased = 0;
  for await (const entry of folder) {
    if (!entry.isFile()) continue;
    const match = outboxName.exec(entry.name) ?? temporaryName.exec(entry.name);
    const stem = match?.groups?.stem;
    if (!stem) continue;
    const file = path.join(dir, entry.name);
    const channel = match.groups?.suffix === '.eml' ? 'email' : 'sms';
    const isAddressee = erasure.isAddressee;
    const theirs =
      erasure.messageIds.has(stem) ||
      (isAddressee !== undefined && (await addressees(file, channel)).some((a) => isAddressee(channel, a)));
    if (theirs && (await remove(file))) erased += 1;
  }
  return erased;
}

/** Who the file is addressed to; none when it cannot be read or parsed. */
async function addressees(file: string, channel: 'sms' | 'email'): Promise<string[]> {
  let content: string;
  try {
    content = await readFile(file, 'utf8');
  } catch {
    return [];
  }
  if (channel === 'email') return emailRecipients(content);
  try {
    const { to } = JSON.parse(content) as { to?: unknown };
    return typeof to === 'string' ? [to] : [];
  } catch {
    return [];
  }
}

/** The addresses of the To and Cc headers of an RFC 5322 message (folded lines unfolded). */
function emailRecipients(raw: string): string[] {
  const end = raw.search(/\r?\n\r?\n/);
  const header = (end < 0 ? raw : raw.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ');
  return header
    .split(/\r?\n/)
    .filter((line) => /^(to|cc):/i.test(line))
    .flatMap((line) => addressparser(line.slice(line.indexOf(':') + 1), { flatten: true }).map((a) => a.address));
}

/** True when this call deleted the file; false when it was gone already (a concurrent erasure). */
async function remove(file: string): Promise<boolean> {
  try {
    await unlink(file);
    return true;
  } catch (error) {
    if (isCode(error, 'ENOENT')) return false;
    throw new RecoupError('unavailable', `The outbox file ${path.basename(file)} cannot be deleted`, { cause: error });
  }
}

function isCode(error: unknown, ...codes: string[]): boolean {
  return codes.includes((error as NodeJS.ErrnoException).code ?? '');
}
