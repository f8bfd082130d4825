// The cluster's revocations in etcd (security/cluster_revocations.ts) against a
// real etcd: puts and deletes reach the gate's side, a malformed value is
// logged once with its key and changes nothing, and a watch lost while keys
// changed and etcd compacted its history leaves no stale list once etcd is in
// reach again. The node's etcd client goes through a TCP proxy the test can
// cut, while the test's own client writes directly.

import { Writable } from "node:stream";
import { expect } from "chai";
import { Etcd3 } from "etcd3";
import pino from "pino";
import type { RevocationEntry } from "../../src/security/auth_config";
import { ClusterRevocations } from "../../src/security/cluster_revocations";
import { CuttableProxy } from "../support/cuttable_proxy";
import { type EtcdProcess, startEtcd } from "../support/engines";

const PREFIX = "/quartermaster/rv/revoked/";
const APPLY_DEADLINE_MS = 10_000;

/** The gate's side as the test sees it: the last list handed over. */
class RecordingSink {
  last: readonly RevocationEntry[] = [];
  calls = 0;
  setSharedRevocations(entries: readonly RevocationEntry[]): void {
    this.last = entries;
    this.calls++;
  }
  jtis(): string[] {
    return this.last.flatMap((e) => (e.kind === "jti" ? [e.jti] : [])).sort();
  }
}

function capturingLogger(): { logger: pino.Logger; lines: () => Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line.trim() !== "") lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: "debug" }, stream), lines: () => lines };
}

async function until(what: string, condition: () => boolean): Promise<void> {
  const end = Date.now() + APPLY_DEADLINE_MS;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out after ${APPLY_DEADLINE_MS} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("the cluster's revocations in etcd (integration, real etcd)", function () {
  this.timeout(60_000);
  let etcd: EtcdProcess;
  let direct: Etcd3;
  let proxy: CuttableProxy;
  let nodeClient: Etcd3;
  let revocations: ClusterRevocations | undefined;
  let sink: RecordingSink;
  let log: ReturnType<typeof capturingLogger>;

  before(async () => {
    etcd = await startEtcd();
    direct = new Etcd3({ hosts: etcd.endpoint });
  });

  after(async () => {
    direct?.close();
    await etcd?.stop();
  });

  beforeEach(async () => {
    await direct.delete().prefix(PREFIX);
    proxy = new CuttableProxy(etcd.clientPort);
    await proxy.start();
    nodeClient = new Etcd3({ hosts: `http://127.0.0.1:${proxy.port}`, dialTimeout: 1_000 });
    sink = new RecordingSink();
    log = capturingLogger();
  });

  afterEach(async () => {
    await revocations?.stop();
    revocations = undefined;
    nodeClient.close();
    await proxy.stop();
  });

  async function startWatching(resyncIntervalMs?: number): Promise<void> {
    revocations = new ClusterRevocations({ client: nodeClient, prefix: PREFIX, sink, logger: log.logger, ...(resyncIntervalMs === undefined ? {} : { resyncIntervalMs }) });
    await revocations.start();
  }

  it("reads the entries present at start, applies a put and lifts it on delete", async () => {
    await direct.put(`${PREFIX}INC-1`).value(JSON.stringify({ jti: "tok-1", note: "INC-1" }));
    await startWatching();
    await until("the entry present at start", () => sink.jtis().join() === "tok-1");
    await direct.put(`${PREFIX}INC-2`).value(JSON.stringify({ subject: "scanner", issued_before: "2026-12-02T04:30:00Z" }));
    await until("the put", () => sink.last.length === 2);
    expect(sink.last).to.deep.include({ kind: "subject", subject: "scanner", issuedBeforeMs: Date.parse("2026-12-02T04:30:00Z") });
    await direct.delete().key(`${PREFIX}INC-1`);
    await until("the delete", () => sink.last.length === 1);
    expect(sink.jtis()).to.deep.equal([]);
  });

  it("logs a malformed value once with its key and keeps every other entry", async () => {
    await direct.put(`${PREFIX}good`).value(JSON.stringify({ jti: "tok-good" }));
    // A short period: the re-reads must not log the same value again.
    await startWatching(100);
    await until("the good entry", () => sink.jtis().join() === "tok-good");
    const before = sink.calls;
    await direct.put(`${PREFIX}broken`).value("{not json");
    await direct.put(`${PREFIX}both`).value(JSON.stringify({ jti: "x", subject: "y", issued_before: "2026-12-02T04:30:00Z" }));
    await direct.put(`${PREFIX}huge`).value(JSON.stringify({ jti: "z", note: "n".repeat(9000) }));
    const malformed = (): Record<string, unknown>[] => log.lines().filter((l) => typeof l["msg"] === "string" && (l["msg"] as string).startsWith("ignored a malformed revocation"));
    await until("three malformed values logged", () => malformed().length >= 3);
    // Several periodic re-reads later, still once each.
    const reads = (): number => log.lines().filter((l) => l["msg"] === "re-reading the cluster's revocations").length;
    const readsBefore = reads();
    await until("three more re-reads", () => reads() >= readsBefore + 3);
    expect(malformed().map((l) => l["key"]).sort()).to.deep.equal([`${PREFIX}both`, `${PREFIX}broken`, `${PREFIX}huge`]);
    expect(sink.calls).to.be.greaterThan(before);
    expect(sink.jtis()).to.deep.equal(["tok-good"]);
  });

  it("leaves no stale list after a lost watch whose history etcd compacted meanwhile", async () => {
    await direct.put(`${PREFIX}old`).value(JSON.stringify({ jti: "tok-old" }));
    await startWatching();
    await until("the entry present at start", () => sink.jtis().join() === "tok-old");
    proxy.cut();
    // While the node is cut off: lift one revocation, add another, and let etcd forget those events.
    await direct.delete().key(`${PREFIX}old`);
    await direct.put(`${PREFIX}new`).value(JSON.stringify({ jti: "tok-new" }));
    const { header } = await direct.put("/quartermaster/rv/unrelated").value("x").exec();
    await direct.kv.compact({ revision: header.revision, physical: true });
    expect(sink.jtis(), "the last list read stays in force while etcd is out of reach").to.deep.equal(["tok-old"]);
    proxy.restore();
    await until("the list as etcd holds it", () => sink.jtis().join() === "tok-new");
    // And the new watch delivers what follows.
    await direct.put(`${PREFIX}later`).value(JSON.stringify({ jti: "tok-later" }));
    await until("a put after the re-read", () => sink.jtis().join() === "tok-later,tok-new");
  });
});
