// Over mutual TLS, against the real server process:
// - a revocation of a client certificate (SIGHUP of QM_AUTH_CONFIG) closes the
//   connections that certificate has open (GOAWAY, then the session ends), a
//   new connection's calls are refused CERTIFICATE_REVOKED, and another
//   certificate's connection stays open and served;
// - the client CA reloaded on SIGHUP (QM_TLS_CLIENT_CA overwritten): a client
//   certificate of the new CA is accepted on a new connection, one of the old
//   CA refused.
// The revoked connection is a raw node:http2 session, so the test sees the
// GOAWAY frame and the close themselves, not a client library's reconnect.

import { copyFile, readFile } from "node:fs/promises";
import http2 from "node:http2";
import path from "node:path";
import { type ChannelCredentials, credentials, Metadata, type ServiceError, status as GrpcStatus } from "@grpc/grpc-js";
import { expect } from "chai";
import { ClusterServiceClient } from "../../src/gen/quartermaster/v1/cluster";
import { Etcd3 } from "etcd3";
import { startCluster, TEST_LEASE_TTL_S, TEST_PARTITIONS, type TestCluster } from "../support/cluster";
import { decodeStatusDetails, makeTempDir, type ServerProcess, startServer } from "../support/server_process";
import { generateTestKey, writeAuthFiles } from "../support/security";
import { CLIENT_CN, createCa, createPki, type CertificateFiles, type TestCa, type TestPki } from "../support/tls";

const CALL_DEADLINE_MS = 5_000;
const RELOAD_DEADLINE_MS = 10_000;
const OTHER_CN = "dashboard-svc";
const STATUS_PATH = "/quartermaster.v1.ClusterService/GetClusterStatus";

interface Session {
  readonly session: http2.ClientHttp2Session;
  goaway: { code: number; data: string } | undefined;
  closed: boolean;
}

async function openSession(addr: string, ca: string, client: CertificateFiles): Promise<Session> {
  const [caPem, cert, key] = await Promise.all([readFile(ca), readFile(client.cert), readFile(client.key)]);
  const session = http2.connect(`https://${addr}`, { ca: caPem, cert, key, servername: "localhost" });
  const s: Session = { session, goaway: undefined, closed: false };
  session.on("goaway", (code: number, _last: number, data?: Buffer) => {
    // The first: tearing the session down may be followed by a GOAWAY of its own, without data.
    s.goaway ??= { code, data: data?.toString("utf8") ?? "" };
  });
  session.on("close", () => {
    s.closed = true;
  });
  session.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  return s;
}

/** One unary GetClusterStatus on the raw session (an empty message): the grpc-status it ends with. */
function statusOver(s: Session): Promise<number> {
  return new Promise((resolve, reject) => {
    const stream = s.session.request({ ":method": "POST", ":path": STATUS_PATH, "content-type": "application/grpc", te: "trailers" });
    let status: number | undefined;
    stream.on("response", (headers) => {
      if (headers["grpc-status"] !== undefined) status = Number(headers["grpc-status"]);
    });
    stream.on("trailers", (trailers) => {
      status = Number(trailers["grpc-status"]);
    });
    stream.on("data", () => undefined);
    stream.on("close", () => (status === undefined ? reject(new Error("no grpc-status")) : resolve(status)));
    stream.on("error", reject);
    stream.end(Buffer.alloc(5));
  });
}

async function mtls(ca: string, client: CertificateFiles): Promise<ChannelCredentials> {
  const [caPem, key, cert] = await Promise.all([readFile(ca), readFile(client.key), readFile(client.cert)]);
  return credentials.createSsl(caPem, key, cert);
}

/** GetClusterStatus on a new grpc-js channel: OK, or the refusal's code and reason. */
async function freshCall(addr: string, creds: ChannelCredentials): Promise<{ code: GrpcStatus; reason: string | undefined }> {
  const client = new ClusterServiceClient(addr, creds, { "grpc.ssl_target_name_override": "localhost" });
  try {
    return await new Promise((resolve) => {
      client.getClusterStatus({}, new Metadata(), { deadline: new Date(Date.now() + CALL_DEADLINE_MS) }, (err: ServiceError | null) => {
        resolve(err === null ? { code: GrpcStatus.OK, reason: undefined } : { code: err.code, reason: decodeStatusDetails(err).errorInfo?.reason });
      });
    });
  } finally {
    client.close();
  }
}

