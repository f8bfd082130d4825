// The caller named by a client certificate. grpc-js reports a peer
// certificate only for a TLS connection whose certificate the listener
// verified against QM_TLS_CLIENT_CA (mutual TLS), so a certificate seen here
// is a trusted one and its subject CN is the caller's subject.

import type { AuthContext } from "./call_gate";

/** The verified client certificate's subject CN; undefined without mutual TLS or without a CN. */
export function certificateSubject(auth: AuthContext): string | undefined {
  if (auth.transportSecurityType !== "ssl") return undefined;
  const cn = auth.sslPeerCertificate?.subject?.CN;
  // A certificate may carry several CNs (node reports an array): refuse to guess which one names the caller.
  return typeof cn === "string" && cn.length > 0 ? cn : undefined;
}

/** When the verified client certificate became valid (notBefore), in epoch milliseconds; NaN if it cannot be told. */
export function certificateValidFromMs(auth: AuthContext): number {
  const from = auth.sslPeerCertificate?.valid_from;
  return typeof from === "string" ? Date.parse(from) : Number.NaN;
}
