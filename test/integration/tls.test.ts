// TLS and mutual TLS on the gRPC listener, end to end against the real server
// process: who is refused in the handshake, who passes and is named by its
// certificate, qmctl and the health probe over TLS, the edge's handshake
// deadline under TLS, start-up errors for bad TLS files, and the warning of a
// node listening beyond loopback. Certificates are made per run (support/tls.ts).

import { readFile, writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import path from "node:path";
import { type ChannelCredentials, credentials, Metadata, type ServiceError, status as GrpcStatus } from "@grpc/grpc-js";
import { expect } from "chai";
import { InventoryServiceClient } from "../../src/gen/quartermaster/v1/inventory";
import { metricValue, pollUntil } from "../support/metrics";
import { REPO_ROOT, SERVER_MAIN, type ServerProcess, makeTempDir, startServer } from "../support/server_process";
import { CLIENT_CN, createPki, type TestPki } from "../support/tls";
import { type ProcessRun, QMCTL, runProcess } from "../support/run_process";

const PROBE = path.join(REPO_ROOT, "dist/src/health_probe.js");
const HANDSHAKE_TIMEOUT_MS = 1000;
const CALL_DEADLINE_MS = 5_000;
const RUN_DEADLINE_MS = 30_000;

/** A program to its exit; a non-zero exit is a result, not a rejection. */
/** `node script args`, QM_ADDR unset unless `env` sets it. */
function runNode(script: string, args: readonly string[], env: Record<string, string>): Promise<ProcessRun> {
  return runProcess([process.execPath, script, ...args], { QM_ADDR: "", ...env }, RUN_DEADLINE_MS);
}

function tlsCredentials(pki: TestPki, client?: { cert: string; key: string }, ca = pki.ca.cert): Promise<ChannelCredentials> {
  return Promise.all([readFile(ca), client && readFile(client.key), client && readFile(client.cert)]).then(([caPem, key, cert]) =>
    credentials.createSsl(caPem, key ?? null, cert ?? null),
  );
}

/** GetSku of a SKU that does not exist: NOT_FOUND proves the call reached a handler; a refused connection is UNAVAILABLE. */
function getSku(addr: string, creds: ChannelCredentials): Promise<ServiceError> {
  // The server's certificate names localhost and 127.0.0.1; the override keeps Node from sending an IP as the TLS server name.
  const client = new InventoryServiceClient(addr, creds, { "grpc.ssl_target_name_override": "localhost" });
  return new Promise<ServiceError>((resolve, reject) => {
    client.getSku({ skuId: "NO-SUCH-SKU" }, new Metadata(), { deadline: new Date(Date.now() + CALL_DEADLINE_MS) }, (err) => {
      client.close();
      if (err === null) reject(new Error("GetSku of a missing SKU succeeded"));
      else resolve(err);
    });
  });
}

async function edgeDrops(server: ServerProcess, reason: string): Promise<number> {
  return metricValue(server.metricsAddr, `qm_grpc_edge_drops_total{reason="${reason}"}`);
}

function tlsEnv(pki: TestPki, mutual: boolean): Record<string, string> {
  return {
    QM_TLS_CERT: pki.server.cert,
    QM_TLS_KEY: pki.server.key,
    ...(mutual ? { QM_TLS_CLIENT_CA: pki.ca.cert } : {}),
    QM_GRPC_HANDSHAKE_TIMEOUT_MS: String(HANDSHAKE_TIMEOUT_MS),
    QM_LOG_LEVEL: "info",
  };
}

describe("TLS on the gRPC listener", function () {
  this.timeout(120_000);
  let pki: TestPki;

  before(async () => {
    pki = await createPki();
  });

  describe("server TLS (QM_TLS_CERT, QM_TLS_KEY)", () => {
    let server: ServerProcess;

    before(async () => {
      server = await startServer({ env: tlsEnv(pki, false), healthCredentials: await tlsCredentials(pki) });
    });

    after(async () => {
      expect(await server.stop(), server.logs()).to.equal(0);
    });

    it("refuses a plaintext client in the handshake, counts it, and serves a TLS client", async () => {
      const before = await edgeDrops(server, "tls_handshake_failed");
      const refused = await getSku(server.addr, credentials.createInsecure());
      expect(refused.code, refused.details).to.equal(GrpcStatus.UNAVAILABLE);
      expect(await pollUntil(async () => (await edgeDrops(server, "tls_handshake_failed")) > before, Date.now() + 5_000)).to.equal(true);
      const served = await getSku(server.addr, await tlsCredentials(pki));
      expect(served.code, served.details).to.equal(GrpcStatus.NOT_FOUND);
    });

    it("refuses a TLS client that does not trust the server's CA", async () => {
      const refused = await getSku(server.addr, await tlsCredentials(pki, undefined, pki.otherCa.cert));
      expect(refused.code, refused.details).to.equal(GrpcStatus.UNAVAILABLE);
    });

    it("serves qmctl over TLS end to end, and says in one line when qmctl does not trust the server", async () => {
      const tls = ["--addr", server.addr, "--tls-ca", pki.ca.cert];
      const upsert = await runNode(QMCTL, ["sku", "upsert", "TLS-1", "--title", "Lamp", "--currency", "EUR", ...tls], {});
      expect(upsert.code, upsert.stderr).to.equal(0);
      const adjust = await runNode(QMCTL, ["sku", "adjust", "TLS-1", "--location", "w1", "--delta", "7", "--reason", "received", ...tls, "--json"], {});
      expect(adjust.code, adjust.stderr).to.equal(0);
      // The CA from the environment, the address as https://.
      const get = await runNode(QMCTL, ["sku", "get", "TLS-1", "--addr", `https://${server.addr}`, "--json"], { QM_TLS_CA: pki.ca.cert });
      expect(get.code, get.stderr).to.equal(0);
      const sku = JSON.parse(get.stdout) as { title?: string; onHand?: number | string };
      expect(sku.title).to.equal("Lamp");
      expect(Number(sku.onHand)).to.equal(7);

      const untrusted = await runNode(QMCTL, ["sku", "get", "TLS-1", "--addr", `https://${server.addr}`], {});
      expect(untrusted.code).to.equal(6);
      expect(untrusted.stderr).to.equal(
        `error: cannot reach a Quartermaster server at ${server.addr} (--addr): TLS: the server was not trusted: its certificate is not signed by a CA qmctl trusts (give the CA with --tls-ca or QM_TLS_CA)\n`,
      );
      const plaintext = await runNode(QMCTL, ["sku", "get", "TLS-1", "--addr", server.addr], {});
      expect(plaintext.code).to.equal(6);
      expect(plaintext.stderr).to.contain("if it serves TLS, connect with https://HOST:PORT or --tls-ca FILE");
    });

    it("exits 2 naming the flag when a TLS file of qmctl is missing, before connecting", async () => {
      const run = await runNode(QMCTL, ["sku", "get", "A", "--addr", server.addr, "--tls-ca", "/nonexistent/ca.pem"], {});
      expect(run.code).to.equal(2);
      expect(run.stderr).to.equal("error: --tls-ca /nonexistent/ca.pem: cannot read: no such file\n");
      const half = await runNode(QMCTL, ["sku", "get", "A", "--addr", server.addr, "--tls-cert", pki.client.cert], {});
      expect(half.code).to.equal(2);
      expect(half.stderr).to.match(/^error: --tls-cert needs --tls-key/);
    });

    it("answers the health probe over TLS", async () => {
      const run = await runNode(PROBE, [], { QM_LISTEN: server.addr, QM_TLS_CERT: pki.server.cert, QM_TLS_KEY: pki.server.key });
      expect(run.code, run.stdout + run.stderr).to.equal(0);
      expect(run.stdout).to.equal(`${server.addr}: SERVING\n`);
      expect(run.stderr).to.equal("");
    });

    it("closes sockets that never finish the TLS handshake at the handshake deadline, counted as tls_handshake_timeout", async () => {
      const before = await edgeDrops(server, "tls_handshake_timeout");
      const colon = server.addr.lastIndexOf(":");
      const sockets: Socket[] = [];
      const closed = new Set<Socket>();
      try {
        for (let i = 0; i < 20; i++) {
          const socket = connect({ host: server.addr.slice(0, colon), port: Number(server.addr.slice(colon + 1)) });
          socket.on("error", () => undefined);
          socket.on("close", () => closed.add(socket));
          socket.resume();
          // Half of them start a TLS record and never finish it: a slow ClientHello.
          if (i % 2 === 0) socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
          sockets.push(socket);
        }
        const opened = Date.now();
        expect(await pollUntil(async () => closed.size === sockets.length, Date.now() + HANDSHAKE_TIMEOUT_MS + 10_000), `${closed.size} of 20 closed`).to.equal(true);
        // Not before the deadline: the edge waited for the handshake, it did not refuse at once.
        expect(Date.now() - opened).to.be.at.least(HANDSHAKE_TIMEOUT_MS - 100);
        expect((await edgeDrops(server, "tls_handshake_timeout")) - before).to.equal(20);
        const served = await getSku(server.addr, await tlsCredentials(pki));
        expect(served.code, served.details).to.equal(GrpcStatus.NOT_FOUND);
      } finally {
        for (const socket of sockets) socket.destroy();
      }
    });
  });

  describe("mutual TLS (QM_TLS_CLIENT_CA)", () => {
    let server: ServerProcess;

    before(async () => {
      server = await startServer({ env: tlsEnv(pki, true), healthCredentials: await tlsCredentials(pki, pki.client) });
    });

    after(async () => {
      expect(await server.stop(), server.logs()).to.equal(0);
    });

    it("refuses a client without a certificate and one whose certificate another CA signed, and serves a valid one", async () => {
      const before = await edgeDrops(server, "tls_handshake_failed");
      const none = await getSku(server.addr, await tlsCredentials(pki));
      expect(none.code, none.details).to.equal(GrpcStatus.UNAVAILABLE);
      const stranger = await getSku(server.addr, await tlsCredentials(pki, pki.stranger));
      expect(stranger.code, stranger.details).to.equal(GrpcStatus.UNAVAILABLE);
      expect(await pollUntil(async () => (await edgeDrops(server, "tls_handshake_failed")) >= before + 2, Date.now() + 5_000)).to.equal(true);
      const valid = await getSku(server.addr, await tlsCredentials(pki, pki.client));
      expect(valid.code, valid.details).to.equal(GrpcStatus.NOT_FOUND);
    });

    it("names the caller by its certificate's CN: qmctl backup over mTLS is logged with subject checkout-svc", async () => {
      const dir = await makeTempDir("qm-tls-backup-");
      const out = path.join(dir, "node.tar");
      const run = await runNode(QMCTL, ["backup", "--out", out, "--addr", server.addr], {
        QM_TLS_CA: pki.ca.cert,
        QM_TLS_CLIENT_CERT: pki.client.cert,
        QM_TLS_CLIENT_KEY: pki.client.key,
      });
      expect(run.code, run.stderr).to.equal(0);
      let line: { subject?: string; tenant?: string } | undefined;
      await pollUntil(async () => {
        const found = server.logs().split("\n").find((l) => l.includes('"backup sent"'));
        line = found === undefined ? undefined : (JSON.parse(found) as { subject?: string; tenant?: string });
        return line !== undefined;
      }, Date.now() + 5_000);
      expect(line?.subject).to.equal(CLIENT_CN);
      expect(line?.tenant).to.equal("default");
    });

    it("says in one line, with exit 6, that the server refused qmctl's certificate", async () => {
      const noCert = await runNode(QMCTL, ["sku", "get", "A", "--addr", server.addr, "--tls-ca", pki.ca.cert], {});
      expect(noCert.code).to.equal(6);
      expect(noCert.stderr.trimEnd().split("\n")).to.have.length(1);
      expect(noCert.stderr).to.match(/TLS: the server (refused qmctl's client certificate, or wants one|closed the connection in the handshake)/);
      const stranger = await runNode(QMCTL, ["sku", "get", "A", "--addr", server.addr, "--tls-ca", pki.ca.cert, "--tls-cert", pki.stranger.cert, "--tls-key", pki.stranger.key], {});
      expect(stranger.code).to.equal(6);
      expect(stranger.stderr.trimEnd().split("\n")).to.have.length(1);
      expect(stranger.stderr).to.match(/TLS: the server (refused qmctl's client certificate|closed the connection in the handshake)/);
      const valid = await runNode(QMCTL, ["sku", "get", "A", "--addr", server.addr, "--tls-ca", pki.ca.cert, "--tls-cert", pki.client.cert, "--tls-key", pki.client.key], {});
      expect(valid.code, valid.stderr).to.equal(4);
    });

    it("answers the health probe, which presents the node's own certificate", async () => {
      const run = await runNode(PROBE, [], { QM_LISTEN: server.addr, ...tlsEnv(pki, true) });
      expect(run.code, run.stdout + run.stderr).to.equal(0);
      expect(run.stdout).to.equal(`${server.addr}: SERVING\n`);
    });
  });

  describe("start-up", () => {
    /** The server's exit code and stderr when it refuses to start. */
    async function refusedStart(env: Record<string, string>): Promise<ProcessRun> {
      const dataDir = await makeTempDir("qm-tls-start-");
      return runProcess([process.execPath, SERVER_MAIN], { QM_LISTEN: "127.0.0.1:0", QM_METRICS_LISTEN: "", QM_DATA_DIR: dataDir, ...env }, RUN_DEADLINE_MS);
    }

    it("exits 2 naming the variable for a missing, an invalid or a mismatched TLS file, and for incomplete settings", async () => {
      const notPem = path.join(pki.ca.dir, "not.pem");
      await writeFile(notPem, "hello\n");
      const cases: [Record<string, string>, string][] = [
        [{ QM_TLS_CERT: "/nonexistent/cert.pem", QM_TLS_KEY: pki.server.key }, "quartermaster: QM_TLS_CERT=/nonexistent/cert.pem: cannot read: no such file\n"],
        [{ QM_TLS_CERT: notPem, QM_TLS_KEY: pki.server.key }, `quartermaster: QM_TLS_CERT=${notPem}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file\n`],
        [{ QM_TLS_CERT: pki.server.cert, QM_TLS_KEY: notPem }, `quartermaster: QM_TLS_KEY=${notPem}: not a PEM private key`],
        [{ QM_TLS_CERT: pki.server.cert, QM_TLS_KEY: pki.client.key }, `quartermaster: QM_TLS_KEY=${pki.client.key}: this key does not belong to the certificate in QM_TLS_CERT=${pki.server.cert}\n`],
        [{ QM_TLS_CERT: pki.server.cert, QM_TLS_KEY: pki.server.key, QM_TLS_CLIENT_CA: notPem }, `quartermaster: QM_TLS_CLIENT_CA=${notPem}: no PEM certificate`],
        [{ QM_TLS_CERT: pki.server.cert }, "quartermaster: QM_TLS_CERT is set but QM_TLS_KEY is not: TLS needs both the certificate and its private key\n"],
        [{ QM_TLS_CLIENT_CA: pki.ca.cert }, "quartermaster: QM_TLS_CLIENT_CA is set but QM_TLS_CERT and QM_TLS_KEY are not"],
      ];
      for (const [env, message] of cases) {
        const run = await refusedStart(env);
        expect(run.code, JSON.stringify(env)).to.equal(2);
        expect(run.stderr.startsWith(message), `${JSON.stringify(env)}: ${run.stderr}`).to.equal(true);
      }
    });

    it("warns once each, naming what to set, when it listens beyond loopback without TLS or QM_AUTH_CONFIG", async () => {
      const insecure = await startServer({ listenHost: "0.0.0.0" });
      const tls = await startServer({ listenHost: "0.0.0.0", env: tlsEnv(pki, false), healthCredentials: await tlsCredentials(pki) });
      const local = await startServer();
      try {
        const warnings = (s: ServerProcess): { msg: string; set: string[] }[] =>
          s
            .logs()
            .split("\n")
            .filter((l) => l.includes("INSECURE"))
            .map((l) => JSON.parse(l) as { msg: string; set: string[]; level: number })
            .filter((l) => l.level === 40);
        expect(warnings(insecure).map((w) => w.set)).to.deep.equal([["QM_TLS_CERT", "QM_TLS_KEY", "QM_TLS_CLIENT_CA"], ["QM_AUTH_CONFIG"]]);
        expect(warnings(insecure)[0]?.msg).to.match(/^INSECURE: the gRPC listener is on a non-loopback address without TLS/);
        expect(warnings(tls).map((w) => w.set)).to.deep.equal([["QM_AUTH_CONFIG"]]);
        expect(warnings(local)).to.deep.equal([]);
      } finally {
        await Promise.all([insecure.stop(), tls.stop(), local.stop()]);
      }
    });
  });
});
