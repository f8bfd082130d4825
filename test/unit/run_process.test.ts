// test/support/run_process.ts's two hooks, on real child processes: the
// signal sent at the deadline (bench:compare's smoke test relies on SIGTERM
// reaching compare.js, so that it stops its databases) and the callback on
// stdout that lets a test act on a running program.

import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import { runProcess } from "../support/run_process";

/** Long enough for node to start and install its handler on a loaded machine. */
const CHILD_DEADLINE_MS = 5_000;
const MARK_DEADLINE_MS = 10_000;

describe("runProcess (test support)", function () {
  this.timeout(30_000);
  let dir = "";

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "qm-run-process-"));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("sends the deadline signal it is given, so the program can clean up, and rejects naming the deadline", async () => {
    const mark = path.join(dir, "got-sigterm");
    const script = `
      process.on("SIGTERM", () => { require("node:fs").writeFileSync(${JSON.stringify(mark)}, "SIGTERM"); process.exit(0); });
      setInterval(() => undefined, 1000);`;
    const run = runProcess([process.execPath, "-e", script], {}, CHILD_DEADLINE_MS, { deadlineSignal: "SIGTERM" });
    let failure: unknown;
    await run.catch((error: unknown) => (failure = error));
    expect(String(failure)).to.match(new RegExp(`did not exit within ${CHILD_DEADLINE_MS} ms`));
    const until = Date.now() + MARK_DEADLINE_MS;
    while (!existsSync(mark) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(existsSync(mark), "the child saw SIGTERM").to.equal(true);
  });

  it("hands onStdout the output so far and the child, which a test may signal once it is ready", async () => {
    const script = `
      process.on("SIGUSR2", () => process.exit(3));
      setInterval(() => undefined, 1000);
      process.stdout.write("ready\\n");`;
    const seen: string[] = [];
    const ended = await runProcess([process.execPath, "-e", script], {}, 20_000, {
      onStdout: (stdout, child) => {
        seen.push(stdout);
        if (stdout.includes("ready\n")) child.kill("SIGUSR2");
      },
    });
    expect(ended.code).to.equal(3);
    expect(ended.stdout).to.equal("ready\n");
    expect(seen).to.deep.equal(["ready\n"]);
  });
});
