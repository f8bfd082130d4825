// The runtime's bounds, on a real LMDB journal and a manual clock whose ticks
// the test drives: deadlines answered while a turn is stuck, the active-actor
// bound with its headroom for actors' own asks, and timers served fairly
// while many actors stay due.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import pino from "pino";
import { ActorSystem } from "../../src/actors/runtime/actor_system";
import type { ActorBehavior } from "../../src/actors/runtime/behavior";
import { ManualClock } from "../../src/clock";
import { QmError } from "../../src/errors";
import { LmdbJournal } from "../../src/journal/lmdb_journal";
import { WAKEUPS_PER_TICK_MAX } from "../../src/limits";

interface Cell {
  value: number;
  wakeAtMs: number | null;
  wakes: number;
}

type CellMsg =
  | { op: "get" }
  | { op: "hold" }
  | { op: "wakeAt"; atMs: number }
  | { op: "relay"; to: string; deadlineMs?: number }
  | { op: "fanout"; prefix: string; n: number };

type CellEvent = { t: "wakeAt"; atMs: number } | { t: "woke" };

/** Codes of the asks a "fanout" message saw refused. */
const refusals: string[] = [];

/** Messages of kind "hold" wait until the test opens the gate. */
class Gate {
  private waiters: (() => void)[] = [];
  get waiting(): number {
    return this.waiters.length;
  }
  wait(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  open(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

function cellBehavior(kind: string, gate: Gate, clearsWake: boolean): ActorBehavior<Cell, CellMsg> {
  return {
    kind,
    initialState: () => ({ value: 0, wakeAtMs: null, wakes: 0 }),
    applyEvent(state, event) {
      const e = event as CellEvent;
      if (e.t === "wakeAt") state.wakeAtMs = e.atMs;
      else {
        state.wakes += 1;
        state.wakeAtMs = null;
      }
    },
    toSnapshot: (s) => s,
    fromSnapshot: (_k, s) => s as Cell,
    snapshotWeight: () => 1,
    wakeAtMs: (s) => s.wakeAtMs,
    notFound: (key) => new QmError("NOT_FOUND", `${kind} ${key} not found`),
    // A "stuck" kind never clears its wake-up time: it stays due for ever.
    onTurnStart(ctx) {
      if (clearsWake && ctx.state.wakeAtMs !== null && ctx.state.wakeAtMs <= ctx.nowMs) ctx.emit({ t: "woke" });
    },
    async handle(ctx, m) {
      switch (m.op) {
        case "get":
          return ctx.state.wakes;
        case "hold":
          await gate.wait();
          return "held";
        case "wakeAt":
          ctx.emit({ t: "wakeAt", atMs: m.atMs });
          return null;
        case "fanout": {
          const asks = Array.from({ length: m.n }, (_, i) =>
            ctx.ask<string>(`${m.prefix}${i}`, { op: "hold" }).catch((e: unknown) => {
              refusals.push((e as QmError).code);
              return (e as QmError).code;
            }),
          );
          return Promise.all(asks);
        }
        case "relay":
          return ctx.ask(m.to, { op: "get" }, m.deadlineMs === undefined ? {} : { deadlineMs: m.deadlineMs });
      }
    },
  };
}

async function failureOf(p: Promise<unknown>): Promise<QmError> {
  try {
    await p;
  } catch (error) {
    expect(error).to.be.instanceOf(QmError);
    return error as QmError;
  }
  throw new Error("expected a failure");
}

describe("actor runtime bounds (manual clock)", () => {
  let dir: string;
  let journal: LmdbJournal;
  let system: ActorSystem;
  let clock: ManualClock;
  let gate: Gate;

  async function boot(activeMax = 1000): Promise<void> {
    journal = new LmdbJournal({
      path: path.join(dir, "journal"),
      auditRetention: { maxAgeMs: 1e12, maxPerActor: 1000 },
      clock,
    });
    await journal.open();
    system = new ActorSystem({
      journal,
      clock,
      logger: pino({ level: "silent" }),
      behaviors: [cellBehavior("cell", gate, true), cellBehavior("stuck", gate, false)] as ActorBehavior<unknown, unknown>[],
      idleMs: 3_600_000,
      activeMax,
      timerTickMs: 0,
    });
    await system.start();
  }

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "qm-bounds-"));
    clock = new ManualClock();
    gate = new Gate();
    refusals.length = 0;
  });

  afterEach(async () => {
    gate.open();
    await system.stop();
    await journal.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function waitFor(what: string, ok: () => boolean): Promise<void> {
    const deadline = Date.now() + 5000;
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setImmediate(r));
    }
  }

