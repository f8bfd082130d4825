// A node reachable from other machines without TLS or without authentication
// is the configuration issue 11 exists for: it works, so nobody notices. It
// is allowed (a private network, a sidecar that terminates TLS), but said
// loudly at every start, one warning line per missing protection, naming what
// to set. On loopback, the embedded default, nothing is said.

import type { Logger } from "pino";

/** Whether QM_LISTEN's host is reachable only from this machine; a host name other than localhost may resolve anywhere. */
export function isLoopbackListen(listen: string): boolean {
  const host = listen.slice(0, listen.lastIndexOf(":")).toLowerCase();
  return host === "localhost" || host === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export interface Exposure {
  readonly listen: string;
  /** QM_TLS_CERT and QM_TLS_KEY are set. */
  readonly tls: boolean;
  /** An authenticating gate (QM_AUTH_CONFIG) is in front of every RPC. */
  readonly authenticating: boolean;
}

export function warnIfExposed(logger: Logger, exposure: Exposure): void {
  if (isLoopbackListen(exposure.listen)) return;
  const { listen } = exposure;
  if (!exposure.tls) {
    logger.warn(
      { listen, set: ["QM_TLS_CERT", "QM_TLS_KEY", "QM_TLS_CLIENT_CA"] },
      "INSECURE: the gRPC listener is on a non-loopback address without TLS: calls, tokens and stock cross the network in clear; set QM_TLS_CERT and QM_TLS_KEY (and QM_TLS_CLIENT_CA to require client certificates)",
    );
  }
  if (!exposure.authenticating) {
    logger.warn(
      { listen, set: ["QM_AUTH_CONFIG"] },
      "INSECURE: the gRPC listener is on a non-loopback address without QM_AUTH_CONFIG: anyone who reaches it can read and change every SKU and order; set QM_AUTH_CONFIG (see SECURITY.md)",
    );
  }
}
