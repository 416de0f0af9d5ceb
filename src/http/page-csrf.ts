import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';

const noncePattern = /^[A-Za-z0-9_-]{22}$/;

/**
 * Double-submit CSRF for the customer's pages (retry links, unsubscribe): a random nonce in an
 * httpOnly cookie scoped to the pages' path, and in each form an HMAC over the page's token and
 * that nonce. A form is valid only with the cookie it was rendered for, on the same token.
 */
export class PageCsrf {
  readonly #options: PageCsrfOptions;

  constructor(options: PageCsrfOptions) {
    this.#options = options;
  }

  /** The form value for `token`, setting the nonce cookie first if the browser has none. */
  issue(request: FastifyRequest, reply: FastifyReply, token: string): string {
    let nonce = request.cookies[this.#options.cookie];
    if (!nonce || !noncePattern.test(nonce)) {
      nonce = randomBytes(16).toString('base64url');
      reply.setCookie(this.#options.cookie, nonce, {
        path: this.#options.path,
        httpOnly: true,
        sameSite: 'lax',
        secure: isHttps(request, this.#options.publicUrl),
      });
    }
    return this.#sign(token, nonce);
  }

  valid(request: FastifyRequest, token: string, submitted: string | undefined): boolean {
    const nonce = request.cookies[this.#options.cookie];
    if (!nonce || !noncePattern.test(nonce) || !submitted) return false;
    const expected = Buffer.from(this.#sign(token, nonce));
    const given = Buffer.from(submitted);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  #sign(token: string, nonce: string): string {
    return createHmac('sha256', this.#options.secret)
      .update(`${this.#options.purpose}${token}.${nonce}`)
      .digest('base64url');
  }
}

export interface PageCsrfOptions {
  secret: string;
  publicUrl: string;
  /** Cookie name, distinct per set of pages. */
  cookie: string;
  /** Cookie path: the pages' prefix (`/r/`, `/u/`). */
  path: string;
  /** Prefix of the signed text, so a value from one set of pages is worthless on another. */
  purpose: string;
}

/** Secure cookies when the customer is on https: directly, or through PUBLIC_URL's host behind a TLS proxy. */
export function isHttps(request: FastifyRequest, publicUrl: string): boolean {
  if (request.protocol === 'https') return true;
  try {
    const url = new URL(publicUrl);
    return url.protocol === 'https:' && request.host === url.host;
  } catch {
    return false;
  }
}
