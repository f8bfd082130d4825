// `npm run bench:compare --smoke`: every contender (echo, PostgreSQL, Redis
// twice, Quartermaster embedded and as a 3-node cluster) starts, answers, and sells out a small stock without
// overselling; the results files are written. The figures themselves are not
// asserted: this is a shared machine and the smoke cells last about a second
// (a hot cell until it has sold its 100 units and been refused 100 more).

import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import type { CompareReport } from "../../bench/compare_report";
import { type ProcessRun, runProcess } from "../support/run_process";
import { REPO_ROOT } from "../support/server_process";

/** Database start-up included; about 40 s on an idle machine, and each hot cell may take up to 20 s on a loaded one. */
const SMOKE_DEADLINE_MS = 180_000;

/** SIGTERM at the deadline, so that compare.js stops its contenders (databases included) before it exits. */
function runSmoke(outDir: string): Promise<ProcessRun> {
  return runProcess([process.execPath, path.join(REPO_ROOT, "dist/bench/compare.js"), "--smoke", "--out", outDir], {}, SMOKE_DEADLINE_MS, { deadlineSignal: "SIGTERM" });
}

describe("bench:compare --smoke", function () {
  this.timeout(SMOKE_DEADLINE_MS + 10_000);
  let outDir = "";

  before(async () => {
    outDir = await mkdtemp(path.join(tmpdir(), "qm-compare-smoke-"));
  });

  after(async () => {
    if (outDir !== "") await rm(outDir, { recursive: true, force: true });
  });

  it("runs every contender, each answers, none oversells, and the report names them all", async () => {
    const run = await runSmoke(outDir);
    expect(run.code, run.stderr).to.equal(0);
    const files = (await readdir(outDir)).sort();
    const base = files.find((f) => f.endsWith("-smoke.json"))?.replace(/\.json$/, "");
    expect(base, files.join(", ")).to.be.a("string");
    expect(files).to.include.members([`${base}.md`, `${base}.svg`]);
    const report = JSON.parse(await readFile(path.join(outDir, `${base}.json`), "utf8")) as CompareReport;
    expect(report.failures).to.deep.equal([]);
    const cells = report.measurements.map((m) => `${m.contender} ${m.workload}`);
    expect(cells).to.deep.equal([
      "echo hot",
      "pg hot",
      "pg checkout",
      "redis hot",
      "redis checkout",
      "redis-aof hot",
      "redis-aof checkout",
      "qm hot",
      "qm checkout",
      "qm batch-hot",
      "qm-cluster hot",
      "qm-cluster checkout",
      "qm-cluster batch-hot",
    ]);
    for (const m of report.measurements) {
      expect(m.check.passed, `${m.contender} ${m.workload}: ${m.check.detail}`).to.equal(true);
      // Over the whole run: at 1 s windows on a loaded machine, a slow contender's first answers may land in the drain.
      expect(m.okTotal, `${m.contender} ${m.workload} answered`).to.be.greaterThan(0);
    }
    // Each stateful contender sold the hot SKU's 100 units exactly once.
    for (const name of ["pg", "redis", "redis-aof", "qm", "qm-cluster"]) {
      const hot = report.measurements.find((m) => m.contender === name && m.workload === "hot");
      expect(hot?.check.detail, name).to.match(/^100 successes = 100 units held; final available 0/);
    }
    for (const name of ["qm", "qm-cluster"]) {
      const batch = report.measurements.find((m) => m.contender === name && m.workload === "batch-hot");
      expect(batch?.check.detail, name).to.match(/^100 reserved by \d+ calls; held 100 of 100$/);
    }
    // The cluster's CPU counts its etcd and nats-server, not only its nodes: read on the checkout cell, which runs its
    // whole window (the hot cell stops once its 200 calls are answered, which can be quicker than a clock tick of CPU).
    const clusterCheckout = report.measurements.find((m) => m.contender === "qm-cluster" && m.workload === "checkout");
    expect(clusterCheckout?.cpuMsPer1000.database, "etcd + nats-server CPU").to.be.greaterThan(0);
    const markdown = await readFile(path.join(outDir, `${base}.md`), "utf8");
    expect(markdown).to.contain("## Goals");
    expect(markdown).to.match(/Load average \(1\/5\/15 min\) at the start [\d.]+ [\d.]+ [\d.]+/);
    const svg = await readFile(path.join(outDir, `${base}.svg`), "utf8");
    expect(svg).to.match(/^<svg /);
    expect(svg.match(/<rect x=/g)?.length).to.equal(report.measurements.length);
  });
});
