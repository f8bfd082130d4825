// The engine behaviour cluster mode is built on, pinned against the real
// etcd and nats-server from Debian's packages (the versions CI has). If a
// package upgrade changes one of these, this test says which promise broke
// before a cluster test fails in a harder-to-read way.
//   - etcd: a transaction "create if absent, bound to my lease" claims a key
//     exactly once; the key's create revision (the partition epoch) only grows.
//   - JetStream: a publish with an expected last subject sequence is a
//     compare-and-set per subject (per actor); an acknowledged message survives
//     a SIGKILL of nats-server.

import { expect } from "chai";
import { Etcd3 } from "etcd3";
import { connect, type JetStreamManager, type NatsConnection, StorageType } from "nats";
import { type EtcdProcess, type NatsProcess, startEtcd, startNats } from "../support/engines";

describe("engines cluster mode relies on (real etcd and nats-server)", function () {
  this.timeout(60_000);

  describe("etcd", () => {
    let etcd: EtcdProcess;
    let client: Etcd3;

    before(async () => {
      etcd = await startEtcd();
      client = new Etcd3({ hosts: etcd.endpoint });
    });

    after(async () => {
      client?.close();
      await etcd?.stop();
    });

    it("lets exactly one of two leases claim a partition key, and gives a later claim a larger create revision", async () => {
      const key = "/quartermaster/test/partitions/7";
      const first = client.lease(10, { autoKeepAlive: false });
      const second = client.lease(10, { autoKeepAlive: false });
      const claim = (lease: typeof first, owner: string) =>
        client.if(key, "Create", "==", 0).then(lease.put(key).value(owner)).commit();

      const [a, b] = await Promise.all([claim(first, "node-a"), claim(second, "node-b")]);
      expect([a.succeeded, b.succeeded].filter(Boolean)).to.have.length(1);
      const winner = a.succeeded ? "node-a" : "node-b";
      expect(await client.get(key).string()).to.equal(winner);

      const epochOf = async (): Promise<number> => {
        const response = await client.get(key).exec();
        const kv = response.kvs[0];
        if (kv === undefined) throw new Error(`${key} is absent`);
        return Number(kv.create_revision);
      };
      const firstEpoch = await epochOf();

      // The owner's lease ends (a dead node): the key goes, and the next claim is a new, larger epoch.
      await (a.succeeded ? first : second).revoke();
      expect(await client.get(key).string()).to.equal(null);
      const third = client.lease(10, { autoKeepAlive: false });
      expect((await claim(third, "node-c")).succeeded).to.equal(true);
      expect(await epochOf()).to.be.greaterThan(firstEpoch);
      await third.revoke();
      await (a.succeeded ? second : first).revoke();
    });
  });

  describe("nats-server with JetStream", () => {
    let nats: NatsProcess;
    let nc: NatsConnection;
    let jsm: JetStreamManager;
    const stream = "QM_TEST_JOURNAL";

    before(async () => {
      nats = await startNats();
      nc = await connect({ servers: nats.url });
      jsm = await nc.jetstreamManager();
      await jsm.streams.add({ name: stream, subjects: ["qmtest.j.>"], storage: StorageType.File, allow_direct: true });
    });

    after(async () => {
      await nc?.close();
      await nats?.stop();
    });

    it("refuses a publish whose expected last subject sequence is stale, per subject", async () => {
      const js = nc.jetstream();
      const subject = "qmtest.j.sku.A";
      const first = await js.publish(subject, new TextEncoder().encode("e1"), { expect: { lastSubjectSequence: 0 } });
      // Another subject's sequence does not count: each actor has its own compare-and-set.
      await js.publish("qmtest.j.sku.B", new TextEncoder().encode("b1"), { expect: { lastSubjectSequence: 0 } });

      let refused: unknown;
      try {
        await js.publish(subject, new TextEncoder().encode("zombie"), { expect: { lastSubjectSequence: 0 } });
      } catch (error) {
        refused = error;
      }
      expect(String(refused)).to.match(/wrong last sequence/);

      const second = await js.publish(subject, new TextEncoder().encode("e2"), { expect: { lastSubjectSequence: first.seq } });
      const last = await jsm.streams.getMessage(stream, { last_by_subj: subject });
      expect(last.seq).to.equal(second.seq);
      expect(new TextDecoder().decode(last.data)).to.equal("e2");
    });

    it("keeps an acknowledged message across a SIGKILL of nats-server restarted on the same store", async () => {
      const js = nc.jetstream();
      const subject = "qmtest.j.order.o-1";
      const ack = await js.publish(subject, new TextEncoder().encode("paid"), { expect: { lastSubjectSequence: 0 } });
      await nc.close();
      await nats.kill();

      nats = await startNats({ dataDir: nats.dataDir });
      nc = await connect({ servers: nats.url });
      jsm = await nc.jetstreamManager();
      const last = await jsm.streams.getMessage(stream, { last_by_subj: subject });
      expect(last.seq).to.equal(ack.seq);
      expect(new TextDecoder().decode(last.data)).to.equal("paid");
    });
  });
});
