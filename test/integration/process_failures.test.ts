// How the server process ends when it cannot or must not go on: a port in use
// (named by its variable), a bad crash-point name, an unhandled rejection.

import { expect } from "chai";
import { createServer, type Server } from "node:net";
import { runProcess } from "../support/run_process";
import { freePort, makeTempDir, SERVER_MAIN } from "../support/server_process";

const EXIT_DEADLINE_MS = 30_000;

async function serverEnv(): Promise<Record<string, string>> {
  return {
    QM_LISTEN: `127.0.0.1:${await freePort()}`,
    QM_METRICS_LISTEN: "127.0.0.1:0",
    QM_DATA_DIR: await makeTempDir("qm-process-"),
    QM_LOG_LEVEL: "info",
  };
}

describe("server process failures (integration)", function () {
  this.timeout(60_000);
  let occupied: Server;
  let occupiedAddress: string;

  before(async () => {
    occupied = createServer();
    await new Promise<void>((resolve) => occupied.listen(0, "127.0.0.1", resolve));
    const address = occupied.address();
    occupiedAddress = `127.0.0.1:${typeof address === "object" && address !== null ? address.port : 0}`;
  });

  after(() => new Promise<void>((resolve) => occupied.close(() => resolve())));

  for (const variable of ["QM_LISTEN", "QM_METRICS_LISTEN"]) {
    it(`exits 1 naming ${variable} and the address when the port is in use, without grpc-js's own stderr line`, async () => {
      const env = { ...(await serverEnv()), [variable]: occupiedAddress };
      const ended = await runProcess([process.execPath, SERVER_MAIN], env, EXIT_DEADLINE_MS);
      expect(ended.code).to.equal(1);
      expect(ended.stderr).to.equal(`quartermaster: cannot start: ${variable}=${occupiedAddress}: cannot listen: address already in use\n`);
      const fatal = ended.stdout
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as { level: number; msg: string; err?: { message: string } })
        .find((r) => r.level === 60);
      expect(fatal?.msg).to.equal("failed to start");
      expect(fatal?.err?.message).to.equal(`${variable}=${occupiedAddress}: cannot listen: address already in use`);
    });
  }

  it("refuses an unknown crash point in QM_FAULT_CRASH_POINTS with exit 2, naming it", async () => {
    const ended = await runProcess([process.execPath, SERVER_MAIN], { ...(await serverEnv()), QM_FAULT_CRASH_POINTS: "order.saga.intent,nope" }, EXIT_DEADLINE_MS);
    expect(ended.code).to.equal(2);
    expect(ended.stderr).to.include("QM_FAULT_CRASH_POINTS: unknown crash point nope");
  });

  it("logs an unhandled rejection at fatal and exits 70, so a supervisor restarts a clean process", async () => {
    // Loads the real server; SIGUSR2, sent once it serves, leaves one rejection unhandled.
    const script = `
      require(${JSON.stringify(SERVER_MAIN)});
      process.on("SIGUSR2", () => void Promise.reject(new Error("stray rejection from a bug")));`;
    const ended = await runProcess([process.execPath, "-e", script], await serverEnv(), EXIT_DEADLINE_MS, {
      onStdout: (stdout, child) => {
        if (stdout.includes('"msg":"quartermaster serving"')) child.kill("SIGUSR2");
      },
    });
    expect(ended.code, ended.stdout + ended.stderr).to.equal(70);
    const records = ended.stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { level: number; msg: string; err?: { message: string } });
    expect(records.some((r) => r.msg === "quartermaster serving")).to.equal(true);
    const fatal = records.find((r) => r.level === 60);
    expect(fatal?.msg).to.equal("unhandled rejection: exiting");
    expect(fatal?.err?.message).to.equal("stray rejection from a bug");
  });
});
