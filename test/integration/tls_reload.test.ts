// The gRPC listener's certificate replaced on SIGHUP, against the real server
// process: the node starts with a certificate of one CA, the files are
// overwritten with one of another CA, and after SIGHUP a new connection gets
// the new certificate (read from the TLS handshake itself) while a connection
// opened before keeps working with the old one. A bad new pair (a key of
// another certificate, a file that is no certificate) is refused with a log
// line, and new connections keep getting the previous certificate.

import { X509Certificate } from "node:crypto";
import { copyFile, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { connect } from "node:tls";
import { type ChannelCredentials, credentials, Metadata, type ServiceError, status as GrpcStatus } from "@grpc/grpc-js";
import { expect } from "chai";
import { InventoryServiceClient } from "../../src/gen/quartermaster/v1/inventory";
import { makeTempDir, type ServerProcess, startServer } from "../support/server_process";
import { createCa, createPki, type TestCa, type TestPki } from "../support/tls";

const CALL_DEADLINE_MS = 5_000;
const RELOAD_DEADLINE_MS = 10_000;
const POLL_INTERVAL_MS = 50;

/** The fingerprint of the certificate a new TLS connection to `addr` is served, trusting `ca`. */
function servedFingerprint(addr: string, ca: Buffer): Promise<string> {
  const colon = addr.lastIndexOf(":");
  return new Promise((resolve, reject) => {
    const socket = connect({ host: addr.slice(0, colon), port: Number(addr.slice(colon + 1)), servername: "localhost", ca, ALPNProtocols: ["h2"] }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.destroy();
      resolve(fingerprint);
    });
    socket.once("error", reject);
  });
}

/** GetSku of a SKU that does not exist on `client`: NOT_FOUND proves the call went through; a refused connection is UNAVAILABLE. */
function getSku(client: InventoryServiceClient): Promise<GrpcStatus> {
  return new Promise((resolve) => {
    client.getSku({ skuId: "NO-SUCH-SKU" }, new Metadata(), { deadline: new Date(Date.now() + CALL_DEADLINE_MS) }, (err: ServiceError | null) => {
      resolve(err === null ? GrpcStatus.OK : err.code);
    });
  });
}

function clientTrusting(addr: string, ca: Buffer): InventoryServiceClient {
  const creds: ChannelCredentials = credentials.createSsl(ca);
  return new InventoryServiceClient(addr, creds, { "grpc.ssl_target_name_override": "localhost" });
}

async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + RELOAD_DEADLINE_MS;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
  throw new Error(`timed out after ${RELOAD_DEADLINE_MS} ms waiting for ${what}`);
}

describe("TLS certificate reload on SIGHUP (QM_TLS_CERT, QM_TLS_KEY)", function () {
  this.timeout(120_000);
  let pki: TestPki;
  let nextCa: TestCa;
  let next: { cert: string; key: string };
  let dir: string;
  let certPath: string;
  let keyPath: string;
  let server: ServerProcess | undefined;
  let oldCa: Buffer;
  let newCa: Buffer;

  before(async () => {
    pki = await createPki();
    nextCa = await createCa("next-ca");
    next = await nextCa.issue("next-server", "quartermaster", { san: "DNS:localhost,IP:127.0.0.1" });
    [oldCa, newCa] = await Promise.all([readFile(pki.ca.cert), readFile(nextCa.cert)]);
  });

  beforeEach(async () => {
    dir = await makeTempDir("qm-tls-reload-");
    certPath = path.join(dir, "listener.pem");
    keyPath = path.join(dir, "listener.key");
    await Promise.all([copyFile(pki.server.cert, certPath), copyFile(pki.server.key, keyPath)]);
    server = await startServer({
      env: { QM_TLS_CERT: certPath, QM_TLS_KEY: keyPath, QM_LOG_LEVEL: "info" },
      healthCredentials: credentials.createSsl(oldCa),
    });
  });

  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });

  it("serves the new certificate to new connections, and an open connection keeps working on the old one", async () => {
    const running = server ?? expect.fail("no server");
    const oldFingerprint = new X509Certificate(await readFile(pki.server.cert)).fingerprint256;
    const newFingerprint = new X509Certificate(await readFile(next.cert)).fingerprint256;
    expect(await servedFingerprint(running.addr, oldCa)).to.equal(oldFingerprint);
    const before = clientTrusting(running.addr, oldCa);
    try {
      expect(await getSku(before)).to.equal(GrpcStatus.NOT_FOUND);
      await Promise.all([copyFile(next.cert, certPath), copyFile(next.key, keyPath)]);
      process.kill(running.pid, "SIGHUP");
      await until(async () => running.logs().includes("TLS certificate reloaded"), "the reload to be logged");
      expect(await servedFingerprint(running.addr, newCa)).to.equal(newFingerprint);
      expect(running.logs()).to.contain(`"fingerprint256":"${newFingerprint}"`);
      // Opened before the reload, trusting only the old CA: its connection still carries calls.
      expect(await getSku(before)).to.equal(GrpcStatus.NOT_FOUND);
      const fresh = clientTrusting(running.addr, newCa);
      const stale = clientTrusting(running.addr, oldCa);
      try {
        expect(await getSku(fresh)).to.equal(GrpcStatus.NOT_FOUND);
        // A new connection that trusts only the old CA is refused in the handshake: it was served the new certificate.
        expect(await getSku(stale)).to.equal(GrpcStatus.UNAVAILABLE);
      } finally {
        fresh.close();
        stale.close();
      }
    } finally {
      before.close();
    }
  });

  it("refuses a key of another certificate and a file that is no certificate, logging why and serving the previous certificate", async () => {
    const running = server ?? expect.fail("no server");
    const oldFingerprint = new X509Certificate(await readFile(pki.server.cert)).fingerprint256;
    await copyFile(next.key, keyPath);
    process.kill(running.pid, "SIGHUP");
    await until(async () => running.logs().includes("TLS certificate reload failed: keeping the previous certificate"), "the failed reload to be logged");
    expect(running.logs()).to.contain(`QM_TLS_KEY=${keyPath}: this key does not belong to the certificate in QM_TLS_CERT=${certPath}`);
    expect(await servedFingerprint(running.addr, oldCa)).to.equal(oldFingerprint);

    await copyFile(pki.server.key, keyPath);
    await writeFile(certPath, "not a certificate\n");
    process.kill(running.pid, "SIGHUP");
    await until(async () => running.logs().includes(`QM_TLS_CERT=${certPath}: no PEM certificate`), "the second failed reload to be logged");
    expect(await servedFingerprint(running.addr, oldCa)).to.equal(oldFingerprint);
    const client = clientTrusting(running.addr, oldCa);
    try {
      expect(await getSku(client)).to.equal(GrpcStatus.NOT_FOUND);
    } finally {
      client.close();
    }
    expect(running.logs()).not.to.contain("TLS certificate reloaded");
  });
});
