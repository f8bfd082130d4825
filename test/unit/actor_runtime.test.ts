// The actor runtime on a real LMDB journal in a temp dir, with a tiny counter
// actor so that the runtime's own rules are what is tested.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import pino from "pino";
import { ActorSystem } from "../../src/actors/runtime/actor_system";
import type { ActorBehavior } from "../../src/actors/runtime/behavior";
import { systemClock } from "../../src/clock";
import { QmError } from "../../src/errors";
import { LmdbJournal } from "../../src/journal/lmdb_journal";
import { MAILBOX_DEPTH_MAX } from "../../src/limits";

interface Counter {
  value: number;
  wakeAtMs: number | null;
  wakes: number;
}

type CounterMsg =
  | { op: "add"; n: number }
  | { op: "get" }
  | { op: "refuse" }
  | { op: "crash" }
  | { op: "wakeAt"; atMs: number }
  | { op: "slow"; ms: number };

type CounterEvent = { t: "added"; n: number } | { t: "wakeAt"; atMs: number | null } | { t: "woke" };

const counterBehavior: ActorBehavior<Counter, CounterMsg> = {
  kind: "counter",
  initialState: () => ({ value: 0, wakeAtMs: null, wakes: 0 }),
  applyEvent(state, event) {
    const e = event as CounterEvent;
    if (e.t === "added") state.value += e.n;
    else if (e.t === "wakeAt") state.wakeAtMs = e.atMs;
    else {
      state.wakes += 1;
      state.wakeAtMs = null;
    }
  },
  toSnapshot: (s) => s,
  fromSnapshot: (_k, s) => s as Counter,
  snapshotWeight: () => 1,
  wakeAtMs: (s) => s.wakeAtMs,
  onTurnStart(ctx) {
    if (ctx.state.wakeAtMs !== null && ctx.state.wakeAtMs <= ctx.nowMs) ctx.emit({ t: "woke" });
  },
  async handle(ctx, m) {
    switch (m.op) {
      case "add":
        ctx.emit({ t: "added", n: m.n });
        return ctx.state.value;
      case "get":
        return ctx.state.value;
      case "refuse":
        throw new QmError("FAILED_PRECONDITION", "refused");
      case "crash":
        ctx.emit({ t: "added", n: 1000 });
        throw new TypeError("a bug");
      case "wakeAt":
        ctx.emit({ t: "wakeAt", atMs: m.atMs });
        return null;
      case "slow":
        await new Promise((resolve) => setTimeout(resolve, m.ms));
        return ctx.state.value;
    }
  },
};

