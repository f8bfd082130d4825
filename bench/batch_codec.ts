// ReserveBatch's own codecs in process, this build against another, in
// alternating rounds: reading and validating a request ("request"), and
// encoding a reply of granted holds held as columns ("reply"). Both builds
// must give the same bytes and columns, or it stops.
//
//   node dist/bench/batch_codec.js --dist /path/to/other/dist [--rounds 8] [--items 1000]
//
// Why in process: a codec step is a few hundred ns of an item's ~6 µs, below
// what batch_cpu.js's rounds can see on a shared machine; this shows what the
// step itself gained, batch_cpu.js whether it shows end to end.

import * as path from "node:path";
import { parseArgs } from "node:util";
import type * as Inventory from "../src/gen/quartermaster/v1/inventory";
import type * as Codec from "../src/grpc/reserve_batch_codec";
import type * as Reply from "../src/grpc/reserve_batch_reply";
import type * as Validation from "../src/grpc/validation";
import { median } from "./hot_cpu";

/** Batches per timed pass: different ids in each, so nothing is the previous pass's string again. */
const BATCHES = 50;
/** Passes per timing: long enough (tens of ms) for the clock, short enough to alternate often. */
const PASSES = 20;
const TTL_MS = 3_600_000;
const AT_MS = 1_764_625_000_123;

interface Stages {
  readonly request: () => number;
  readonly reply: () => number;
  /** What both stages produced, whole (ids read, reply bytes), to compare the builds once before timing them. */
  readonly outputs: () => string;
}

function load(dist: string, items: number): Stages {
  const at = (...parts: string[]): string => path.resolve(dist, "src", ...parts);
  const codec = require(at("grpc", "reserve_batch_codec")) as typeof Codec;
  const { ReserveBatchReply } = require(at("grpc", "reserve_batch_reply")) as typeof Reply;
  const { validateReserveBatch } = require(at("grpc", "validation")) as typeof Validation;
  const { ReserveBatchRequest } = require(at("gen", "quartermaster", "v1", "inventory")) as typeof Inventory;
  // Ids shaped like bench:compare's batch-hot (run tag, call, item).
  const ids = Array.from({ length: BATCHES }, (_, b) => Array.from({ length: items }, (_, i) => `bench-r${b}x-${b}-${i}`));
  const requests = ids.map((batch) =>
    Buffer.from(ReserveBatchRequest.encode({ items: batch.map((reservationId) => ({ reservationId, skuId: "hot-0", quantity: 1, locationId: "", ttl: { seconds: TTL_MS / 1000, nanos: 0 } })) }).finish()),
  );
  const replies = ids.map((batch) => {
    const r = new ReserveBatchReply({ ids: batch, skuIds: batch.map(() => "hot-0"), quantities: batch.map(() => 1), locationIds: batch.map(() => ""), ttlsMs: batch.map(() => TTL_MS) });
    batch.forEach((_, i) => r.grant(i, "wh-1", AT_MS));
    return r;
  });
  return {
    request: () => requests.reduce((n, bytes) => n + validateReserveBatch(codec.decodeReserveBatchRequest(bytes)).ids.length, 0),
    reply: () => replies.reduce((n, r) => n + codec.encodeReserveBatchResponse(r).length, 0),
    outputs: () =>
      JSON.stringify([requests.map((bytes) => validateReserveBatch(codec.decodeReserveBatchRequest(bytes))), replies.map((r) => codec.encodeReserveBatchResponse(r).toString("base64"))]),
  };
}

/** ns per item of one stage, over PASSES passes. */
function timeNs(stage: () => number, items: number): number {
  const start = process.hrtime.bigint();
  for (let p = 0; p < PASSES; p++) stage();
  return Number(process.hrtime.bigint() - start) / (PASSES * BATCHES * items);
}

function main(argv: readonly string[]): void {
  const { values } = parseArgs({
    args: [...argv],
    options: { dist: { type: "string" }, rounds: { type: "string", default: "8" }, items: { type: "string", default: "1000" } },
    strict: true,
  });
  if (values.dist === undefined) throw new Error("--dist /path/to/other/dist is required");
  const rounds = Number(values.rounds);
  const items = Number(values.items);
  const builds: [string, Stages][] = [
    ["other", load(values.dist, items)],
    ["this", load(path.resolve(__dirname, ".."), items)],
  ];
  // A faster step that answers otherwise is no result.
  if (builds[0]?.[1].outputs() !== builds[1]?.[1].outputs()) throw new Error("the builds read or encode differently");
  for (const stage of ["request", "reply"] as const) {
    for (let w = 0; w < 3; w++) for (const [, s] of builds) s[stage]();
    const ns: Record<string, number[]> = { other: [], this: [] };
    for (let r = 0; r < rounds; r++) {
      // Reversed on odd rounds, so neither build always runs on the warmer heap.
      const order = r % 2 === 0 ? builds : [...builds].reverse();
      for (const [name, s] of order) ns[name]?.push(timeNs(s[stage], items));
    }
    const a = ns.other ?? [];
    const b = ns.this ?? [];
    const ratios = b.map((v, i) => v / (a[i] ?? Number.NaN));
    process.stdout.write(
      `${stage}: ns/item other ${median(a).toFixed(0)} this ${median(b).toFixed(0)}; this/other ${median(ratios).toFixed(2)} (per round ${ratios.map((x) => x.toFixed(2)).join(" ")})\n`,
    );
  }
}

main(process.argv.slice(2));
