import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { systemClock } from "../../src/clock";
import { QmError } from "../../src/errors";
import { LmdbJournal } from "../../src/journal/lmdb_journal";
import type { JournalObserver } from "../../src/observability/observer";

describe("LmdbJournal reports to its observer", function () {
  this.timeout(30_000);
  let dir: string;
  let journal: LmdbJournal;
  const commits: { seconds: number; appends: number }[] = [];
  const conflicts: { actorId: string; detail: string }[] = [];
  const observer: JournalObserver = {
    journalCommit: (seconds, appends) => commits.push({ seconds, appends }),
    fencingConflict: (actorId, detail) => conflicts.push({ actorId, detail }),
  };

  beforeEach(async () => {
    commits.length = 0;
    conflicts.length = 0;
    dir = mkdtempSync(join(tmpdir(), "qm-journal-observer-"));
    journal = new LmdbJournal({ path: dir, auditRetention: { maxAgeMs: 1e12, maxPerActor: 1000 }, clock: systemClock, observer });
    await journal.open();
  });

  afterEach(async () => {
    await journal.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("reports each durable write with its duration and the appends it carried, as many as stats() counts", async () => {
    await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: ["a1"] });
    await Promise.all([
      journal.append({ actorId: "sku/A", expectedLastSeq: 1, events: ["a2"] }),
      journal.append({ actorId: "sku/B", expectedLastSeq: 0, events: ["b1"] }),
    ]);
    expect(commits.length).to.equal(journal.stats().commits);
    expect(commits.reduce((sum, c) => sum + c.appends, 0)).to.equal(3);
    for (const c of commits) expect(c.seconds).to.be.within(0, 10);
  });

  it("reports a stale append as a fencing conflict of its actor, and not as a commit when nothing was written", async () => {
    await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: ["a1", "a2"] });
    const before = commits.length;
    let failure: unknown;
    await journal.append({ actorId: "sku/A", expectedLastSeq: 1, events: ["zombie"] }).catch((e: unknown) => (failure = e));
    expect((failure as QmError).code).to.equal("FENCED");
    expect(conflicts.map((c) => c.actorId)).to.deep.equal(["sku/A"]);
    expect(conflicts[0]?.detail).to.include("expected last seq 1");
    expect(commits.length).to.equal(before);
  });
});
