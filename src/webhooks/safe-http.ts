/**
 * Outbound webhook delivery to URLs a shop registers. A registered URL is untrusted input: it can
 * name, or resolve to, an address inside our own network (the cloud metadata service, the database,
 * an admin port). So the address check sits inside the `lookup` the socket itself uses: the address
 * that was checked is the address connected to, and a name that answers differently a second time
 * (DNS rebinding) gains nothing.
 */
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import ipaddr from 'ipaddr.js';

export interface PostOptions {
  url: string;
  headers: Record<string, string>;
  body: string;
  /** One deadline for connecting, the response headers and the body: a slow receiver must not hold a worker. */
  timeoutMs: number;
  /** For local development and tests, where the receiver runs on this machine. */
  allowPrivateNetworks: boolean;
  /** Injected for tests; defaults to dns.lookup with {all:true}. */
  lookup?: (hostname: string) => Promise<Array<{ address: string; family: 4 | 6 }>>;
}

export type PostResult =
  | { kind: 'answered'; status: number; latencyMs: number; excerpt: string }
  | {
      kind: 'failed';
      reason: 'timeout' | 'connection' | 'refused_address' | 'bad_url';
      detail: string;
      latencyMs: number;
    };

/** Enough of a receiver's answer to show why it failed, without holding a large body in memory. */
const maxBodyBytes = 64 * 1024;
const excerptChars = 200;
/** Room for `excerptChars` characters of up to four UTF-8 bytes each. */
const keptBytes = excerptChars * 4;

/** Checks a URL given at registration: absolute http: or https:, a host, no credentials (user:pass@). Returns an error message or undefined. */
export function urlProblem(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return 'is not an absolute URL';
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return 'must use http or https';
  if (parsed.hostname === '') return 'has no host';
  // Credentials in the URL would end up in logs and in the shop's console.
  if (parsed.username !== '' || parsed.password !== '') return 'must not carry credentials (user:pass@)';
  return undefined;
}

const nonPublicV4 = new Set([
  'unspecified',
  'broadcast',
  'multicast',
  'linkLocal',
  'loopback',
  'carrierGradeNat',
  'private',
  'reserved',
]);

/**
 * True when an IP literal is loopback, private (RFC1918), link-local, unique-local, CGNAT 100.64/10,
 * unspecified, multicast, broadcast, reserved (documentation ranges such as 192.0.2.0/24 included),
 * or an IPv4-mapped/NAT64/6to4 form of one of those. IPv6 counts as public only inside global unicast
 * 2000::/3 with no special purpose; Teredo is refused outright, since its embedded client address is
 * obfuscated and reached through a relay. Anything that does not parse counts as non-public.
 */
export function isNonPublicAddress(ip: string): boolean {
  if (!ipaddr.isValid(ip)) return true;
  const address = ipaddr.parse(ip);
  if (address.kind() === 'ipv4') return nonPublicV4.has(address.range());
  const v6 = address as ipaddr.IPv6;
  const parts = v6.parts;
  const v4 = (high: number, low: number) =>
    ipaddr.fromByteArray([high >> 8, high & 0xff, low >> 8, low & 0xff]).toString();
  switch (v6.range()) {
    case 'ipv4Mapped':
    case 'rfc6145':
      return isNonPublicAddress(v4(parts[6] ?? 0, parts[7] ?? 0));
    case 'rfc6052':
      // 64:ff9b::/96 embeds an IPv4 address; 64:ff9b:1::/48 is for a local NAT64 only.
      return parts[2] !== 0 || isNonPublicAddress(v4(parts[6] ?? 0, parts[7] ?? 0));
    case '6to4':
      return isNonPublicAddress(v4(parts[1] ?? 0, parts[2] ?? 0));
    case 'unicast':
      return ((parts[0] ?? 0) & 0xe000) !== 0x2000;
    default:
      return true;
  }
}

/** Raised inside the socket's lookup, so the request fails before any connection is made. */
class RefusedAddress extends Error {}

function isLocalhostName(hostname: string): boolean {
  const name = hostname.toLowerCase().replace(/\.$/, '');
  return name === 'localhost' || name.endsWith('.localhost');
}

async function systemLookup(hostname: string) {
  const found = await dns.promises.lookup(hostname, { all: true });
  return found.map(({ address, family }) => ({ address, family: family === 6 ? (6 as const) : (4 as const) }));
}

/**
 * A `lookup` for http.request that resolves once, refuses the whole name when any answer is
 * non-public (an attacker controls the order the answers are tried in), and hands the checked
 * answers to the socket.
 */