  it("answers DEADLINE_EXCEEDED to a message queued behind a stuck turn once its deadline passes, and serves the rest later", async () => {
    await boot();
    const held = system.ask<string>("cell/a", { op: "hold" });
    await waitFor("the hold to start", () => gate.waiting === 1);
    const late = system.ask("cell/a", { op: "get" }, { deadlineMs: clock.nowMs() + 100 });
    const patient = system.ask<number>("cell/a", { op: "get" });
    let settled = false;
    late.then(
      () => (settled = true),
      () => (settled = true),
    );
    await system.tick();
    await new Promise((r) => setImmediate(r));
    expect(settled).to.equal(false); // not yet past its deadline
    clock.advance(101);
    await system.tick();
    const error = await failureOf(late);
    expect(error.code).to.equal("DEADLINE_EXCEEDED");
    gate.open();
    expect(await held).to.equal("held");
    expect(await patient).to.equal(0);
  });

  it("answers DEADLINE_EXCEEDED to a message whose turn is waiting on another actor past its deadline", async () => {
    await boot();
    const held = system.ask<string>("cell/b", { op: "hold" });
    await waitFor("the hold to start", () => gate.waiting === 1);
    // cell/r's turn asks cell/b, which is stuck: the relay is in its turn, not queued.
    const relay = system.ask("cell/r", { op: "relay", to: "cell/b" }, { deadlineMs: clock.nowMs() + 50 });
    await new Promise((r) => setImmediate(r));
    clock.advance(51);
    await system.tick();
    expect((await failureOf(relay)).code).to.equal("DEADLINE_EXCEEDED");
    gate.open();
    await held;
  });

  it("refuses an outside caller with ACTORS_EXHAUSTED when every actor in memory is busy, and admits it once one is idle", async () => {
    await boot(100);
    const holds = Array.from({ length: 100 }, (_, i) => system.ask(`cell/h${i}`, { op: "hold" }));
    await waitFor("100 holds", () => gate.waiting === 100);
    const refused = await failureOf(system.ask("cell/one-more", { op: "get" }));
    expect(refused.code).to.equal("ACTORS_EXHAUSTED");
    expect(refused.metadata.active_max).to.equal("100");
    expect(system.activeCount).to.equal(100);
    gate.open();
    await Promise.all(holds);
    await system.whenIdle();
    expect(await system.ask<number>("cell/one-more", { op: "get" })).to.equal(0);
    expect(system.activeCount).to.be.at.most(100);
  });

  it("lets busy actors at the bound reach other actors through the headroom, and refuses them past it without waiting", async () => {
    await boot(100);
    const holds = Array.from({ length: 99 }, (_, i) => system.ask(`cell/h${i}`, { op: "hold" }));
    await waitFor("99 holds", () => gate.waiting === 99);
    // The 100th actor fills the table and, in its turn, asks 20 others to hold.
    const fanout = system.ask<string[]>("cell/fan", { op: "fanout", prefix: "cell/t", n: 20 });
    // Headroom is 10% of 100: 10 of them are activated and hold; the other 10
    // are refused at once, while everything still holds (nobody waits on the bound).
    await waitFor("10 admitted and 10 refused", () => gate.waiting === 109 && refusals.length === 10);
    expect(refusals).to.deep.equal(Array.from({ length: 10 }, () => "ACTORS_EXHAUSTED"));
    expect(system.activeCount).to.equal(110);
    // Outside callers get no headroom.
    expect((await failureOf(system.ask("cell/outside", { op: "get" }))).code).to.equal("ACTORS_EXHAUSTED");
    gate.open();
    expect((await fanout).filter((r) => r === "held")).to.have.length(10);
    await Promise.all(holds);
  });

  it("serves a timer due behind more than a page of actors that stay due, within two ticks", async () => {
    await boot(5000);
    const t0 = clock.nowMs();
    const stuck = WAKEUPS_PER_TICK_MAX + 200;
    for (let i = 0; i < stuck; i++) await system.ask(`stuck/s${String(i).padStart(5, "0")}`, { op: "wakeAt", atMs: t0 + 10 });
    // Due later than every stuck actor, so it sorts behind all of them.
    await system.ask("cell/timer", { op: "wakeAt", atMs: t0 + 20 });
    clock.advance(30);
    // Read from the journal, not by asking: an ask would run the timer's turn itself.
    let ticks = 0;
    while ((await journal.recover("cell/timer")).wakeAtMs !== null && ticks < 10) {
      await system.tick();
      await system.whenIdle();
      ticks++;
    }
    expect((await journal.recover("cell/timer")).wakeAtMs).to.equal(null);
    expect(ticks).to.be.at.most(2);
    // The stuck ones are still due, and were all dispatched too.
    expect(await journal.dueWakeups(clock.nowMs(), WAKEUPS_PER_TICK_MAX)).to.have.length(WAKEUPS_PER_TICK_MAX);
  });
});
