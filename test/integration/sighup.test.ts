// SIGHUP is the operators' "reload". A node without QM_AUTH_CONFIG has
// nothing to reload, and must not die of the signal's default action.

import { expect } from "chai";
import { HEALTH_SERVING, healthStatus, type ServerProcess, startServer } from "../support/server_process";

/** Bounds a stalled machine only: the handler logs synchronously. */
const LOG_DEADLINE_MS = 10_000;

describe("SIGHUP without QM_AUTH_CONFIG (integration)", function () {
  this.timeout(60_000);
  let server: ServerProcess | undefined;

  after(async () => {
    await server?.stop();
  });

  it("keeps serving, and logs that there is nothing to reload", async () => {
    server = await startServer({ env: { QM_LOG_LEVEL: "info" } });
    const running = server;
    process.kill(running.pid, "SIGHUP");
    const deadline = Date.now() + LOG_DEADLINE_MS;
    while (!running.logs().includes("SIGHUP: nothing to reload") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(running.logs()).to.include("SIGHUP: nothing to reload");
    expect(await healthStatus(running.addr)).to.equal(HEALTH_SERVING);
    expect(await running.stop(), "exit code after SIGTERM").to.equal(0);
    server = undefined;
  });
});
