import { expect } from "chai";
import { ConfigError, loadConfig } from "../../src/config";
import { parseFaultDelays, withFaultDelays } from "../../src/fault/fault_delays";
import type { Journal } from "../../src/journal/journal";
import { FAULT_DELAY_MS_MAX } from "../../src/limits";

describe("fault stalls (QM_FAULT_DELAYS)", () => {
  it("parses point=ms pairs, and empty as none", () => {
    expect([...parseFaultDelays("journal.append=2000,journal.dueWakeups=0")]).to.deep.equal([
      ["journal.append", 2000],
      ["journal.dueWakeups", 0],
    ]);
    expect(parseFaultDelays("").size).to.equal(0);
    expect(loadConfig({}).faultDelays.size).to.equal(0);
  });

  for (const bad of ["journal.fsync=10", "journal.append", "journal.append=-1", `journal.append=${FAULT_DELAY_MS_MAX + 1}`]) {
    it(`stops the start with a ConfigError naming QM_FAULT_DELAYS for "${bad}"`, () => {
      expect(() => loadConfig({ QM_FAULT_DELAYS: bad }))
        .to.throw(ConfigError)
        .with.property("message")
        .that.matches(new RegExp(`^QM_FAULT_DELAYS=${bad.replace(/[.+]/g, "\\$&")}: `));
    });
  }

  it("hands back the journal itself when no stall is set, so production pays nothing", () => {
    const journal = {} as Journal;
    expect(withFaultDelays(journal, new Map())).to.equal(journal);
  });
});
