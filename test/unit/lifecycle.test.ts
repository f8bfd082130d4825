import { expect } from "chai";
import pino from "pino";
import { type Lifecycle, LifecycleList, lifecycle } from "../../src/lifecycle";

const silent = pino({ level: "silent" });
let tick = 0;
const monotonic = (): number => tick++;

function recorder(log: string[], name: string, failStart = false): Lifecycle {
  return lifecycle(
    name,
    async () => {
      log.push(`start ${name}`);
      if (failStart) throw new Error(`${name} failed`);
    },
    async () => {
      log.push(`stop ${name}`);
    },
  );
}

describe("LifecycleList", () => {
  it("starts parts in list order and stops them in reverse", async () => {
    const log: string[] = [];
    const list = new LifecycleList(["lock", "journal", "server"].map((n) => recorder(log, n)), silent, monotonic);
    await list.start();
    await list.stop();
    expect(log).to.deep.equal(["start lock", "start journal", "start server", "stop server", "stop journal", "stop lock"]);
  });

  it("stops the parts already started, the failed one included, when a start fails, and rethrows", async () => {
    const log: string[] = [];
    const list = new LifecycleList([recorder(log, "lock"), recorder(log, "journal", true), recorder(log, "server")], silent, monotonic);
    let failure: unknown;
    await list.start().catch((e: unknown) => (failure = e));
    expect((failure as Error).message).to.equal("journal failed");
    expect(log).to.deep.equal(["start lock", "start journal", "stop journal", "stop lock"]);
  });

  it("stops each part once however often stop() is called, and goes on past a part that fails to stop", async () => {
    const log: string[] = [];
    const failing = lifecycle(
      "metrics",
      async () => undefined,
      async () => {
        log.push("stop metrics");
        throw new Error("boom");
      },
    );
    const list = new LifecycleList([recorder(log, "lock"), failing, recorder(log, "server")], silent, monotonic);
    await list.start();
    await Promise.all([list.stop(), list.stop()]);
    await list.stop();
    expect(log).to.deep.equal(["start lock", "start server", "stop server", "stop metrics", "stop lock"]);
  });
});
