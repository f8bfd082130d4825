// A cluster node's own connections over TLS and with credentials: nats-server
// and etcd are started with certificates from a CA made in the test (and etcd
// with its authentication on), and the node must connect, journal and serve
// through them, and refuse to start, naming the variable and never the
// password, when it lacks the CA or has the wrong password.

import { readFile } from "node:fs/promises";
import { expect } from "chai";
import { Etcd3 } from "etcd3";
import { seedSku } from "../support/fixtures";
import { type EtcdProcess, type NatsProcess, startEtcd, startNats } from "../support/engines";
import { runProcess } from "../support/run_process";
import { call, createClients, makeTempDir, SERVER_MAIN, type ServerProcess, startServer } from "../support/server_process";
import { createPki, type TestPki } from "../support/tls";

const EXIT_DEADLINE_MS = 30_000;

describe("cluster node: NATS over TLS (QM_NATS_CA)", function () {
  this.timeout(120_000);
  let pki: TestPki;
  let etcd: EtcdProcess;
  let nats: NatsProcess;
  let env: Record<string, string>;

  before(async () => {
    pki = await createPki();
    etcd = await startEtcd();
    nats = await startNats({ args: ["--tls", "--tlscert", pki.server.cert, "--tlskey", pki.server.key] });
    env = { QM_ETCD_ENDPOINTS: etcd.endpoint, QM_NATS_URL: nats.url, QM_CLUSTER: "tls", QM_NODE_ID: "n1", QM_LEASE_TTL_S: "3", QM_PARTITIONS: "4" };
  });

  after(async () => {
    await Promise.all([nats?.stop(), etcd?.stop()]);
  });

  it("connects through TLS with the CA and journals a SKU's stock in JetStream", async () => {
    const node: ServerProcess = await startServer({ env: { ...env, QM_NATS_CA: pki.ca.cert } });
    const clients = createClients(node.addr);
    try {
      await seedSku(clients, "TLS-NATS", 12);
      const sku = await call(clients.inventory, "getSku", { skuId: "TLS-NATS" });
      expect(sku.onHand).to.equal(12);
    } finally {
      clients.close();
      expect(await node.stop(), node.logs()).to.equal(0);
    }
  });

  it("refuses to start without the CA, exiting 1 with a message naming QM_NATS_URL and the TLS failure", async () => {
    const run = await failedStart({ ...env, QM_NODE_ID: "n2" });
    expect(run.code, run.output).to.equal(1);
    expect(run.output).to.match(new RegExp(`^quartermaster: cannot start: QM_NATS_URL=${nats.url}: cannot connect to NATS: .*(certificate|self.signed|verify)`, "m"));
  });
});

describe("cluster node: etcd over TLS with authentication (QM_ETCD_CA, QM_ETCD_USER, QM_ETCD_PASSWORD)", function () {
  this.timeout(120_000);
  const PASSWORD = "s3cret-etcd-Pa55";
  let pki: TestPki;
  let etcd: EtcdProcess;
  let nats: NatsProcess;
  let env: Record<string, string>;

  before(async () => {
    pki = await createPki();
    etcd = await startEtcd({ tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert } });
    nats = await startNats();
    const admin = new Etcd3({ hosts: etcd.endpoint, credentials: { rootCertificate: await readFile(pki.ca.cert) } });
    try {
      await admin.role("root").create();
      await admin.user("root").create(PASSWORD);
      await admin.user("root").addRole("root");
      await admin.auth.authEnable();
    } finally {
      admin.close();
    }
    env = {
      QM_ETCD_ENDPOINTS: etcd.endpoint,
      QM_NATS_URL: nats.url,
      QM_CLUSTER: "etcdtls",
      QM_LEASE_TTL_S: "3",
      QM_PARTITIONS: "4",
      QM_ETCD_CA: pki.ca.cert,
      QM_ETCD_USER: "root",
    };
  });

  after(async () => {
    await Promise.all([nats?.stop(), etcd?.stop()]);
  });

  it("serves with the CA and the password, and never logs the password even at debug", async () => {
    const node: ServerProcess = await startServer({ env: { ...env, QM_NODE_ID: "e1", QM_ETCD_PASSWORD: PASSWORD, QM_LOG_LEVEL: "debug" } });
    const clients = createClients(node.addr);
    try {
      await seedSku(clients, "TLS-ETCD", 5);
      expect((await call(clients.inventory, "getSku", { skuId: "TLS-ETCD" })).onHand).to.equal(5);
      const status = await call(clients.cluster, "getClusterStatus", {});
      expect(status.members.map((m) => m.nodeId)).to.deep.equal(["e1"]);
    } finally {
      clients.close();
      expect(await node.stop(), node.logs()).to.equal(0);
    }
    expect(node.logs()).to.contain(`"etcdCa":"${pki.ca.cert}"`);
    expect(node.logs()).not.to.contain(PASSWORD);
  });

  it("refuses to start with a wrong password, naming QM_ETCD_USER and not the password", async () => {
    const wrong = `${PASSWORD}-wrong`;
    const run = await failedStart({ ...env, QM_NODE_ID: "e2", QM_ETCD_PASSWORD: wrong, QM_LOG_LEVEL: "debug" });
    expect(run.code, run.output).to.equal(1);
    expect(run.output).to.match(new RegExp(`^quartermaster: cannot start: QM_ETCD_ENDPOINTS=${etcd.endpoint}: cannot reach etcd \\(with QM_ETCD_CA=${pki.ca.cert}, QM_ETCD_USER=root\\): .*`, "m"));
    expect(run.output).not.to.contain(wrong);
  });

  it("refuses to start without the CA: etcd's certificate is not trusted", async () => {
    const { QM_ETCD_CA: _ca, ...withoutCa } = env;
    const run = await failedStart({ ...withoutCa, QM_NODE_ID: "e3", QM_ETCD_PASSWORD: PASSWORD });
    expect(run.code, run.output).to.equal(1);
    expect(run.output).to.match(new RegExp(`^quartermaster: cannot start: QM_ETCD_ENDPOINTS=${etcd.endpoint}: cannot reach etcd \\(with QM_ETCD_USER=root\\)`, "m"));
  });
});

