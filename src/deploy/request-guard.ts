// Which requests a local server answers at all. A page on another origin can reach a
// server on 127.0.0.1 by DNS rebinding (its own name made to resolve to loopback), so
// the Host header must name this server; and a browser page on another origin may not
// use the API unless the user allowed that origin (CORS is off by default).
import { isIP } from 'node:net';
import { hostname as machineName } from 'node:os';

/** Who may talk to the server. */
export interface RequestGuardOptions {
  /** The address the server listens on. */
  host: string;
  /** More host names to accept; `all` turns the Host check off; `.example.com` accepts its subdomains. */
  allowedHosts?: readonly string[];
  /** One origin (e.g. `https://app.example.com`) whose pages may call the API; none by default. */
  cors?: string;
}

/** Why a request is refused, or null to answer it. */
export interface GuardVerdict {
  status: number;
  error: string;
}

/** The host name of a Host header, without port or IPv6 brackets, lower-cased. */
export function hostNameOf(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') < 0 ? undefined : h.indexOf(']'));
  const colon = h.lastIndexOf(':');
  return colon < 0 ? h : h.slice(0, colon);
}

/** An origin as browsers send it (`scheme://host[:port]`), or throws naming what is wrong. */
export function parseOrigin(origin: string): string {
  let u: URL;
  try {
    u = new URL(origin);
  } catch {
    throw new Error(`'${origin}' is not an origin like https://app.example.com`);
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.pathname !== '/' || u.search !== '' || u.hash !== '' || u.username !== '' || origin.replace(/\/$/, '') !== u.origin) {
    throw new Error(`'${origin}' is not an origin like https://app.example.com (scheme, host and port only)`);
  }
  return u.origin;
}

/** Decides, per request, whether its Host and Origin may be answered. */
export class RequestGuard {
  private readonly names: Set<string>;
  private readonly suffixes: string[];
  private readonly anyHost: boolean;
  /** The origin allowed by --cors, if any. */
  readonly cors: string | undefined;

  constructor({ host, allowedHosts = [], cors }: RequestGuardOptions) {
    const extra = allowedHosts.map((h) => h.trim().toLowerCase()).filter((h) => h !== '');
    this.anyHost = extra.includes('all');
    this.suffixes = extra.filter((h) => h.startsWith('.'));
    this.names = new Set(['localhost', hostNameOf(host), ...extra.filter((h) => !h.startsWith('.'))]);
    // Listening beyond loopback: the machine's own name is how others reach it.
    if (host !== '127.0.0.1' && host !== '::1' && host !== 'localhost') this.names.add(machineName().toLowerCase());
    this.cors = cors === undefined ? undefined : parseOrigin(cors);
  }

  /** Whether a Host header names this server: an IP address, localhost, the listening name, or an allowed one. */
  hostAllowed(header: string | undefined): boolean {
    if (this.anyHost) return true;
    if (header === undefined) return false;
    const name = hostNameOf(header);
    // DNS rebinding needs a name; an address in Host cannot be one the attacker controls.
    if (isIP(name) !== 0) return true;
    if (this.names.has(name) || name.endsWith('.localhost')) return true;
    return this.suffixes.some((s) => name.endsWith(s) || name === s.slice(1));
  }

  /** Null to answer the request, or the refusal. */
  check(headers: { host?: string; origin?: string }): GuardVerdict | null {
    if (!this.hostAllowed(headers.host)) {
      const name = headers.host === undefined ? '(none)' : JSON.stringify(hostNameOf(headers.host));
      return { status: 403, error: `host ${name} is not one this server was started for; start it with --allowed-hosts NAME to accept it` };
    }
    const origin = headers.origin;
    if (origin !== undefined && origin !== `http://${headers.host}` && origin !== this.cors) {
      return { status: 403, error: `requests from pages on ${JSON.stringify(origin)} are refused: start the server with --cors ORIGIN to allow one origin` };
    }
    return null;
  }
}
