// Damaged and lost journals, on copies of a data directory a real server
// populated with 200 SKUs and 200 orders: a zeroed page, truncations, zeroed
// meta pages, changed bytes, a deleted or swapped journal, qmctl scrub, and
// a full disk on a small tmpfs.

import { closeSync, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { cp, readFile, rm, stat, truncate, unlink } from "node:fs/promises";
import path from "node:path";
import { status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { expect } from "chai";
import { run as runQmctl } from "../../src/cli/qmctl";
import { AdjustmentReason } from "../../src/gen/quartermaster/v1/inventory";
import { OrderState } from "../../src/gen/quartermaster/v1/order";
import { scrubDataDir } from "../../src/journal/scrub";
import { seedSku } from "../support/fixtures";
import { type ProcessRun, runProcess } from "../support/run_process";
import {
  call,
  type Clients,
  createClients,
  decodeStatusDetails,
  makeTempDir,
  SERVER_MAIN,
  type ServerProcess,
  startServer,
} from "../support/server_process";

const SKUS = 200;
const PAGE_BYTES = 4096;
const skuId = (i: number): string => `sku-${String(i).padStart(3, "0")}`;
const orderId = (i: number): string => `order-${String(i).padStart(3, "0")}`;
/** A delta no other record holds, so its msgpack bytes (cd 10 92) can be found in the file. */
const MARKED_DELTA = 4242;

interface Expected {
  readonly skus: Map<string, { onHand: number; reserved: number; title: string }>;
  readonly orders: Map<string, OrderState>;
}

function journalFile(dataDir: string): string {
  return path.join(dataDir, "journal", "data.mdb");
}

function grpcCode(error: unknown): number | undefined {
  return typeof error === "object" && error !== null && "code" in error && typeof error.code === "number" ? error.code : undefined;
}

/** Runs the server to its exit (it must refuse to start); returns its exit code and stderr. */
function runToExit(dataDir: string, env: Record<string, string> = {}): Promise<ProcessRun> {
  return runProcess([process.execPath, SERVER_MAIN], { QM_LISTEN: "127.0.0.1:0", QM_METRICS_LISTEN: "", QM_DATA_DIR: dataDir, QM_LOG_LEVEL: "warn", ...env }, 20_000);
}

/** Rewrites every occurrence of `from` in the file with `to` (same length); returns how many. */
function replaceBytes(file: string, from: Buffer, to: Buffer): number {
  const fd = openSync(file, "r+");
  try {
    const size = fstatSync(fd).size;
    const bytes = Buffer.alloc(size);
    readSync(fd, bytes, 0, size, 0);
    let count = 0;
    for (let at = bytes.indexOf(from); at !== -1; at = bytes.indexOf(from, at + 1)) {
      writeSync(fd, to, 0, to.length, at);
      count++;
    }
    return count;
  } finally {
    closeSync(fd);
  }
}

function zeroPage(file: string, page: number): void {
  const fd = openSync(file, "r+");
  try {
    writeSync(fd, Buffer.alloc(PAGE_BYTES), 0, PAGE_BYTES, page * PAGE_BYTES);
  } finally {
    closeSync(fd);
  }
}

describe("journal integrity (fault)", function () {
  this.timeout(300_000);
  const servers: ServerProcess[] = [];
  const clients: Clients[] = [];
  const dirs: string[] = [];
  let golden = "";
  const expected: Expected = { skus: new Map(), orders: new Map() };

  async function start(dataDir: string, env: Record<string, string> = {}): Promise<[ServerProcess, Clients]> {
    const server = await startServer({ dataDir, env: { QM_LOG_LEVEL: "info", ...env } });
    servers.push(server);
    const c = createClients(server.addr);
    clients.push(c);
    return [server, c];
  }

  async function copyOfGolden(): Promise<string> {
    const dir = await makeTempDir("qm-integrity-");
    dirs.push(dir);
    await cp(golden, dir, { recursive: true });
    return dir;
  }

  before(async () => {
    golden = await makeTempDir("qm-golden-");
    dirs.push(golden);
    const [server, c] = await start(golden);
    for (let from = 0; from < SKUS; from += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, k) => seedSku(c, skuId(from + k), 10 + from + k)));
    }
    await call(c.inventory, "adjustStock", {
      skuId: skuId(42),
      locationId: "wh-1",
      delta: MARKED_DELTA,
      reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED,
      note: "marked",
      idempotencyKey: "",
    });
    for (let from = 0; from < SKUS; from += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, k) =>
          call(c.order, "createOrder", {
            orderId: orderId(from + k),
            customerId: "c",
            lines: [{ skuId: skuId(from + k), quantity: 1 }],
            paymentTimeout: { seconds: 3600, nanos: 0 },
          }),
        ),
      );
    }
    for (let i = 0; i < SKUS; i++) {
      const sku = await call(c.inventory, "getSku", { skuId: skuId(i) });
      expected.skus.set(skuId(i), { onHand: sku.onHand, reserved: sku.reserved, title: sku.title });
      const order = await call(c.order, "getOrder", { orderId: orderId(i) });
      expected.orders.set(orderId(i), order.state);
    }
    expect(expected.skus.get(skuId(42))?.onHand).to.equal(10 + 42 + MARKED_DELTA);
    expect(expected.orders.get(orderId(7))).to.equal(OrderState.ORDER_STATE_AWAITING_PAYMENT);
    expect(await server.stop()).to.equal(0);
    servers.splice(0);
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const s of servers.splice(0)) await s.kill();
  });

  after(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  /**
   * Reads every SKU and order. Damaged actors must answer DATA_LOSS with
   * reason JOURNAL_CORRUPT naming them; every other one must answer exactly
   * as before the damage. Returns the damaged actor ids.
   */
  async function readAll(c: Clients): Promise<Set<string>> {
    const damaged = new Set<string>();
    const checkLoss = (error: unknown, actorId: string): void => {
      expect(grpcCode(error), `${actorId}: ${String(error)}`).to.equal(GrpcStatus.DATA_LOSS);
      const info = decodeStatusDetails(error as ServiceError).errorInfo;
      expect(info?.reason).to.equal("JOURNAL_CORRUPT");
      damaged.add(info?.metadata.actorId ?? "?");
    };
    for (let i = 0; i < SKUS; i++) {
      try {
        const sku = await call(c.inventory, "getSku", { skuId: skuId(i) });
        expect({ onHand: sku.onHand, reserved: sku.reserved, title: sku.title }, skuId(i)).to.deep.equal(expected.skus.get(skuId(i)));
      } catch (error) {
        if (grpcCode(error) === undefined) throw error;
        checkLoss(error, `sku/${skuId(i)}`);
      }
      try {
        const order = await call(c.order, "getOrder", { orderId: orderId(i) });
        expect(order.state, orderId(i)).to.equal(expected.orders.get(orderId(i)));
      } catch (error) {
        if (grpcCode(error) === undefined) throw error;
        checkLoss(error, `order/${orderId(i)}`);
      }
    }
    return damaged;
  }

  /** A zeroed page that damages some actors but not most: found with scrub, judged by the server. */
  async function zeroSomeLeafPage(): Promise<{ dir: string; page: number; damaged: string[] }> {
    const pages = (await stat(journalFile(golden))).size / PAGE_BYTES;
    const header = Buffer.alloc(24);
    const fd = openSync(journalFile(golden), "r");
    const candidates: number[] = [];
    try {
      for (let page = 2; page < pages; page++) {
        readSync(fd, header, 0, 24, page * PAGE_BYTES);
        // A leaf page (P_LEAF in the flags at byte 18) that names itself; free pages can look the same and damage nothing.
        if (header.readBigUInt64LE(0) === BigInt(page) && (header.readUInt16LE(18) & 0x02) !== 0) candidates.push(page);
      }
    } finally {
      closeSync(fd);
    }
    for (const page of candidates.reverse()) {
      const dir = await copyOfGolden();
      zeroPage(journalFile(dir), page);
      const report = await scrubDataDir(dir);
      const damaged = report.damaged.map((d) => d.actorId);
      if (damaged.length > 0 && damaged.length < SKUS / 2) return { dir, page, damaged };
    }
    throw new Error(`no leaf page among ${candidates.length} damages only a few actors`);
  }

  it("fails only the actors on a zeroed page with DATA_LOSS/JOURNAL_CORRUPT, logs each once, and keeps serving reads and writes", async () => {
    const { dir, damaged: scrubbed } = await zeroSomeLeafPage();
    const [server, c] = await start(dir);
    const damaged = await readAll(c);
    expect([...damaged].sort()).to.deep.equal([...scrubbed].sort());
    expect(damaged.size).to.be.within(1, SKUS / 2);
    // Asked again: still DATA_LOSS, still logged only once per actor.
    await readAll(c);
    const healthy = [...expected.skus.keys()].filter((id) => !damaged.has(`sku/${id}`));
    const writable = healthy[0] as string;
    const before = expected.skus.get(writable)?.onHand ?? 0;
    const adjusted = await call(c.inventory, "adjustStock", {
      skuId: writable,
      locationId: "wh-1",
      delta: 1,
      reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED,
      note: "",
      idempotencyKey: "",
    });
    expect(adjusted.onHand).to.equal(before + 1);
    const logLines = server.logs().split("\n").filter((line) => line.includes("journal record damaged"));
    expect(logLines.length).to.equal(damaged.size);
    for (const actorId of damaged) expect(logLines.filter((l) => l.includes(`"actorId":"${actorId}"`))).to.have.length(1);
    expect(logLines.every((l) => l.includes('"level":50'))).to.equal(true);
    const metrics = await (await fetch(`http://${server.metricsAddr}/metrics`)).text();
    expect(metrics).to.include(`qm_journal_damaged_actors_total ${damaged.size}`);
    expect(await server.stop()).to.equal(0);
  });

  it("serves no changed bytes: a changed title and a changed delta fail their SKU with DATA_LOSS, the rest answer as before", async () => {
    const dir = await copyOfGolden();
    const file = journalFile(dir);
    expect(replaceBytes(file, Buffer.from(`Item ${skuId(137)}`), Buffer.from(`Item ${skuId(137)}`.slice(0, -1) + "X"))).to.be.greaterThan(0);
    const delta = Buffer.from([0xcd, MARKED_DELTA >> 8, MARKED_DELTA & 0xff]);
    expect(replaceBytes(file, delta, Buffer.from([0xcd, MARKED_DELTA >> 8, (MARKED_DELTA & 0xff) + 1]))).to.be.greaterThan(0);
    const [server, c] = await start(dir);
    const damaged = await readAll(c);
    expect(damaged.has(`sku/${skuId(137)}`)).to.equal(true);
    expect(damaged.has(`sku/${skuId(42)}`)).to.equal(true);
    // Only a collision of the searched bytes elsewhere could damage more; none is expected.
    expect(damaged.size).to.be.at.most(4);
    expect(await server.stop()).to.equal(0);
  });

  const structural: [string, (file: string, size: number) => Promise<void>, RegExp][] = [
    ["truncated to 4 KiB", (file) => truncate(file, PAGE_BYTES), /shorter than its two 4096-byte meta pages/],
    ["truncated to half", (file, size) => truncate(file, Math.floor(size / 2 / PAGE_BYTES) * PAGE_BYTES), /it was truncated/],
    ["one page short", (file, size) => truncate(file, size - PAGE_BYTES), /it was truncated/],
    [
      "with both meta pages zeroed",
      async (file) => {
        zeroPage(file, 0);
        zeroPage(file, 1);
      },
      /meta page 0 is invalid/,
    ],
  ];
  for (const [name, damage, problem] of structural) {
    it(`refuses to start on a data.mdb ${name}: exit code 1 and one line naming the file`, async () => {
      const dir = await copyOfGolden();
      const file = journalFile(dir);
      await damage(file, (await stat(file)).size);
      const { code, stderr } = await runToExit(dir);
      expect(code, stderr).to.equal(1);
      const lines = stderr.trim().split("\n");
      expect(lines, stderr).to.have.length(1);
      expect(lines[0]).to.include(file);
      expect(lines[0]).to.match(problem);
    });
  }

  it("refuses a data directory whose data.mdb or journal/ was deleted, unless QM_ALLOW_EMPTY_JOURNAL=1", async () => {
    const dir = await copyOfGolden();
    await unlink(journalFile(dir));
    let outcome = await runToExit(dir);
    expect(outcome.code).to.equal(1);
    expect(outcome.stderr).to.match(/journal .*data\.mdb is missing.*QM_ALLOW_EMPTY_JOURNAL=1/);
    await rm(path.join(dir, "journal"), { recursive: true });
    outcome = await runToExit(dir);
    expect(outcome.code).to.equal(1);
    expect(outcome.stderr).to.include("is missing");
    const [server, c] = await start(dir, { QM_ALLOW_EMPTY_JOURNAL: "1" });
    try {
      await call(c.inventory, "getSku", { skuId: skuId(1) });
      expect.fail("the empty journal knows no SKU");
    } catch (error) {
      expect(grpcCode(error)).to.equal(GrpcStatus.NOT_FOUND);
    }
    expect(server.logs()).to.include("starting EMPTY");
    expect(await server.stop()).to.equal(0);
    // The new journal has a new identity: a plain restart is fine again.
    const [again] = await start(dir);
    expect(await again.stop()).to.equal(0);
  });

  it("refuses a journal swapped in from another data directory, and rewrites a lost IDENTITY.json from the journal", async () => {
    const other = await makeTempDir("qm-other-");
    dirs.push(other);
    const [otherServer] = await start(other);
    expect(await otherServer.stop()).to.equal(0);
    const dir = await copyOfGolden();
    await rm(path.join(dir, "journal"), { recursive: true });
    await cp(path.join(other, "journal"), path.join(dir, "journal"), { recursive: true });
    const { code, stderr } = await runToExit(dir);
    expect(code).to.equal(1);
    expect(stderr).to.include("is not the one");

    const lost = await copyOfGolden();
    const identity = await readFile(path.join(lost, "IDENTITY.json"), "utf8");
    await unlink(path.join(lost, "IDENTITY.json"));
    const [server, c] = await start(lost);
    expect((await call(c.inventory, "getSku", { skuId: skuId(5) })).onHand).to.equal(expected.skus.get(skuId(5))?.onHand);
    expect(await server.stop()).to.equal(0);
    expect(JSON.parse(await readFile(path.join(lost, "IDENTITY.json"), "utf8"))).to.deep.equal(JSON.parse(identity));
  });

  it("qmctl scrub: exit 0 on a clean directory, 1 listing every damaged actor, 5 on a directory in use, 4 on none", async () => {
    const io = (): { out: string[]; err: string[]; stdout(t: string): void; stderr(t: string): void } => {
      const sink = { out: [] as string[], err: [] as string[], stdout: (t: string) => sink.out.push(t), stderr: (t: string) => sink.err.push(t) };
      return sink;
    };
    const clean = await copyOfGolden();
    let sink = io();
    expect(await runQmctl(["scrub", "--data-dir", clean], {}, sink), sink.out.join("")).to.equal(0);
    expect(sink.out.join("")).to.match(/: clean \(records: meta 400,/);

    const damagedDir = await copyOfGolden();
    replaceBytes(journalFile(damagedDir), Buffer.from(`Item ${skuId(99)}`), Buffer.from(`Item ${skuId(98)}`));
    sink = io();
    expect(await runQmctl(["scrub", "--data-dir", damagedDir], {}, sink)).to.equal(1);
    const out = sink.out.join("");
    expect(out).to.include(`damaged sku/${skuId(99)}:`);
    expect(out.split("\n").filter((l) => l.startsWith("damaged "))).to.have.length(1);

    const [server] = await start(clean);
    sink = io();
    expect(await runQmctl(["scrub", "--data-dir", clean], {}, sink)).to.equal(5);
    expect(sink.err.join("")).to.include("in use");
    expect(await server.stop()).to.equal(0);

    sink = io();
    expect(await runQmctl(["scrub", "--data-dir", path.join(clean, "nope")], {}, sink)).to.equal(4);
  });

  it("answers RESOURCE_EXHAUSTED/DISK_FULL on a full disk, keeps serving reads, and writes again once space is freed", async function () {
    if (process.getuid?.() !== 0) this.skip();
    const mount = await makeTempDir("qm-tmpfs-");
    dirs.push(mount);
    await runCommand("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mount]);
    try {
      const dataDir = path.join(mount, "data");
      const [server, c] = await start(dataDir);
      await seedSku(c, "full-1", 1_000_000);
      // Fill the file system to the last byte.
      const filler = path.join(mount, "filler");
      const fd = openSync(filler, "w");
      const block = Buffer.alloc(64 * 1024, 1);
      try {
        for (let size = block.length; size >= 1; size = Math.floor(size / 2)) {
          for (;;) {
            try {
              writeSync(fd, block, 0, size);
            } catch {
              break;
            }
          }
        }
      } finally {
        closeSync(fd);
      }
      let reserved = 0;
      const codes: string[] = [];
      const reserve = async (i: number): Promise<void> => {
        await call(c.inventory, "reserve", { reservationId: `r-${i}`, skuId: "full-1", quantity: 1, locationId: "", ttl: { seconds: 3600, nanos: 0 } });
        reserved++;
      };
      let full: ServiceError | undefined;
      for (let i = 0; i < 20_000 && full === undefined; i += 64) {
        const outcomes = await Promise.allSettled(Array.from({ length: 64 }, (_, k) => reserve(i + k)));
        for (const outcome of outcomes) {
          if (outcome.status === "rejected") {
            const e = outcome.reason as ServiceError;
            codes.push(GrpcStatus[e.code] ?? String(e.code));
            full ??= e;
          }
        }
      }
      expect(full, "the disk never filled").to.not.equal(undefined);
      expect(new Set(codes)).to.deep.equal(new Set(["RESOURCE_EXHAUSTED"]));
      expect(decodeStatusDetails(full as ServiceError).errorInfo?.reason).to.equal("DISK_FULL");
      const sku = await call(c.inventory, "getSku", { skuId: "full-1" });
      expect(sku.reserved).to.equal(reserved);
      expect(server.logs()).to.match(/the disk holding [^"]*data[/]journal is full/);
      await unlink(filler);
      // Writes succeed again by themselves; each retry is a new reservation.
      const deadline = Date.now() + 10_000;
      let ok = false;
      for (let i = 0; !ok && Date.now() < deadline; i++) {
        ok = await reserve(100_000 + i).then(
          () => true,
          () => false,
        );
      }
      expect(ok).to.equal(true);
      expect((await call(c.inventory, "getSku", { skuId: "full-1" })).reserved).to.equal(reserved);
      expect(await server.stop()).to.equal(0);
    } finally {
      for (const c of clients.splice(0)) c.close();
      for (const s of servers.splice(0)) await s.kill();
      await runCommand("umount", [mount]);
    }
  });
});

async function runCommand(command: string, args: string[]): Promise<void> {
  const run = await runProcess([command, ...args]);
  if (run.code !== 0) throw new Error(`${command} ${args.join(" ")}: exit ${run.code}: ${run.stderr}`);
}
