// Rendezvous placement: balanced, stable, and moving only what must move.

import { expect } from "chai";
import { assignPartitions, rendezvousOwner, rendezvousScore } from "../../src/cluster/rendezvous";

const PARTITIONS = 256;
const nodes = (n: number): string[] => Array.from({ length: n }, (_, i) => `node-${i + 1}`);

function moved(before: readonly (string | undefined)[], after: readonly (string | undefined)[]): number[] {
  const out: number[] = [];
  for (let p = 0; p < before.length; p++) if (before[p] !== after[p]) out.push(p);
  return out;
}

describe("rendezvous placement", () => {
  it("pins scores and owners, since every node must compute the same table across releases", () => {
    expect(rendezvousScore("node-1", 0)).to.equal(rendezvousScore("node-1", 0));
    expect(rendezvousScore("node-1", 0)).to.not.equal(rendezvousScore("node-1", 1));
    expect(rendezvousScore("node-1", 0)).to.not.equal(rendezvousScore("node-2", 0));
    // Literal values: a change of the hash would move partitions of a live cluster.
    expect([rendezvousScore("node-1", 0), rendezvousScore("node-2", 7), rendezvousScore("a", 255)]).to.deep.equal(PINNED_SCORES);
  });

  it("gives no owner without members and every partition to a lone member", () => {
    expect(rendezvousOwner([], 3)).to.equal(undefined);
    expect(new Set(assignPartitions(["solo"], PARTITIONS))).to.deep.equal(new Set(["solo"]));
  });

  it("does not depend on the order in which members are listed", () => {
    const members = nodes(7);
    expect(assignPartitions([...members].reverse(), PARTITIONS)).to.deep.equal(assignPartitions(members, PARTITIONS));
  });

  for (let n = 2; n <= 10; n++) {
    it(`moves only the joiner's share when node ${n} joins ${n - 1}, and only the leaver's partitions when it leaves`, () => {
      const before = assignPartitions(nodes(n - 1), PARTITIONS);
      const after = assignPartitions(nodes(n), PARTITIONS);
      const joined = `node-${n}`;
      const movedOnJoin = moved(before, after);
      // Every moved partition went to the joiner, and the joiner got nothing else.
      for (const p of movedOnJoin) expect(after[p], `partition ${p}`).to.equal(joined);
      expect(after.filter((o) => o === joined)).to.have.length(movedOnJoin.length);
      // About 1/N: within 1.6x of the fair share, and never zero (the joiner is useful).
      const fair = PARTITIONS / n;
      expect(movedOnJoin.length, `moved ${movedOnJoin.length} of ${PARTITIONS} (fair share ${fair.toFixed(1)})`).to.be.within(1, 1.6 * fair);

      // Leaving is the mirror image: only the leaver's partitions move.
      const movedOnLeave = moved(after, before);
      expect(movedOnLeave).to.deep.equal(movedOnJoin);
    });
  }

  it("balances 256 partitions over 3 nodes within 30% of the fair share", () => {
    const table = assignPartitions(nodes(3), PARTITIONS);
    for (const node of nodes(3)) {
      const owned = table.filter((o) => o === node).length;
      expect(owned, node).to.be.within((PARTITIONS / 3) * 0.7, (PARTITIONS / 3) * 1.3);
    }
  });
});

const PINNED_SCORES = [215627565, 849097921, 788857715];
