// Restore holds the data-directory lock from the first file written to the
// end of its scrub. A node started on the directory in between (made
// deterministic by restore's beforeScrub hook, which runs the node to its
// exit while restore waits) is refused "in use", and the restore succeeds;
// when restore let go of the lock before its scrub, that node started on the
// unchecked files and the scrub then failed with "in use".

import path from "node:path";
import { expect } from "chai";
import { restoreBackup } from "../../src/backup/restore";
import { seedSku } from "../support/fixtures";
import { runQmctl, runServerToExit, type ServerExit } from "../support/run_process";
import {
  call,
  type Clients,
  createClients,
  makeTempDir,
  type ServerProcess,
  startServer,
} from "../support/server_process";

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
    let intruder: ServerExit | undefined;
    const summary = await restoreBackup(file, target, {
      beforeScrub: async () => {
        intruder = await runServerToExit(target);
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