function checkingLookup(options: PostOptions): net.LookupFunction {
  const resolve = options.lookup ?? systemLookup;
  return (hostname, lookupOptions, callback) => {
    resolve(hostname).then(
      (all) => {
        const wanted = lookupOptions.family === 4 || lookupOptions.family === 6 ? lookupOptions.family : undefined;
        const answers = all.filter((answer) => wanted === undefined || answer.family === wanted);
        const refused = options.allowPrivateNetworks ? undefined : all.find((a) => isNonPublicAddress(a.address));
        const first = answers[0];
        if (refused) {
          callback(new RefusedAddress(`${hostname} resolves to ${refused.address}, a non-public address`), '');
        } else if (!first) {
          callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '');
        } else if (lookupOptions.all) {
          callback(null, answers);
        } else {
          callback(null, first.address, first.family);
        }
      },
      (error: unknown) => callback(error as NodeJS.ErrnoException, ''),
    );
  };
}

/** Response text safe to store and show: decoding never throws, control characters become spaces. */
function excerptOf(bytes: Buffer): string {
  return Array.from(bytes.toString('utf8'))
    .slice(0, excerptChars)
    .join('')
    .replace(/\p{Cc}/gu, ' ');
}

/** The error's code and the address it concerns; never its message, which could quote more than that. */
function connectionDetail(error: NodeJS.ErrnoException & { address?: string; port?: number }): string {
  const where = error.address ? ` ${error.address}${error.port ? `:${error.port}` : ''}` : '';
  return `${error.code ?? error.name}${where}`;
}

export async function postJson(options: PostOptions): Promise<PostResult> {
  const started = performance.now();
  const latencyMs = () => Math.round((performance.now() - started) * 10) / 10;
  const fail = (reason: 'timeout' | 'connection' | 'refused_address' | 'bad_url', detail: string): PostResult => ({
    kind: 'failed',
    reason,
    detail,
    latencyMs: latencyMs(),
  });

  const problem = urlProblem(options.url);
  if (problem) return fail('bad_url', `the URL ${problem}`);
  const url = new URL(options.url);
  const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!options.allowPrivateNetworks) {
    // An IP literal never reaches the lookup, so it is checked here.
    if (net.isIP(hostname) !== 0 && isNonPublicAddress(hostname)) {
      return fail('refused_address', `${hostname} is a non-public address`);
    }
    if (isLocalhostName(hostname)) return fail('refused_address', `${hostname} names this machine`);
  }

  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(options.headers)) headers[name.toLowerCase()] = value;
  headers['content-type'] = 'application/json';
  headers['content-length'] = String(Buffer.byteLength(options.body));
  headers['user-agent'] = 'recoup-webhooks/1';

  return new Promise<PostResult>((settle) => {
    let settled = false;
    const finish = (result: PostResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      request.destroy();
      settle(result);
    };
    const onError = (error: Error) => {
      if (error instanceof RefusedAddress) finish(fail('refused_address', error.message));
      else finish(fail('connection', connectionDetail(error)));
    };

    let request: http.ClientRequest;
    try {
      request = (url.protocol === 'https:' ? https : http).request(url, {
        method: 'POST',
        headers,
        agent: false,
        lookup: checkingLookup(options),
      });
    } catch (error) {
      // Node checks header names and values synchronously; the code says which rule was broken.
      settle(fail('connection', connectionDetail(error as NodeJS.ErrnoException)));
      return;
    }
    // One deadline for the whole exchange; socket timeouts only measure idleness.
    const deadline = setTimeout(
      () => finish(fail('timeout', `no complete answer within ${options.timeoutMs} ms`)),
      options.timeoutMs,
    );

    request.on('error', onError);
    request.on('response', (response) => {
      const kept: Buffer[] = [];
      let keptLength = 0;
      let total = 0;
      const answered = () =>
        finish({
          kind: 'answered',
          status: response.statusCode ?? 0,
          latencyMs: latencyMs(),
          excerpt: excerptOf(Buffer.concat(kept)),
        });
      response.on('data', (chunk: Buffer) => {
        if (keptLength < keptBytes) {
          kept.push(chunk.subarray(0, keptBytes - keptLength));
          keptLength += Math.min(chunk.length, keptBytes - keptLength);
        }
        total += chunk.length;
        if (total >= maxBodyBytes) answered();
      });
      response.on('end', answered);
      response.on('error', onError);
      response.on('aborted', () => finish(fail('connection', 'ECONNRESET while reading the answer')));
    });
    request.end(options.body);
  });
}