describe("actor runtime", () => {
  let dir: string;
  let journal: LmdbJournal;
  let system: ActorSystem;
  const turns: number[] = [];

  async function boot(opts: { idleMs?: number; activeMax?: number } = {}): Promise<void> {
    journal = new LmdbJournal({
      path: path.join(dir, "journal"),
      auditRetention: { maxAgeMs: 1e12, maxPerActor: 1000 },
      clock: systemClock,
    });
    await journal.open();
    system = new ActorSystem({
      journal,
      clock: systemClock,
      logger: pino({ level: "silent" }),
      behaviors: [counterBehavior as ActorBehavior<unknown, unknown>],
      idleMs: opts.idleMs ?? 60_000,
      activeMax: opts.activeMax ?? 1000,
      timerTickMs: 20,
      onTurn: (_kind, messages) => turns.push(messages),
    });
    await system.start();
  }

  async function shutdown(): Promise<void> {
    await system.stop();
    await journal.close();
  }

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "qm-runtime-"));
    turns.length = 0;
  });

  afterEach(async () => {
    await shutdown();
    await rm(dir, { recursive: true, force: true });
  });

  it("applies concurrent messages one at a time and group-commits them: fewer journal appends than messages", async () => {
    await boot();
    const before = journal.stats();
    const results = await Promise.all(Array.from({ length: 500 }, () => system.ask<number>("counter/a", { op: "add", n: 1 })));
    expect(await system.ask<number>("counter/a", { op: "get" })).to.equal(500);
    // Each reply saw a distinct running total: no two turns interleaved.
    expect(new Set(results).size).to.equal(500);
    const appends = journal.stats().appends - before.appends;
    expect(appends).to.be.below(100);
    expect(Math.max(...turns)).to.be.greaterThan(1);
  });

  it("answers OVERLOADED once an actor's mailbox is full, and serves the queued ones", async () => {
    await boot();
    const slow = system.ask("counter/b", { op: "slow", ms: 200 });
    // The actor is still loading, so the slow message holds one of the slots too.
    const queued = Array.from({ length: MAILBOX_DEPTH_MAX - 1 }, () => system.ask<number>("counter/b", { op: "add", n: 1 }));
    let overloaded: unknown;
    try {
      await system.ask("counter/b", { op: "add", n: 1 });
    } catch (error) {
      overloaded = error;
    }
    expect(overloaded).to.be.instanceOf(QmError);
    expect((overloaded as QmError).code).to.equal("OVERLOADED");
    await slow;
    await Promise.all(queued);
    expect(await system.ask<number>("counter/b", { op: "get" })).to.equal(MAILBOX_DEPTH_MAX - 1);
  });

  it("fails only the message that hit a bug; the others of the batch are kept and the actor is rebuilt from its journal", async () => {
    await boot();
    await system.ask("counter/c", { op: "add", n: 5 });
    const outcomes = await Promise.allSettled([
      system.ask("counter/c", { op: "slow", ms: 20 }),
      system.ask("counter/c", { op: "add", n: 1 }),
      system.ask("counter/c", { op: "crash" }),
      system.ask("counter/c", { op: "add", n: 2 }),
      system.ask("counter/c", { op: "refuse" }),
    ]);
    expect(outcomes.map((o) => o.status)).to.deep.equal(["fulfilled", "fulfilled", "rejected", "fulfilled", "rejected"]);
    expect(((outcomes[2] as PromiseRejectedResult).reason as QmError).code).to.equal("INTERNAL");
    expect(((outcomes[4] as PromiseRejectedResult).reason as QmError).code).to.equal("FAILED_PRECONDITION");
    // The crashing message's +1000 is gone; the others' +1 and +2 stayed.
    expect(await system.ask<number>("counter/c", { op: "get" })).to.equal(8);
    expect(system.bugCount).to.equal(1);
    await shutdown();
    await boot();
    expect(await system.ask<number>("counter/c", { op: "get" })).to.equal(8);
  });

  it("passivates idle actors and rebuilds them from the journal on the next message", async () => {
    await boot({ idleMs: 100 });
    await system.ask("counter/d", { op: "add", n: 3 });
    expect(system.activeCount).to.equal(1);
    const deadline = Date.now() + 3000;
    while (system.activeCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(system.activeCount).to.equal(0);
    expect(await system.ask<number>("counter/d", { op: "get" })).to.equal(3);
  });

  it("keeps at most activeMax actors in memory, evicting the least recently used", async () => {
    await boot({ activeMax: 100 });
    for (let i = 0; i < 300; i++) await system.ask(`counter/e${i}`, { op: "add", n: i });
    expect(system.activeCount).to.be.at.most(100);
    expect(await system.ask<number>("counter/e7", { op: "get" })).to.equal(7);
  });

  it("wakes an actor at its stored time even after it was passivated and the node restarted", async () => {
    await boot();
    await system.ask("counter/f", { op: "wakeAt", atMs: Date.now() + 300 });
    await shutdown();
    await boot();
    const deadline = Date.now() + 3000;
    let state: number | null = null;
    while (Date.now() < deadline) {
      const recovered = await journal.recover("counter/f");
      if (recovered.wakeAtMs === null) {
        state = recovered.events.length;
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    // The wake turn ran without any message and recorded itself durably.
    expect(state).to.equal(2);
  });
});
