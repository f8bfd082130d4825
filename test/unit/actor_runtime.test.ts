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
import type { AppendRequest, Journal } from "../../src/journal/journal";
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
  notFound: (key) => new QmError("NOT_FOUND", `counter ${key} not found`),
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

  let gated: GatedJournal | undefined;

  async function boot(opts: { idleMs?: number; activeMax?: number; gate?: boolean } = {}): Promise<void> {
    journal = new LmdbJournal({
      path: path.join(dir, "journal"),
      auditRetention: { maxAgeMs: 1e12, maxPerActor: 1000 },
      clock: systemClock,
    });
    await journal.open();
    gated = opts.gate ? new GatedJournal(journal) : undefined;
    system = new ActorSystem({
      journal: gated ?? journal,
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
    gated = undefined;
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

  it("never snapshots a state that holds a failed message's events", async () => {
    await boot();
    // 499 events, so that the next append reaches the snapshot threshold (500).
    await Promise.all(Array.from({ length: 499 }, () => system.ask("counter/s", { op: "add", n: 1 })));
    // The slow message holds the turn, so add and crash share the next one.
    const slow = system.ask("counter/s", { op: "slow", ms: 30 });
    const outcomes = await Promise.allSettled([slow, system.ask("counter/s", { op: "add", n: 1 }), system.ask("counter/s", { op: "crash" })]);
    expect(outcomes.map((o) => o.status)).to.deep.equal(["fulfilled", "fulfilled", "rejected"]);
    await shutdown();
    await boot();
    const recovered = await journal.recover("counter/s");
    expect(recovered.lastSeq).to.equal(500);
    expect(await system.ask<number>("counter/s", { op: "get" })).to.equal(500);
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

  it("runs the next turn while an append is in flight, but answers nothing before its own append is durable", async () => {
    await boot({ gate: true });
    const gate = gated as GatedJournal;
    let added: number | undefined;
    let read: number | undefined;
    const add = system.ask<number>("counter/p", { op: "add", n: 4 }).then((v) => (added = v));
    while (gate.heldCount < 1) await new Promise((r) => setTimeout(r, 5));
    // A second turn (a read) runs while the first append is held: it sees the
    // new state but must not answer from it until that state is durable.
    const get = system.ask<number>("counter/p", { op: "get" }).then((v) => (read = v));
    const add2 = system.ask<number>("counter/p", { op: "add", n: 1 });
    while (gate.heldCount < 2) await new Promise((r) => setTimeout(r, 5));
    // The second turn has run (its append is held). A reply sent from undurable
    // state would already be on its way through promise callbacks: let every
    // pending callback and immediate run (no I/O can be pending, the gate holds
    // it), rather than waiting a while and hoping that was long enough.
    for (let round = 0; round < 5; round++) await new Promise((r) => setImmediate(r));
    expect([added, read]).to.deep.equal([undefined, undefined]);
    await gate.release();
    await Promise.all([add, get]);
    expect([added, read, await add2]).to.deep.equal([4, 4, 5]);
  });

  it("fails every turn after an append that failed, and rebuilds the actor from what is durable", async () => {
    await boot({ gate: true });
    const gate = gated as GatedJournal;
    const first = system.ask<number>("counter/q", { op: "add", n: 1 });
    while (gate.heldCount < 1) await new Promise((r) => setTimeout(r, 5));
    const second = system.ask<number>("counter/q", { op: "add", n: 10 });
    const read = system.ask<number>("counter/q", { op: "get" });
    while (gate.heldCount < 2) await new Promise((r) => setTimeout(r, 5));
    const settled = Promise.allSettled([first, second, read]);
    await gate.failFirst();
    const outcomes = await settled;
    expect(outcomes.map((o) => o.status)).to.deep.equal(["rejected", "rejected", "rejected"]);
    const after = system.ask<number>("counter/q", { op: "get" });
    expect(await after).to.equal(0);
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

/**
 * The real journal behind a gate that holds appends until the test releases
 * them (or fails them), to observe what the runtime does while a write is in flight.
 */
class GatedJournal implements Journal {
  private held: { request: AppendRequest; resolve: () => void; reject: (e: Error) => void }[] = [];
  constructor(private readonly inner: LmdbJournal) {}
  open(): Promise<void> {
    return this.inner.open();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  recover(actorId: string) {
    return this.inner.recover(actorId);
  }
  append(request: AppendRequest): Promise<void> {
    return new Promise((resolve, reject) => this.held.push({ request, resolve, reject }));
  }
  dueWakeups(nowMs: number, limit: number, offset?: number) {
    return this.inner.dueWakeups(nowMs, limit, offset);
  }
  readAudit(actorId: string, afterSeq: number, limit: number) {
    return this.inner.readAudit(actorId, afterSeq, limit);
  }
  stats() {
    return this.inner.stats();
  }
  get heldCount(): number {
    return this.held.length;
  }
  /** Writes the held appends in order through the real journal. */
  async release(): Promise<void> {
    for (const h of this.held.splice(0)) await this.inner.append(h.request).then(h.resolve, h.reject);
  }
  /** Fails the first held append as a disk error would; later ones go to the real journal (and fail its compare-and-set). */
  async failFirst(): Promise<void> {
    const [first, ...rest] = this.held.splice(0);
    first?.reject(new QmError("UNAVAILABLE", "disk on fire"));
    for (const h of rest) await this.inner.append(h.request).then(h.resolve, h.reject);
  }
}
