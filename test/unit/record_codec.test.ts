import { randomBytes } from "node:crypto";
import { crc32 as zlibCrc32 } from "node:zlib";
import { expect } from "chai";
import {
  actorSeed,
  crc32,
  decodeMeta,
  encodeMeta,
  seal,
  seqSeed,
  unseal,
  wakeupValid,
  wakeupValue,
} from "../../src/journal/record_codec";
import { qmErrorOf } from "../support/qm_error";

describe("record checksums (journal formats 2 and 3)", () => {
  it("computes zlib's CRC-32 in JavaScript for short values and natively for long ones", () => {
    for (const length of [1, 7, 64, 511, 512, 513, 4096]) {
      const bytes = randomBytes(length);
      for (const seed of [0, 1, 0x7fffffff, 0xfffffffe]) expect(crc32(bytes, seed), `${length} bytes`).to.equal(zlibCrc32(bytes, seed));
    }
    expect(actorSeed("sku/ABC-1")).to.equal(zlibCrc32("sku/ABC-1"));
    expect(actorSeed("sku/Ä")).to.equal(zlibCrc32("sku/Ä"));
  });

  it("unseals a value only under the key it was sealed for, and not after any single byte changes", () => {
    const body = Buffer.from("an event body");
    const sealed = seal(body, seqSeed(actorSeed("sku/A"), 7));
    expect(unseal(sealed, seqSeed(actorSeed("sku/A"), 7))?.toString()).to.equal("an event body");
    expect(unseal(sealed, seqSeed(actorSeed("sku/A"), 8))).to.equal(undefined);
    expect(unseal(sealed, seqSeed(actorSeed("sku/B"), 7))).to.equal(undefined);
    for (let i = 0; i < sealed.length; i++) {
      const changed = Buffer.from(sealed);
      changed[i] = (changed[i] ?? 0) ^ 0x01;
      expect(unseal(changed, seqSeed(actorSeed("sku/A"), 7)), `byte ${i}`).to.equal(undefined);
    }
    expect(unseal(Buffer.alloc(3), 0)).to.equal(undefined);
  });

  it("rejects a changed meta record or wake-up entry with DATA_LOSS/JOURNAL_CORRUPT naming the actor", () => {
    const meta = { lastSeq: 9, snapshotSeq: 4, wakeAtMs: 1_000, auditCount: 2, auditLastSeq: 2, auditOldestAtMs: 500 };
    const bytes = encodeMeta("sku/A", meta);
    expect(decodeMeta("sku/A", bytes)).to.deep.equal(meta);
    bytes.writeDoubleLE(7, 8);
    const error = qmErrorOf(() => decodeMeta("sku/A", bytes));
    expect([error.code, error.metadata.reason, error.metadata.actorId]).to.deep.equal(["DATA_LOSS", "JOURNAL_CORRUPT", "sku/A"]);
    expect(qmErrorOf(() => decodeMeta("sku/B", encodeMeta("sku/A", meta))).code).to.equal("DATA_LOSS");
    expect(wakeupValid("sku/A", 1_000, wakeupValue("sku/A", 1_000))).to.equal(true);
    expect(wakeupValid("sku/A", 1_001, wakeupValue("sku/A", 1_000))).to.equal(false);
  });
});
