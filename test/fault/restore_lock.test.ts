// Restore holds the data-directory lock from the first file written to the
// end of its scrub. A node started on the directory in between (made
// deterministic by restore's beforeScrub hook, which runs the node to its
// exit while restore waits) is refused "in use", and the restore succeeds;
// when restore let go of the lock before its scrub, that node started on the
// unchecked files and the scrub then failed with "in use".

import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { expect } from "chai";
import { restoreBackup } from "../../src/backup/restore";
import { seedSku } from "../support/fixtures";
import { runQmctl } from "../support/run_process";
import {
  call,
  type Clients,
  createClients,
  freePort,
  makeTempDir,
  REPO_ROOT,
  SERVER_MAIN,
  type ServerProcess,
  startServer,
} from "../support/server_process";

/** How long a refused node may take to exit; one that serves instead never exits and fails the test here. */
const REFUSAL_DEADLINE_MS = 15_000;

interface Outcome {
  readonly code: number | null;
  readonly output: string;
}

/** Starts a node on dataDir and waits for it to exit; stops it (and fails) if it is still running at the deadline. */
async function runNodeUntilExit(dataDir: string): Promise<Outcome> {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, [SERVER_MAIN], {
    cwd: REPO_ROOT,
    env: { ...process.env, QM_DATA_DIR: dataDir, QM_LISTEN: `127.0.0.1:${port}`, QM_METRICS_LISTEN: "", QM_LOG_LEVEL: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => (output += d));
  child.stderr?.setEncoding("utf8").on("data", (d: string) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<"deadline">((resolve) => (timer = setTimeout(() => resolve("deadline"), REFUSAL_DEADLINE_MS)));
  const first = await Promise.race([exited, deadline]);
  clearTimeout(timer);
  if (first === "deadline") {
    child.kill("SIGTERM");
    await exited;
    throw new Error(`a node started during the restore on ${dataDir} was not refused within ${REFUSAL_DEADLINE_MS} ms; output:\n${output}`);
  }
  return { code: first, output };
}

describe("restore holds the data-directory lock through its scrub (fault)", function () {
  this.timeout(120_000);
  const servers: ServerProcess[] = [];
  const clients: Clients[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const s of servers.splice(0)) await s.kill();
  });

  it("refuses a node started between the files and the scrub with \"in use\", and the restore succeeds", async () => {
    const work = await makeTempDir("qm-restore-lock-");
    const source = await startServer();
    servers.push(source);
    const c = createClients(source.addr);
    clients.push(c);
    await seedSku(c, "rl-1", 42);
    const file = path.join(work, "node.qmbackup");
    const backup = await runQmctl(["--addr", source.addr, "backup", "--out", file]);
    expect(backup.code, backup.stderr).to.equal(0);

    const target = path.join(work, "restored");
    let intruder: Outcome | undefined;
    const summary = await restoreBackup(file, target, {
      beforeScrub: async () => {
        intruder = await runNodeUntilExit(target);
      },
    });
    expect(summary.manifest.files.length).to.be.above(0);
    expect(intruder?.code, intruder?.output).to.equal(1);
    // The restore, in this process, is the holder the refusal names.
    expect(intruder?.output).to.match(new RegExp(`data directory .* is in use by process ${process.pid}\\b`));

    // Released at the end: a node starts on the restored directory and holds the backup's stock.
    const restored = await startServer({ dataDir: target });
    servers.push(restored);
    const r = createClients(restored.addr);
    clients.push(r);
    expect((await call(r.inventory, "getSku", { skuId: "rl-1" })).onHand).to.equal(42);
  });
});
