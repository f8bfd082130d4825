// Where qmctl sends its call. grpc-js takes a target URI and is lenient in ways
// that hurt here: `17051` is looked up as a host name (and a web server on 443
// answered with HTTP 404), `:17051` asks DNS for the empty name and waits out
// the whole deadline, and `http://host:port` becomes the DNS name
// "http://host". So qmctl reads the forms people type and hands grpc-js one it
// cannot misread, or refuses with a message that names the forms it accepts.

import { UsageError } from "./args";

/** A malformed address: about a global setting, so the command's synopsis is no help with it. */
export class AddressError extends UsageError {}

/** Where the address came from, so that an error can tell the user which setting to fix. */
export type AddrSource = "--addr" | "QM_ADDR" | "default";

export interface ServerAddress {
  /** `host:port`: what grpc-js is given, and what messages show. */
  readonly target: string;
  readonly source: AddrSource;
  /** Given as https://HOST:PORT: TLS, verified against the system's CAs unless --tls-ca names one. */
  readonly tls?: true;
}

/** The host a port alone (`17051`, `:17051`) means: the server's default QM_LISTEN host. */
export const ADDR_HOST_DEFAULT = "127.0.0.1";

export const ADDR_FORMS = "HOST:PORT, :PORT, PORT, [IPv6]:PORT, http://HOST:PORT, https://HOST:PORT or dns:HOST:PORT";

const PORT_MAX = 65535;
/** Target schemes grpc-js knows besides dns: none of them reaches a server that listens on TCP host:port. */
const OTHER_SCHEMES: ReadonlySet<string> = new Set(["unix", "unix-abstract", "ipv4", "ipv6", "vsock", "xds", "grpc", "grpcs"]);
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/;
const IPV6 = /^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?$/;

export function settingName(source: AddrSource): string {
  return source === "default" ? "the default address" : source;
}

/**
 * `host:port`, `:port`, `port`, `[::1]:port`, `http://host:port[/]`,
 * `dns:host:port` and `dns:///host:port` become `host:port`. Everything else is
 * an AddressError that quotes the text and the setting it came from.
 */
export function parseServerAddress(text: string, source: AddrSource): ServerAddress {
  const fail = (why: string): never => {
    const setting = source === "QM_ADDR" ? `QM_ADDR="${text}"` : `--addr "${text}"`;
    throw new AddressError(`${setting}: ${why} (accepted: ${ADDR_FORMS})`);
  };
  let rest = text.trim();
  if (rest === "") fail("empty address");

  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):(.*)$/.exec(rest);
  const schemeName = scheme?.[1]?.toLowerCase();
  const afterScheme = scheme?.[2] ?? "";
  if (schemeName === "http" || schemeName === "https") {
    if (!afterScheme.startsWith("//")) fail(`expected ${schemeName}://HOST:PORT`);
    rest = afterScheme.slice(2).replace(/\/$/, "");
    if (rest.includes("/")) fail("a path cannot be part of a gRPC address");
  } else if (schemeName === "dns") {
    // dns:host:port, or dns://authority/host:port with an empty DNS server authority.
    rest = afterScheme;
    if (rest.startsWith("//")) {
      const slash = rest.indexOf("/", 2);
      if (slash < 0) fail("expected dns:///HOST:PORT");
      if (slash > 2) fail("a DNS server authority (dns://SERVER/...) is not supported");
      rest = rest.slice(slash + 1);
    }
  } else if (schemeName !== undefined && (OTHER_SCHEMES.has(schemeName) || afterScheme.startsWith("//"))) {
    fail(`unsupported scheme "${schemeName}:"`);
  }

  const tls = schemeName === "https" ? ({ tls: true } as const) : {};
  if (/^\d+$/.test(rest)) return { target: `${ADDR_HOST_DEFAULT}:${port(rest, fail)}`, source, ...tls };
  if (rest.startsWith("[")) {
    const close = rest.indexOf("]");
    const host = rest.slice(1, close);
    if (close < 0 || !IPV6.test(host)) fail("not an IPv6 address in brackets");
    if (rest[close + 1] !== ":") fail("no port after the IPv6 address; expected [IPv6]:PORT");
    return { target: `[${host}]:${port(rest.slice(close + 2), fail)}`, source, ...tls };
  }
  const colon = rest.lastIndexOf(":");
  if (colon < 0) fail("no port; expected HOST:PORT, e.g. localhost:50051");
  const host = rest.slice(0, colon);
  if (host.includes(":")) fail("an IPv6 address needs brackets, e.g. [::1]:50051");
  if (host !== "" && !HOSTNAME.test(host)) fail(`"${host}" is not a host name or IPv4 address`);
  return { target: `${host === "" ? ADDR_HOST_DEFAULT : host}:${port(rest.slice(colon + 1), fail)}`, source, ...tls };
}

function port(text: string, fail: (why: string) => never): number {
  const value = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(value >= 1 && value <= PORT_MAX)) fail(`port "${text}" is not a number from 1 to ${PORT_MAX}`);
  return value;
}