async function until(what: string, condition: () => boolean | Promise<boolean>): Promise<void> {
  const end = Date.now() + RELOAD_DEADLINE_MS;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out after ${RELOAD_DEADLINE_MS} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("mutual TLS: revoked certificates' connections and the client CA reload (integration)", function () {
  this.timeout(120_000);
  let pki: TestPki;
  let other: CertificateFiles;
  let dir: string;
  let server: ServerProcess | undefined;
  let clientCaFile: string;
  const principals = [
    { subject: CLIENT_CN, tenant: "acme", roles: ["operator"] },
    { subject: OTHER_CN, tenant: "acme", roles: ["operator"] },
  ];

  before(async () => {
    pki = await createPki();
    other = await pki.ca.issue("other-client", OTHER_CN, { usage: "clientAuth" });
    dir = await makeTempDir("qm-revoked-conn-");
    const key = await generateTestKey("rc-1");
    await writeAuthFiles(dir, { keys: [key], principals });
    // A copy the test overwrites, so that the PKI's own CA file stays as it was.
    clientCaFile = path.join(dir, "clients-ca.pem");
    await copyFile(pki.ca.cert, clientCaFile);
    server = await startServer({
      env: {
        QM_TLS_CERT: pki.server.cert,
        QM_TLS_KEY: pki.server.key,
        QM_TLS_CLIENT_CA: clientCaFile,
        QM_AUTH_CONFIG: path.join(dir, "auth.json"),
        QM_LOG_LEVEL: "info",
      },
      healthCredentials: await mtls(pki.ca.cert, pki.client),
    });
  });

  after(async () => {
    await server?.stop();
  });

  it("closes a revoked certificate's open connection on SIGHUP, refuses its new ones, and keeps another certificate's", async () => {
    const s = server;
    if (s === undefined) throw new Error("no server");
    const revokedSession = await openSession(s.addr, pki.ca.cert, pki.client);
    const otherSession = await openSession(s.addr, pki.ca.cert, other);
    expect(await statusOver(revokedSession)).to.equal(GrpcStatus.OK);
    expect(await statusOver(otherSession)).to.equal(GrpcStatus.OK);

    const key = await generateTestKey("rc-1");
    // Every certificate of the CN valid from before a minute from now: the one the client holds.
    const revoked = [{ subject: CLIENT_CN, issued_before: new Date(Date.now() + 60_000).toISOString(), note: "test" }];
    await writeAuthFiles(dir, { keys: [key], principals, revoked });
    process.kill(s.pid, "SIGHUP");
    try {
      await until("the revoked certificate's session closed", () => revokedSession.closed);
      expect(revokedSession.goaway, "GOAWAY before the close").to.deep.equal({ code: http2.constants.NGHTTP2_NO_ERROR, data: "credential_revoked" });
      // The client may see the close before the node's log line reaches this process.
      await until("the log line of the closed connection", () => s.logs().includes("closed the open connections of client certificates now revoked"));

      expect(await freshCall(s.addr, await mtls(pki.ca.cert, pki.client))).to.deep.equal({ code: GrpcStatus.UNAUTHENTICATED, reason: "CERTIFICATE_REVOKED" });
      expect(otherSession.closed, "another certificate's session").to.equal(false);
      expect(await statusOver(otherSession)).to.equal(GrpcStatus.OK);
    } finally {
      otherSession.session.close();
      revokedSession.session.destroy();
      // Lifted again whatever happened above, so that the next test starts from the file without revocations.
      await writeAuthFiles(dir, { keys: [key], principals });
      process.kill(s.pid, "SIGHUP");
    }
    await until("the certificate accepted again", async () => (await freshCall(s.addr, await mtls(pki.ca.cert, pki.client))).code === GrpcStatus.OK);
  });

  it("accepts a client certificate of a new client CA after SIGHUP, and refuses one of the old CA", async () => {
    const s = server;
    if (s === undefined) throw new Error("no server");
    const newCa: TestCa = await createCa("new-clients-ca");
    const newClient = await newCa.issue("new-client", OTHER_CN, { usage: "clientAuth" });
    expect((await freshCall(s.addr, await mtls(pki.ca.cert, newClient))).code, "the new CA before the reload").to.equal(GrpcStatus.UNAVAILABLE);
    expect((await freshCall(s.addr, await mtls(pki.ca.cert, pki.client))).code, "the old CA before the reload").to.equal(GrpcStatus.OK);

    await copyFile(newCa.cert, clientCaFile);
    process.kill(s.pid, "SIGHUP");
    await until("a certificate of the new CA accepted", async () => (await freshCall(s.addr, await mtls(pki.ca.cert, newClient))).code === GrpcStatus.OK);
    expect((await freshCall(s.addr, await mtls(pki.ca.cert, pki.client))).code, "the old CA after the reload").to.equal(GrpcStatus.UNAVAILABLE);
  });
});

describe("mutual TLS in cluster mode: a revocation put in etcd closes the certificate's open connections (integration)", function () {
  this.timeout(120_000);
  const clusterName = "rvtls";
  let pki: TestPki;
  let cluster: TestCluster | undefined;
  let node: ServerProcess | undefined;
  let etcd: Etcd3 | undefined;

  before(async () => {
    pki = await createPki();
    const dir = await makeTempDir("qm-revoked-conn-cluster-");
    const file = await writeAuthFiles(dir, { keys: [await generateTestKey("rc-2")], principals: [{ subject: CLIENT_CN, tenant: "acme", roles: ["operator"] }] });
    cluster = await startCluster([], { cluster: clusterName });
    // The harness's startNode polls health in plaintext: a TLS node is started with the cluster's settings by hand.
    node = await startServer({
      env: {
        QM_ETCD_ENDPOINTS: cluster.etcd.endpoint,
        QM_NATS_URL: cluster.nats.url,
        QM_CLUSTER: clusterName,
        QM_NODE_ID: "t1",
        QM_LEASE_TTL_S: String(TEST_LEASE_TTL_S),
        QM_PARTITIONS: String(TEST_PARTITIONS),
        QM_SHUTDOWN_GRACE_MS: "5000",
        QM_TLS_CERT: pki.server.cert,
        QM_TLS_KEY: pki.server.key,
        QM_TLS_CLIENT_CA: pki.ca.cert,
        QM_AUTH_CONFIG: file,
        QM_LOG_LEVEL: "info",
      },
      healthCredentials: await mtls(pki.ca.cert, pki.client),
    });
    etcd = new Etcd3({ hosts: cluster.etcd.endpoint });
  });

  after(async () => {
    etcd?.close();
    await node?.stop();
    await cluster?.stop();
  });

  it("closes the connection on an etcdctl put of the certificate's subject, refuses new calls, and accepts them after the delete", async () => {
    const n = node;
    if (n === undefined) throw new Error("no node");
    const open = await openSession(n.addr, pki.ca.cert, pki.client);
    expect(await statusOver(open)).to.equal(GrpcStatus.OK);
    const key = `/quartermaster/${clusterName}/revoked/INC-906`;
    await etcd?.put(key).value(JSON.stringify({ subject: CLIENT_CN, issued_before: new Date(Date.now() + 60_000).toISOString() }));
    await until("the certificate's session closed", () => open.closed);
    expect(open.goaway).to.deep.equal({ code: http2.constants.NGHTTP2_NO_ERROR, data: "credential_revoked" });
    expect(await freshCall(n.addr, await mtls(pki.ca.cert, pki.client))).to.deep.equal({ code: GrpcStatus.UNAUTHENTICATED, reason: "CERTIFICATE_REVOKED" });
    await etcd?.delete().key(key);
    await until("the certificate accepted again", async () => (await freshCall(n.addr, await mtls(pki.ca.cert, pki.client))).code === GrpcStatus.OK);
  });
});
