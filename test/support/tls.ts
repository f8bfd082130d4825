// Certificates for TLS tests, made with the machine's openssl in a temp dir:
// a CA, a server certificate for localhost and 127.0.0.1 signed by it, and
// client certificates with a chosen CN, from that CA or from another one.
// EC P-256 keys: generated in milliseconds, where RSA takes a noticeable while.

import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { makeTempDir } from "./server_process";

const run = promisify(execFile);
/** Certificates outlive any test run, and expire before anyone could reuse them. */
const DAYS = "2";

export interface CertificateFiles {
  readonly cert: string;
  readonly key: string;
}

export interface TestCa extends CertificateFiles {
  readonly dir: string;
  /** A certificate signed by this CA, for `cn`, with the subject alternative names given (`DNS:localhost,IP:127.0.0.1`). */
  issue(name: string, cn: string, opts?: { san?: string; usage?: "serverAuth" | "clientAuth" | "serverAuth,clientAuth" }): Promise<CertificateFiles>;
}

async function openssl(args: readonly string[], cwd: string): Promise<void> {
  await run("openssl", args, { cwd });
}

/** A self-signed CA in a new temp dir (or `dir`). */
export async function createCa(name: string, dir?: string): Promise<TestCa> {
  const where = dir ?? (await makeTempDir("qm-tls-"));
  const key = path.join(where, `${name}.key`);
  const cert = path.join(where, `${name}.pem`);
  await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key], where);
  await openssl(["req", "-x509", "-new", "-key", key, "-sha256", "-days", DAYS, "-subj", `/CN=${name}`, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", cert], where);
  let serial = 1;
  return {
    dir: where,
    cert,
    key,
    async issue(file, cn, opts = {}) {
      const leafKey = path.join(where, `${file}.key`);
      const csr = path.join(where, `${file}.csr`);
      const leaf = path.join(where, `${file}.pem`);
      const ext = path.join(where, `${file}.ext`);
      const lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment", `extendedKeyUsage=${opts.usage ?? "serverAuth,clientAuth"}`];
      if (opts.san !== undefined) lines.push(`subjectAltName=${opts.san}`);
      await writeFile(ext, `${lines.join("\n")}\n`);
      await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", leafKey], where);
      await openssl(["req", "-new", "-key", leafKey, "-subj", `/CN=${cn}`, "-out", csr], where);
      await openssl(["x509", "-req", "-in", csr, "-CA", cert, "-CAkey", key, "-set_serial", String(++serial), "-days", DAYS, "-sha256", "-extfile", ext, "-out", leaf], where);
      return { cert: leaf, key: leafKey };
    },
  };
}

export interface TestPki {
  readonly ca: TestCa;
  /** The server's certificate: localhost and 127.0.0.1, both usages (the health probe presents it as a client under mutual TLS). */
  readonly server: CertificateFiles;
  /** A client certificate from `ca`, CN "checkout-svc". */
  readonly client: CertificateFiles;
  /** A client certificate with the same CN from an unrelated CA. */
  readonly stranger: CertificateFiles;
  readonly otherCa: TestCa;
}

export const CLIENT_CN = "checkout-svc";

export async function createPki(): Promise<TestPki> {
  const ca = await createCa("test-ca");
  const otherCa = await createCa("other-ca", ca.dir);
  const server = await ca.issue("server", "quartermaster", { san: "DNS:localhost,IP:127.0.0.1" });
  const client = await ca.issue("client", CLIENT_CN, { usage: "clientAuth" });
  const stranger = await otherCa.issue("stranger", CLIENT_CN, { usage: "clientAuth" });
  return { ca, server, client, stranger, otherCa };
}
