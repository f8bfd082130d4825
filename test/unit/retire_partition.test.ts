// A hand-off retires the released partition's actors by the partition each
// activation noted when it loaded, not by hashing every active id again.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import pino from "pino";
import { ActorSystem } from "../../src/actors/runtime/actor_system";
import type { ActorBehavior } from "../../src/actors/runtime/behavior";
import { systemClock } from "../../src/clock";
import { partitionOf } from "../../src/cluster/placement";
import { QmError } from "../../src/errors";
import { LmdbJournal } from "../../src/journal/lmdb_journal";

const PARTITIONS = 4;

const counter: ActorBehavior<{ value: number }, { op: "add" }> = {
  kind: "counter",
  initialState: () => ({ value: 0 }),
  applyEvent(state) {
    state.value += 1;
  },
  toSnapshot: (s) => s,
  fromSnapshot: (_k, s) => s as { value: number },
  snapshotWeight: () => 1,
  wakeAtMs: () => null,
  notFound: (key) => new QmError("NOT_FOUND", `counter ${key} not found`),
  async handle(ctx) {
    ctx.emit({});
    return ctx.state.value;
  },
};

describe("ActorSystem.retireWhere", () => {
  let dir: string;
  let journal: LmdbJournal;
  let system: ActorSystem;
  let hashes = 0;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "qm-retire-"));
    journal = new LmdbJournal({ path: path.join(dir, "journal"), auditRetention: { maxAgeMs: 1e12, maxPerActor: 1000 }, clock: systemClock });
    await journal.open();
    system = new ActorSystem({
      journal,
      clock: systemClock,
      logger: pino({ level: "silent" }),
      behaviors: [counter as ActorBehavior<unknown, unknown>],
      idleMs: 60_000,
      activeMax: 1000,
      timerTickMs: 20,
      partitionOf: (actorId) => {
        hashes++;
        return partitionOf(actorId, PARTITIONS);
      },
    });
    await system.start();
  });

  afterEach(async () => {
    await system.stop();
    await journal.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("hands the predicate each activation's noted partition and retires exactly that partition's actors", async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `counter/c${i}`);
    for (const id of ids) expect(await system.ask<number>(id, { op: "add" })).to.equal(1);
    const inOne = ids.filter((id) => partitionOf(id, PARTITIONS) === 1);
    expect(inOne.length).to.be.greaterThan(0);
    const hashesBefore = hashes;
    const seen = new Map<string, number | undefined>();
    await system.retireWhere((actorId, partition) => {
      seen.set(actorId, partition);
      return partition === 1;
    });
    expect(hashes).to.equal(hashesBefore);
    expect(seen.size).to.equal(ids.length);
    for (const id of ids) expect(seen.get(id)).to.equal(partitionOf(id, PARTITIONS));
    expect(system.activeCount).to.equal(ids.length - inOne.length);
    // A retired actor comes back from its journal; one that stayed kept its state in memory.
    expect(await system.ask<number>(inOne[0] as string, { op: "add" })).to.equal(2);
    expect(system.activeCount).to.equal(ids.length - inOne.length + 1);
  });
});
