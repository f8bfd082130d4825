// The data-directory lock with real servers: a second server that reaches the
// directory from another network namespace or through a bind mount must
// refuse before serving, and a node killed on a full disk must start again.

import { spawn } from "node:child_process";
import { mkdir, open, rm } from "node:fs/promises";
import path from "node:path";
import { expect } from "chai";
import { seedSku } from "../support/fixtures";
import { runServerToExit } from "../support/run_process";
import {
  call,
  type Clients,
  createClients,
  makeTempDir,
  type ServerProcess,
  startServer,
} from "../support/server_process";

const IS_ROOT = process.getuid?.() === 0;
/** Small enough to fill in a moment, large enough for a fresh journal. */
const TMPFS_SIZE = "8m";

function run(command: string, args: readonly string[]): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: "inherit" });
    child.once("error", reject);
    child.once("close", (code) => resolve(code));
  });
}

describe("data directory lock with real servers (fault, root)", function () {
  this.timeout(120_000);
  const servers: ServerProcess[] = [];
  const clients: Clients[] = [];
  const cleanups: (() => Promise<void>)[] = [];

  before(function () {
    if (!IS_ROOT) {
      console.log("    skipped: unshare, mount --bind and tmpfs need root");
      this.skip();
    }
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const s of servers.splice(0)) await s.kill();
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function start(dataDir?: string): Promise<[ServerProcess, Clients]> {
    const server = await startServer(dataDir === undefined ? {} : { dataDir });
    servers.push(server);
    const c = createClients(server.addr);
    clients.push(c);
    return [server, c];
  }

  it("refuses a second server in another network namespace (unshare -n) before it serves, and the first keeps its lock and pid", async () => {
    const [first, c] = await start();
    // A fresh network namespace has its loopback down; bring it up so that
    // only the lock, not the listen address, can stop the second server.
    const outcome = await runServerToExit(first.dataDir, ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']);
    expect(outcome.code, outcome.output).to.equal(1);
    expect(outcome.output).to.include(`cannot start: data directory ${first.dataDir} is in use by process ${first.pid}`);
    expect(outcome.output).not.to.include("quartermaster serving");
    // The refused server removed nothing: a third one is still told who holds the directory.
    const third = await runServerToExit(first.dataDir, []);
    expect(third.output).to.include(`data directory ${first.dataDir} is in use by process ${first.pid}`);
    await seedSku(c, "netns-1", 4);
    expect((await call(c.inventory, "getSku", { skuId: "netns-1" })).onHand).to.equal(4);
  });

  it("refuses a second server that reaches the data directory through a bind mount at another path", async () => {
    const [first, c] = await start();
    const mountPoint = `${first.dataDir}-bind`;
    await mkdir(mountPoint);
    expect(await run("mount", ["--bind", first.dataDir, mountPoint])).to.equal(0);
    cleanups.push(async () => {
      await run("umount", [mountPoint]);
      await rm(mountPoint, { recursive: true, force: true });
    });
    const outcome = await runServerToExit(mountPoint, []);
    expect(outcome.code, outcome.output).to.equal(1);
    expect(outcome.output).to.include(`cannot start: data directory ${mountPoint} is in use by process ${first.pid}`);
    await seedSku(c, "bind-1", 2);
    expect((await call(c.inventory, "getSku", { skuId: "bind-1" })).onHand).to.equal(2);
  });

  it("starts again after a SIGKILL on a full disk (a small tmpfs filled to ENOSPC) and serves what was written", async () => {
    const mountPoint = await makeTempDir("qm-full-");
    expect(await run("mount", ["-t", "tmpfs", "-o", `size=${TMPFS_SIZE}`, "tmpfs", mountPoint])).to.equal(0);
    cleanups.push(async () => {
      await run("umount", [mountPoint]);
      await rm(mountPoint, { recursive: true, force: true });
    });
    const dataDir = path.join(mountPoint, "data");
    const [first, c] = await start(dataDir);
    await seedSku(c, "full-1", 7);
    await first.kill();

    // Fill what is left, until the file system refuses.
    const filler = await open(path.join(mountPoint, "filler"), "w");
    const block = Buffer.alloc(64 * 1024);
    let full = false;
    try {
      while (!full) {
        try {
          await filler.write(block);
        } catch (error) {
          expect((error as NodeJS.ErrnoException).code).to.equal("ENOSPC");
          full = true;
        }
      }
    } finally {
      await filler.close();
    }

    const [, c2] = await start(dataDir);
    expect((await call(c2.inventory, "getSku", { skuId: "full-1" })).onHand).to.equal(7);
  });
});