describe("cluster node: etcd with client certificates (QM_ETCD_CERT, QM_ETCD_KEY; etcd --client-cert-auth)", function () {
  this.timeout(120_000);
  let pki: TestPki;
  let etcd: EtcdProcess;
  let nats: NatsProcess;
  let env: Record<string, string>;

  before(async () => {
    pki = await createPki();
    // pki.client is a clientAuth certificate of the CA etcd trusts; pki.stranger has the same CN from another CA.
    etcd = await startEtcd({ tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, clientCertAuth: pki.client } });
    nats = await startNats();
    env = { QM_ETCD_ENDPOINTS: etcd.endpoint, QM_NATS_URL: nats.url, QM_CLUSTER: "etcdmtls", QM_LEASE_TTL_S: "3", QM_PARTITIONS: "4", QM_ETCD_CA: pki.ca.cert };
  });

  after(async () => {
    await Promise.all([nats?.stop(), etcd?.stop()]);
  });

  it("joins with the client certificate, serves, and logs the certificate's path but not the key", async () => {
    const node: ServerProcess = await startServer({ env: { ...env, QM_NODE_ID: "m1", QM_ETCD_CERT: pki.client.cert, QM_ETCD_KEY: pki.client.key, QM_LOG_LEVEL: "debug" } });
    const clients = createClients(node.addr);
    try {
      await seedSku(clients, "MTLS-ETCD", 7);
      expect((await call(clients.inventory, "getSku", { skuId: "MTLS-ETCD" })).onHand).to.equal(7);
      const status = await call(clients.cluster, "getClusterStatus", {});
      expect(status.members.map((m) => m.nodeId)).to.deep.equal(["m1"]);
    } finally {
      clients.close();
      expect(await node.stop(), node.logs()).to.equal(0);
    }
    expect(node.logs()).to.contain(JSON.stringify(pki.client.key));
    expect(node.logs()).not.to.contain("PRIVATE KEY");
    // The member it registered is in etcd, read back with the same certificate.
    const admin = new Etcd3({ hosts: etcd.endpoint, credentials: { rootCertificate: await readFile(pki.ca.cert), privateKey: await readFile(pki.client.key), certChain: await readFile(pki.client.cert) } });
    try {
      const keys = await admin.getAll().prefix("/quartermaster/etcdmtls/").keys();
      expect(keys.length, keys.join(",")).to.be.greaterThan(0);
    } finally {
      admin.close();
    }
  });

  it("refuses to start without a client certificate, naming etcd and telling to set QM_ETCD_CERT", async () => {
    const run = await failedStart({ ...env, QM_NODE_ID: "m2" });
    expect(run.code, run.output).to.equal(1);
    expect(run.output).to.match(new RegExp(`^quartermaster: cannot start: QM_ETCD_ENDPOINTS=${etcd.endpoint}: cannot reach etcd \\(with QM_ETCD_CA=${pki.ca.cert}\\): etcd refused the connection for want of a client certificate .*: set QM_ETCD_CERT and QM_ETCD_KEY; .*certificate`, "m"));
  });

  it("refuses to start with a client certificate signed by another CA, naming it", async () => {
    const run = await failedStart({ ...env, QM_NODE_ID: "m3", QM_ETCD_CERT: pki.stranger.cert, QM_ETCD_KEY: pki.stranger.key });
    expect(run.code, run.output).to.equal(1);
    expect(run.output).to.match(
      new RegExp(`^quartermaster: cannot start: QM_ETCD_ENDPOINTS=${etcd.endpoint}: cannot reach etcd \\(with QM_ETCD_CA=${pki.ca.cert}, QM_ETCD_CERT=${pki.stranger.cert}\\): etcd refused the client certificate QM_ETCD_CERT=${pki.stranger.cert}: .*certificate`, "m"),
    );
  });
});

/** A node that must fail to start: its exit code and everything it wrote (stdout's JSON log, then stderr). */
async function failedStart(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const dataDir = await makeTempDir("qm-cluster-tls-");
  const run = await runProcess([process.execPath, SERVER_MAIN], { ...env, QM_LISTEN: "127.0.0.1:0", QM_METRICS_LISTEN: "", QM_DATA_DIR: dataDir }, EXIT_DEADLINE_MS);
  return { code: run.code, output: run.stdout + run.stderr };
}
