// The TLS and credential settings as parsed at start (config.ts) and by qmctl
// (cli/tls.ts), without a server: which combinations are refused, which
// setting an error names, and that no secret survives serialization.

import { writeFile } from "node:fs/promises";
import path from "node:path";
import { expect } from "chai";
import { UsageError } from "../../src/cli/args";
import { clientTls, tlsFailureCause } from "../../src/cli/tls";
import { natsOptions } from "../../src/cluster_node";
import { ConfigError, loadConfig } from "../../src/config";
import { isLoopbackListen } from "../../src/security/exposure";
import { createPki, type TestPki } from "../support/tls";

const CLUSTER = { QM_ETCD_ENDPOINTS: "https://127.0.0.1:2379", QM_NATS_URL: "nats://127.0.0.1:4222" };

describe("TLS configuration", function () {
  this.timeout(30_000);
  let pki: TestPki;
  let creds: string;

  before(async () => {
    pki = await createPki();
    creds = path.join(pki.ca.dir, "node.creds");
    await writeFile(
      creds,
      "-----BEGIN NATS USER JWT-----\neyJ0eXAi.payload.sig\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\nSUAEXAMPLESEEDSECRET\n------END USER NKEY SEED------\n",
    );
  });

  it("reads the listener's certificate, key and client CA, and logs their paths only", () => {
    const config = loadConfig({ QM_TLS_CERT: pki.server.cert, QM_TLS_KEY: pki.server.key, QM_TLS_CLIENT_CA: pki.ca.cert });
    expect(config.tls?.cert.bytes.toString("utf8")).to.contain("BEGIN CERTIFICATE");
    expect(config.tls?.clientCa?.path).to.equal(pki.ca.cert);
    const logged = JSON.stringify(config);
    expect(logged).to.contain(JSON.stringify(pki.server.key));
    expect(logged).not.to.contain("PRIVATE KEY");
    expect(loadConfig({}).tls).to.equal(undefined);
  });

  it("refuses QM_TLS_CLIENT_CA without the listener's certificate, and a certificate without its key", () => {
    expect(() => loadConfig({ QM_TLS_CLIENT_CA: pki.ca.cert })).to.throw(ConfigError, /^QM_TLS_CLIENT_CA is set but QM_TLS_CERT and QM_TLS_KEY are not/);
    expect(() => loadConfig({ QM_TLS_CERT: pki.server.cert })).to.throw(ConfigError, /^QM_TLS_CERT is set but QM_TLS_KEY is not/);
    expect(() => loadConfig({ QM_TLS_KEY: pki.server.key })).to.throw(ConfigError, /^QM_TLS_KEY is set but QM_TLS_CERT is not/);
    expect(() => loadConfig({ QM_TLS_CERT: pki.ca.dir, QM_TLS_KEY: pki.server.key })).to.throw(ConfigError, `QM_TLS_CERT=${pki.ca.dir}: cannot read: is a directory`);
  });

  it("reads etcd's and NATS's TLS and credentials, and never serializes the password or the creds", () => {
    const config = loadConfig({
      ...CLUSTER,
      QM_ETCD_CA: pki.ca.cert,
      QM_ETCD_USER: "qm",
      QM_ETCD_PASSWORD: "hunter2-etcd",
      QM_NATS_CREDS: creds,
      QM_NATS_CA: pki.ca.cert,
    });
    const cluster = config.cluster;
    expect(cluster?.etcdAuth?.password.reveal()).to.equal("hunter2-etcd");
    expect(Buffer.from(cluster?.natsCreds?.contents.reveal() ?? []).toString("utf8")).to.contain("SUAEXAMPLESEEDSECRET");
    const logged = JSON.stringify(config);
    expect(logged).not.to.contain("hunter2");
    expect(logged).not.to.contain("SUAEXAMPLE");
    expect(logged).to.contain("[redacted]");
  });

  it("hands NATS the CA as TLS options and the creds as an authenticator, and neither when unset", () => {
    const plain = natsOptions(loadConfig(CLUSTER).cluster ?? expect.fail("no cluster config"));
    expect(plain.tls).to.equal(undefined);
    expect(plain.authenticator).to.equal(undefined);
    const secured = natsOptions(loadConfig({ ...CLUSTER, QM_NATS_CA: pki.ca.cert, QM_NATS_CREDS: creds }).cluster ?? expect.fail("no cluster config"));
    expect((secured.tls as { ca?: string } | undefined)?.ca).to.contain("-----BEGIN CERTIFICATE-----");
    expect(secured.authenticator).to.be.a("function");
  });

  it("turns off nats.js's per-request async stack traces, which cost a node about 10% of its CPU under checkouts", () => {
    expect(natsOptions(loadConfig(CLUSTER).cluster ?? expect.fail("no cluster config")).noAsyncTraces).to.equal(true);
  });

  it("refuses QM_ETCD_CA with http:// endpoints, a user without a password, and a file that is no .creds", () => {
    expect(() => loadConfig({ ...CLUSTER, QM_ETCD_ENDPOINTS: "http://127.0.0.1:2379", QM_ETCD_CA: pki.ca.cert })).to.throw(ConfigError, /^QM_ETCD_CA is set but QM_ETCD_ENDPOINTS=http:/);
    expect(() => loadConfig({ ...CLUSTER, QM_ETCD_USER: "qm" })).to.throw(ConfigError, "QM_ETCD_USER is set but QM_ETCD_PASSWORD is not");
    expect(() => loadConfig({ ...CLUSTER, QM_NATS_CREDS: pki.ca.cert })).to.throw(ConfigError, `QM_NATS_CREDS=${pki.ca.cert}: not a NATS .creds file`);
  });
});

