import http from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { RecoupError } from '../platform/errors.js';
import { randomHex } from '../platform/random.js';
import { problemOf } from './problem.js';

/** What Node tells of a request it could not parse: its parser's code and the bytes it was reading. */
interface ClientError extends Error {
  code?: string;
  rawPacket?: unknown;
}

/** A request line: the method, one space, the target; Node's overflow starts its packet here. */
const requestLineStart = /^[A-Z]+ /;

/**
 * Answers requests Node refuses before Fastify sees them (a URL or headers past Node's header
 * limit, a request not received in time, bytes that are not HTTP) with a problem document, as
 * every other refusal, instead of Fastify's own JSON. `headers` (the transport headers) are added.
 */
export function clientErrorHandler(
  logger: FastifyBaseLogger,
  headers: Record<string, string>,
): (err: Error, socket: Socket) => void {
  return (err: ClientError, socket) => {
    // A reset connection has nobody to answer.
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const error = recoupErrorOf(err);
    const problem = problemOf(error, `req_${randomHex(6)}`);
    logger.debug({ err, requestId: problem.request_id }, 'client error');
    if (socket.writable) {
      const body = JSON.stringify(problem);
      const head = {
        'content-type': 'application/problem+json; charset=utf-8',
        'content-length': String(Buffer.byteLength(body)),
        connection: 'close',
        ...headers,
      };
      const lines = Object.entries(head).map(([name, value]) => `${name}: ${value}\r\n`);
      socket.write(`HTTP/1.1 ${problem.status} ${http.STATUS_CODES[problem.status]}\r\n${lines.join('')}\r\n${body}`);
    }
    socket.destroy(err);
  };
}

function recoupErrorOf(err: ClientError): RecoupError {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return new RecoupError('request_timeout', 'The request was not fully received in time');
  }
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    return requestLineOverflows(err.rawPacket)
      ? new RecoupError('uri_too_long', `The URL is longer than ${http.maxHeaderSize} bytes`)
      : new RecoupError('headers_too_large', `The request's headers are larger than ${http.maxHeaderSize} bytes`);
  }
  return new RecoupError('validation', 'The request is not valid HTTP', {
    issues: [{ path: '(request)', message: 'not valid HTTP/1.1' }],
  });
}

/**
 * Whether the request line alone passes Node's header limit: then the URL is what is too long
 * (414), not the headers (431). Node hands over the packet it was reading when the limit was
 * passed; when that packet does not start at the request line, it is read as the headers' fault.
 */
function requestLineOverflows(packet: unknown): boolean {
  if (!Buffer.isBuffer(packet) || !requestLineStart.test(packet.subarray(0, 16).toString('latin1'))) return false;
  const end = packet.indexOf('\r\n');
  return end === -1 || end > http.maxHeaderSize;
}
