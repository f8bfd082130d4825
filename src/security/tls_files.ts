// The files TLS and the cluster's credentials are read from, read and checked
// once at start (src/config.ts), so that a wrong path or a key that does not
// match its certificate stops the start with the variable's name instead of
// failing the first handshake. Their contents never reach a log: the
// configuration is logged at debug, and these serialize as their path only.

import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { inspect } from "node:util";

/** What a Secret prints; the same mark as the logger's redaction (observability/logger.ts), which this file must not import (the health probe loads it). */
const CENSOR = "[redacted]";

/** A value that must never be logged: it serializes (JSON, util.inspect) as the censor mark. */
export class Secret<T> {
  readonly #value: T;

  constructor(value: T) {
    this.#value = value;
  }

  reveal(): T {
    return this.#value;
  }

  toJSON(): string {
    return CENSOR;
  }

  [inspect.custom](): string {
    return CENSOR;
  }
}

/** A file read at start; logs show its path, never its bytes. */
export class PemFile {
  readonly #bytes: Buffer;

  constructor(
    readonly path: string,
    bytes: Buffer,
  ) {
    this.#bytes = bytes;
  }

  get bytes(): Buffer {
    return this.#bytes;
  }

  toJSON(): string {
    return this.path;
  }

  [inspect.custom](): string {
    return `PemFile(${this.path})`;
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The file's bytes, or an Error whose message says why it cannot be read (not found, not allowed). */
export function readTlsFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : code === "EISDIR" ? "is a directory" : (error as Error).message;
    throw new Error(`${path}: cannot read: ${why}`);
  }
}

/** One or more PEM certificates (a chain, or a bundle of CAs), each of which must parse. */
export function readCertificates(path: string): { file: PemFile; certificates: X509Certificate[] } {
  const bytes = readTlsFile(path);
  const blocks = bytes.toString("utf8").match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new Error(`${path}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file`);
  const certificates = blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw new Error(`${path}: certificate ${i + 1} does not parse: ${(error as Error).message}`);
    }
  });
  return { file: new PemFile(path, bytes), certificates };
}

/** A PEM private key that must parse, unencrypted (a listener started unattended has no passphrase to ask for). */
export function readPrivateKey(path: string): { file: PemFile; key: ReturnType<typeof createPrivateKey> } {
  const bytes = readTlsFile(path);
  try {
    return { file: new PemFile(path, bytes), key: createPrivateKey(bytes) };
  } catch (error) {
    const message = (error as Error).message;
    const why = /passphrase/i.test(message) ? "the key is encrypted; give an unencrypted PEM key" : `not a PEM private key (${message})`;
    throw new Error(`${path}: ${why}`);
  }
}