describe("etcd client certificate configuration (QM_ETCD_CERT, QM_ETCD_KEY)", function () {
  this.timeout(30_000);
  let pki: TestPki;

  before(async () => {
    pki = await createPki();
  });

  it("reads the pair, hands it to etcd as a path in logs only, and is undefined when unset", () => {
    const config = loadConfig({ ...CLUSTER, QM_ETCD_CERT: pki.client.cert, QM_ETCD_KEY: pki.client.key });
    expect(config.cluster?.etcdClientCert?.cert.path).to.equal(pki.client.cert);
    expect(config.cluster?.etcdClientCert?.key.bytes.toString("utf8")).to.contain("PRIVATE KEY");
    expect(JSON.stringify(config)).not.to.contain("PRIVATE KEY");
    expect(loadConfig(CLUSTER).cluster?.etcdClientCert).to.equal(undefined);
  });

  it("refuses one without the other, http:// endpoints, and a key of another certificate, naming the variable", () => {
    expect(() => loadConfig({ ...CLUSTER, QM_ETCD_CERT: pki.client.cert })).to.throw(ConfigError, /^QM_ETCD_CERT is set but QM_ETCD_KEY is not/);
    expect(() => loadConfig({ ...CLUSTER, QM_ETCD_KEY: pki.client.key })).to.throw(ConfigError, /^QM_ETCD_KEY is set but QM_ETCD_CERT is not/);
    expect(() => loadConfig({ ...CLUSTER, QM_ETCD_ENDPOINTS: "https://127.0.0.1:2379,http://127.0.0.2:2379", QM_ETCD_CERT: pki.client.cert, QM_ETCD_KEY: pki.client.key })).to.throw(
      ConfigError,
      /^QM_ETCD_CERT is set but QM_ETCD_ENDPOINTS=https:\/\/127.0.0.1:2379,http:\/\/127.0.0.2:2379 has an http:\/\/ endpoint/,
    );
    expect(() => loadConfig({ ...CLUSTER, QM_ETCD_CERT: pki.client.cert, QM_ETCD_KEY: pki.server.key })).to.throw(
      ConfigError,
      `QM_ETCD_KEY=${pki.server.key}: this key does not belong to the certificate in QM_ETCD_CERT=${pki.client.cert}`,
    );
    expect(() => loadConfig({ ...CLUSTER, QM_ETCD_CERT: pki.client.key, QM_ETCD_KEY: pki.client.key })).to.throw(ConfigError, `QM_ETCD_CERT=${pki.client.key}: no PEM certificate`);
    expect(() => loadConfig({ ...CLUSTER, QM_ETCD_CERT: pki.client.cert, QM_ETCD_KEY: pki.client.cert })).to.throw(ConfigError, `QM_ETCD_KEY=${pki.client.cert}: not a PEM private key`);
  });
});

