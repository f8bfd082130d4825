// The gRPC listener's certificate, replaced on SIGHUP without a restart, so a
// certificate can be renewed (or a compromised one replaced) while the node
// serves. QM_TLS_CERT, QM_TLS_KEY and QM_TLS_CLIENT_CA are re-read from the
// same paths with the same checks as at start (config.ts). New connections
// get the new certificate; a connection already open keeps the one it was
// made with (TLS does not renegotiate), until it closes.
//
// A bad new pair must not reach grpc-js: when a secure context update fails,
// grpc-js marks its credentials invalid and drops every new connection until
// a good one arrives. So the pair is loaded into a secure context here first,
// and only one that loads is handed over; otherwise the old one stays and the
// reason is logged.

import { X509Certificate } from "node:crypto";
import { ServerCredentials } from "@grpc/grpc-js";
import { createSecureContext, type SecureContextOptions } from "node:tls";
import type { Logger } from "pino";
import { ConfigError, type ListenerTlsConfig, listenerTlsConfig, type VariableName } from "../config";
import { type Lifecycle, lifecycle } from "../lifecycle";

/** grpc-js server credentials whose certificate, key and client CA can be swapped while listening. */
export class ReloadableServerCredentials extends ServerCredentials {
  constructor(tls: ListenerTlsConfig) {
    // requestCert is fixed at start: whether QM_TLS_CLIENT_CA is set cannot change without a restart.
    super({ requestCert: tls.clientCa !== undefined }, contextOptions(tls));
  }

  /** Throws, changing nothing, if OpenSSL will not load the pair. */
  replace(tls: ListenerTlsConfig): void {
    const options = contextOptions(tls);
    createSecureContext(options);
    this.updateSecureContextOptions(options);
  }

  override _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}

function contextOptions(tls: ListenerTlsConfig): SecureContextOptions {
  return { cert: [tls.cert.bytes], key: [tls.key.bytes], ...(tls.clientCa === undefined ? {} : { ca: tls.clientCa.bytes }) };
}

/** What a log line says of a certificate: enough to tell old from new, nothing secret. */
export function certificateSummary(tls: ListenerTlsConfig): Record<string, string> {
  const certificate = new X509Certificate(tls.cert.bytes);
  return { cert: tls.cert.path, subject: certificate.subject, serial: certificate.serialNumber, validTo: certificate.validTo, fingerprint256: certificate.fingerprint256 };
}

/** Installs the SIGHUP handler for the node's lifetime: re-reads the listener's files and swaps them in if they pass. */
export function reloadListenerTlsOnSighup(credentials: ReloadableServerCredentials, started: ListenerTlsConfig, logger: Logger): Lifecycle {
  const paths: Partial<Record<VariableName, string>> = { QM_TLS_CERT: started.cert.path, QM_TLS_KEY: started.key.path, QM_TLS_CLIENT_CA: started.clientCa?.path ?? "" };
  const onHup = (): void => {
    let next: ListenerTlsConfig | undefined;
    try {
      next = listenerTlsConfig((name) => paths[name] ?? "");
      if (next === undefined) throw new ConfigError("QM_TLS_CERT and QM_TLS_KEY read as unset");
      credentials.replace(next);
    } catch (error) {
      logger.error({ error: error instanceof Error ? error.message : String(error) }, "TLS certificate reload failed: keeping the previous certificate");
      return;
    }
    logger.info(certificateSummary(next), "TLS certificate reloaded: new connections get it");
  };
  return lifecycle(
    "tls-reload",
    async () => {
      process.on("SIGHUP", onHup);
    },
    async () => {
      process.off("SIGHUP", onHup);
    },
  );
}
