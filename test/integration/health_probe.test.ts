import { expect } from "chai";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { REPO_ROOT, type ServerProcess, startServer } from "../support/server_process";

const PROBE = path.join(REPO_ROOT, "dist/src/health_probe.js");

function probe(listen: string): { status: number | null; stdout: string } {
  const result = spawnSync(process.execPath, [PROBE], { env: { ...process.env, QM_LISTEN: listen }, encoding: "utf8", timeout: 30_000 });
  return { status: result.status, stdout: result.stdout };
}

describe("the container's health probe (integration)", function () {
  this.timeout(60_000);
  let server: ServerProcess | undefined;

  after(async () => {
    await server?.stop();
  });

  it("exits 0 for a SERVING server and 1 once it has stopped", async () => {
    server = await startServer();
    const up = probe(server.addr);
    expect(up).to.deep.equal({ status: 0, stdout: `${server.addr}: SERVING\n` });
    expect(await server.stop()).to.equal(0);
    const down = probe(server.addr);
    expect(down.status).to.equal(1);
    expect(down.stdout).to.match(/UNAVAILABLE|No connection established|ECONNREFUSED/);
  });
});