describe("qmctl TLS settings", () => {
  const none = (): undefined => undefined;

  it("is plaintext unless https:// or a TLS file is given; flags win over the environment", () => {
    expect(clientTls(none, {}, false)).to.equal(undefined);
    expect(clientTls(none, {}, true)).to.deep.equal({ ca: undefined, cert: undefined, key: undefined });
    const flags = (name: string): string | undefined => (name === "tls-ca" ? "flag-ca.pem" : undefined);
    expect(clientTls(flags, { QM_TLS_CA: "env-ca.pem" }, false)?.ca).to.deep.equal({ path: "flag-ca.pem", setting: "--tls-ca" });
    const env = clientTls(none, { QM_TLS_CA: "ca.pem", QM_TLS_CLIENT_CERT: "c.pem", QM_TLS_CLIENT_KEY: "k.pem" }, false);
    expect(env).to.deep.equal({ ca: { path: "ca.pem", setting: "QM_TLS_CA" }, cert: { path: "c.pem", setting: "QM_TLS_CLIENT_CERT" }, key: { path: "k.pem", setting: "QM_TLS_CLIENT_KEY" } });
    // The server's own QM_TLS_CERT and QM_TLS_KEY are never a client certificate.
    expect(clientTls(none, { QM_TLS_CERT: "server.pem", QM_TLS_KEY: "server.key" }, false)).to.equal(undefined);
  });

  it("refuses a client certificate without its key and a key without its certificate", () => {
    expect(() => clientTls((n) => (n === "tls-cert" ? "c.pem" : undefined), {}, false)).to.throw(UsageError, "--tls-cert needs --tls-key");
    expect(() => clientTls(none, { QM_TLS_CLIENT_KEY: "k.pem" }, false)).to.throw(UsageError, "QM_TLS_CLIENT_KEY needs --tls-cert");
  });

  it("turns grpc-js's TLS failures into causes that name the setting to fix", () => {
    expect(tlsFailureCause("No connection established. Last error: self-signed certificate in certificate chain", true)).to.match(/^TLS: the server was not trusted: .*--tls-ca/);
    expect(tlsFailureCause("Last error: certificate has expired", true)).to.match(/its certificate has expired/);
    expect(tlsFailureCause("Last error: Hostname/IP does not match certificate's altnames", true)).to.match(/does not name this host/);
    expect(tlsFailureCause("Last error: tlsv13 alert certificate required", true)).to.match(/refused qmctl's client certificate, or wants one/);
    expect(tlsFailureCause("Last error: Failed to connect", true)).to.match(/^TLS: the server closed the connection in the handshake/);
    expect(tlsFailureCause("Last error: Failed to connect", false)).to.match(/if it serves TLS, connect with https:\/\//);
    expect(tlsFailureCause("Last error: connect ECONNREFUSED 127.0.0.1:1", true)).to.equal(undefined);
  });
});

describe("non-loopback listener", () => {
  it("counts only 127.0.0.0/8, [::1] and localhost as loopback", () => {
    for (const listen of ["127.0.0.1:50051", "127.1.2.3:1", "localhost:50051", "[::1]:50051", "LOCALHOST:1"]) expect(isLoopbackListen(listen), listen).to.equal(true);
    for (const listen of ["0.0.0.0:50051", "[::]:50051", "10.0.0.5:50051", "qm.internal:50051", "127.example.com:1"]) expect(isLoopbackListen(listen), listen).to.equal(false);
  });
});
