// qmctl's TLS: the files it trusts the server with and proves itself with,
// from flags or the environment. The names differ from the server's on
// purpose: QM_TLS_CERT and QM_TLS_KEY are a node's own certificate and key,
// and a qmctl run where the server's environment is set (a container's shell)
// must not present them as a client certificate without being asked to.

import { type ChannelCredentials, credentials } from "@grpc/grpc-js";
import { readCertificates, readPrivateKey } from "../security/tls_files";
import { UsageError } from "./args";

/** A file and the setting it came from, so that an error names the one to fix. */
export interface TlsFile {
  readonly path: string;
  readonly setting: string;
}

export interface ClientTls {
  /** CA bundle the server's certificate must chain to; absent: the system's CAs. */
  readonly ca: TlsFile | undefined;
  /** Client certificate and key, for a server with QM_TLS_CLIENT_CA (mutual TLS). */
  readonly cert: TlsFile | undefined;
  readonly key: TlsFile | undefined;
}

/** Flag name → environment variable. */
export const TLS_ENV = { "tls-ca": "QM_TLS_CA", "tls-cert": "QM_TLS_CLIENT_CERT", "tls-key": "QM_TLS_CLIENT_KEY" } as const;

/**
 * TLS when the address is https:// or any TLS file is given; undefined (plaintext) otherwise.
 * A certificate without its key, or a key without its certificate, is a usage error.
 */
export function clientTls(
  flag: (name: keyof typeof TLS_ENV) => string | undefined,
  env: Readonly<Record<string, string | undefined>>,
  httpsAddress: boolean,
): ClientTls | undefined {
  const file = (name: keyof typeof TLS_ENV): TlsFile | undefined => {
    const given = flag(name);
    if (given !== undefined) return { path: given, setting: `--${name}` };
    const fromEnv = env[TLS_ENV[name]];
    return fromEnv === undefined || fromEnv === "" ? undefined : { path: fromEnv, setting: TLS_ENV[name] };
  };
  const ca = file("tls-ca");
  const cert = file("tls-cert");
  const key = file("tls-key");
  if ((cert === undefined) !== (key === undefined)) {
    throw new UsageError(cert === undefined ? `${key?.setting ?? "--tls-key"} needs --tls-cert (or QM_TLS_CLIENT_CERT)` : `${cert.setting} needs --tls-key (or QM_TLS_CLIENT_KEY)`);
  }
  if (ca === undefined && cert === undefined && !httpsAddress) return undefined;
  return { ca, cert, key };
}

/** Reads and checks the files; a missing or malformed one is a UsageError naming its setting. */
export function tlsCredentials(tls: ClientTls): ChannelCredentials {
  const read = <T>(file: TlsFile, reader: (path: string) => T): T => {
    try {
      return reader(file.path);
    } catch (error) {
      throw new UsageError(`${file.setting} ${(error as Error).message}`);
    }
  };
  const ca = tls.ca === undefined ? null : read(tls.ca, readCertificates).file.bytes;
  const cert = tls.cert === undefined ? null : read(tls.cert, readCertificates).file.bytes;
  const key = tls.key === undefined ? null : read(tls.key, readPrivateKey).file.bytes;
  return credentials.createSsl(ca, key, cert);
}

/** Whether grpc-js's text for a failed connection is about TLS: a one-line cause a user can act on, or undefined. */
export function tlsFailureCause(text: string, tls: boolean): string | undefined {
  if (/self[- ]signed certificate|unable to verify|unable to get (local )?issuer|UNABLE_TO_VERIFY|certificate has expired|CERT_HAS_EXPIRED/i.test(text)) {
    const why = /expired/i.test(text) ? "its certificate has expired" : "its certificate is not signed by a CA qmctl trusts";
    return `TLS: the server was not trusted: ${why} (give the CA with --tls-ca or QM_TLS_CA)`;
  }
  if (/Hostname\/IP does not match|ERR_TLS_CERT_ALTNAME_INVALID|altnames/i.test(text)) {
    return "TLS: the server's certificate does not name this host (connect by a name its certificate lists)";
  }
  if (/certificate required|alert number 116|bad certificate|alert number 42|unknown ca|alert number 48|certificate unknown|alert number 46/i.test(text)) {
    return "TLS: the server refused qmctl's client certificate, or wants one (give one signed by the server's QM_TLS_CLIENT_CA with --tls-cert and --tls-key)";
  }
  if (tls && /wrong version number|packet length too long|unknown protocol|EPROTO|Client network socket disconnected before secure TLS connection/i.test(text)) {
    return "TLS: the server does not speak TLS at this address (drop https:// and the --tls-* flags)";
  }
  // Under TLS 1.3 a server that refuses the client's certificate just closes the connection after the handshake.
  if (tls && /ECONNRESET|socket hang up|Connection dropped|Failed to connect/i.test(text)) {
    return "TLS: the server closed the connection in the handshake: it refused qmctl's client certificate (give one signed by the server's QM_TLS_CLIENT_CA with --tls-cert and --tls-key)";
  }
  // A plaintext client's HTTP/2 preface is no TLS ClientHello: a TLS server closes the connection at once.
  if (!tls && /Failed to connect|Connection dropped/i.test(text)) {
    return "the server closed the connection at once; if it serves TLS, connect with https://HOST:PORT or --tls-ca FILE";
  }
  return undefined;
}
