// Revocation shared through etcd on a real cluster (two nodes, one etcd, one
// nats-server): a token every node accepts is refused by every node once an
// operator puts its revocation under /quartermaster/<cluster>/revoked/, and
// accepted again once the key is deleted; a malformed value changes nothing.
// The test writes with etcd's own client, as etcdctl would.

import { status as GrpcStatus } from "@grpc/grpc-js";
import { expect } from "chai";
import { Etcd3 } from "etcd3";
import { startCluster, type TestCluster } from "../support/cluster";
import { type GrpcOutcome, grpcOutcomeOf } from "../support/grpc_outcome";
import { call, makeTempDir } from "../support/server_process";
import { bearer, generateTestKey, signToken, type TestKey, writeAuthFiles } from "../support/security";

const CLUSTER = "rvk";
const PREFIX = `/quartermaster/${CLUSTER}/revoked/`;
const NODES = ["a", "b"] as const;
/** The README promises about a second; a shared test machine gets more. */
const APPLY_DEADLINE_MS = 10_000;

describe("revocation shared through etcd on a cluster (integration)", function () {
  this.timeout(120_000);
  let cluster: TestCluster | undefined;
  let etcd: Etcd3 | undefined;
  let key: TestKey;

  before(async () => {
    const dir = await makeTempDir("qm-revoke-cluster-");
    key = await generateTestKey("rv-1", "ES256");
    const file = await writeAuthFiles(dir, { keys: [key] });
    cluster = await startCluster([], { cluster: CLUSTER });
    for (const id of NODES) await cluster.startNode(id, { QM_AUTH_CONFIG: file });
    etcd = new Etcd3({ hosts: cluster.etcd.endpoint });
  });

  after(async () => {
    etcd?.close();
    await cluster?.stop();
  });

  /** GetClusterStatus on `node` with the token: OK for an operator, or the refusal. */
  async function statusWith(node: string, token: string): Promise<GrpcOutcome> {
    const c = cluster;
    if (c === undefined) throw new Error("no cluster");
    return grpcOutcomeOf(call(c.clients(node).cluster, "getClusterStatus", {}, { metadata: bearer(token) }));
  }

  /** Polls every node until each answers `expected` with the token (no sleeps beyond the poll). */
  async function everyNode(token: string, expected: GrpcOutcome, what: string): Promise<void> {
    const end = Date.now() + APPLY_DEADLINE_MS;
    const last = new Map<string, GrpcOutcome>();
    for (;;) {
      for (const node of NODES) last.set(node, await statusWith(node, token));
      if ([...last.values()].every((o) => o.code === expected.code && o.reason === expected.reason)) return;
      if (Date.now() > end) throw new Error(`${what}: not within ${APPLY_DEADLINE_MS} ms; last ${JSON.stringify(Object.fromEntries(last))}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  const ACCEPTED: GrpcOutcome = { code: GrpcStatus.OK, reason: undefined };
  const REVOKED: GrpcOutcome = { code: GrpcStatus.UNAUTHENTICATED, reason: "TOKEN_REVOKED" };

  it("refuses a token on every node after an etcd put of its jti, and accepts it again after the delete", async () => {
    const leaked = await signToken(key, { sub: "oncall", tenant: "acme", roles: ["operator"], jti: "leak-1" });
    const other = await signToken(key, { sub: "oncall", tenant: "acme", roles: ["operator"], jti: "fine-1" });
    // Accepted (and remembered) everywhere first: the revocation must reach tokens a node had already verified.
    for (const node of NODES) {
      expect(await statusWith(node, leaked), `node ${node} before`).to.deep.equal(ACCEPTED);
      expect(await statusWith(node, other), `node ${node} before`).to.deep.equal(ACCEPTED);
    }
    await etcd?.put(`${PREFIX}INC-901`).value(JSON.stringify({ jti: "leak-1", note: "INC-901: pasted into a chat" }));
    await everyNode(leaked, REVOKED, "the jti revoked on every node");
    for (const node of NODES) expect(await statusWith(node, other), `another token on node ${node}`).to.deep.equal(ACCEPTED);

    await etcd?.delete().key(`${PREFIX}INC-901`);
    await everyNode(leaked, ACCEPTED, "the revocation lifted on every node");
  });

  it("refuses a subject's older tokens on every node by issued_before", async () => {
    const nowS = Math.floor(Date.now() / 1000);
    const older = await signToken(key, { sub: "scanner", tenant: "acme", roles: ["operator"], iat: nowS - 600 });
    const newer = await signToken(key, { sub: "scanner", tenant: "acme", roles: ["operator"], iat: nowS + 60 });
    await everyNode(older, ACCEPTED, "the older token accepted first");
    await etcd?.put(`${PREFIX}INC-902`).value(JSON.stringify({ subject: "scanner", issued_before: new Date((nowS - 60) * 1000).toISOString() }));
    await everyNode(older, REVOKED, "the subject's older token revoked on every node");
    for (const node of NODES) expect(await statusWith(node, newer), `a token issued after the time on node ${node}`).to.deep.equal(ACCEPTED);
    await etcd?.delete().key(`${PREFIX}INC-902`);
    await everyNode(older, ACCEPTED, "the subject revocation lifted");
  });

  it("ignores a malformed value: it neither revokes nor clears the other entries, and each node logs its key", async () => {
    const c = cluster;
    if (c === undefined) throw new Error("no cluster");
    const leaked = await signToken(key, { sub: "oncall", tenant: "acme", roles: ["operator"], jti: "leak-2" });
    const untouched = await signToken(key, { sub: "oncall", tenant: "acme", roles: ["operator"], jti: "not-listed" });
    await etcd?.put(`${PREFIX}INC-903`).value(JSON.stringify({ jti: "leak-2" }));
    await everyNode(leaked, REVOKED, "the valid entry applied");
    // A half-written entry that names the other token's jti (and a subject), and one that is not JSON.
    await etcd?.put(`${PREFIX}INC-904`).value(JSON.stringify({ jti: "not-listed", subject: "oncall" }));
    await etcd?.put(`${PREFIX}INC-905`).value("{oops");
    for (const node of NODES) {
      const logs = (): string => c.nodes.get(node)?.logs() ?? "";
      const end = Date.now() + APPLY_DEADLINE_MS;
      while (!(logs().includes(`"key":"${PREFIX}INC-904"`) && logs().includes(`"key":"${PREFIX}INC-905"`))) {
        if (Date.now() > end) throw new Error(`node ${node} did not log both malformed keys`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(await statusWith(node, leaked), `the valid entry on node ${node}`).to.deep.equal(REVOKED);
      expect(await statusWith(node, untouched), `the malformed entry's jti on node ${node}`).to.deep.equal(ACCEPTED);
    }
    await etcd?.delete().prefix(PREFIX);
    await everyNode(leaked, ACCEPTED, "all lifted");
  });
});
