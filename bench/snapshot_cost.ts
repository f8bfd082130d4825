// What a hot SKU's snapshot costs: CPU to copy and pack it (the event loop
// stops for all of it, inside the turn that writes it) and to unpack and
// restore it (activation), and its size, for a SKU holding N live holds.
//
//   node dist/bench/snapshot_cost.js [--holds 100000] [--repeat 3] [--dist DIR]
//
// --dist takes another build's dist/ (A/B of two commits: run both in turn,
// several times, as the machine is shared). Prints one JSON line.

import * as path from "node:path";
import { parseArgs } from "node:util";
import { pack, unpack } from "msgpackr";
import type * as Sku from "../src/domain/sku";

const TTL_MS = 3_600_000;

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function main(argv: readonly string[]): void {
  const { values } = parseArgs({
    args: [...argv],
    options: { holds: { type: "string", default: "100000" }, repeat: { type: "string", default: "3" }, dist: { type: "string" } },
    strict: true,
  });
  const holds = Number(values.holds);
  const repeat = Number(values.repeat);
  const modulePath = values.dist === undefined ? "../src/domain/sku" : path.resolve(values.dist, "src", "domain", "sku");
  const sku = require(modulePath) as typeof Sku;
  const state = sku.newSkuState("hot-0");
  const now = Date.now();
  sku.applySkuEvent(state, {
    t: "defined",
    def: { title: "hot", priceMinor: 1, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: [] },
    atMs: now,
  });
  sku.applySkuEvent(state, { t: "adjusted", seq: 1, locationId: "wh-1", delta: 900_000_000, reason: "RECEIVED", key: "", atMs: now });
  // Ids shaped like the hot benchmark's (run tag, caller, counter).
  for (let i = 0; i < holds; i++) {
    sku.applySkuEvent(state, { t: "reserved", id: `v0-1-${process.pid}-${i}`, locationId: "wh-1", quantity: 1, expiresAtMs: now + TTL_MS, ttlMs: TTL_MS, atMs: now });
  }
  let encodeMs = 0;
  let restoreMs = 0;
  let bytes = 0;
  for (let r = 0; r < repeat; r++) {
    let t = cpuMs();
    const packed = pack(sku.skuToSnapshot(state));
    encodeMs += cpuMs() - t;
    bytes = packed.length;
    t = cpuMs();
    const restored = sku.skuFromSnapshot("hot-0", unpack(packed) as Sku.SkuSnapshot);
    restoreMs += cpuMs() - t;
    if (restored.live.size !== holds) throw new Error(`restored ${restored.live.size} of ${holds} holds`);
  }
  process.stdout.write(`${JSON.stringify({ build: values.dist ?? "this", holds, encodeMs: encodeMs / repeat, restoreMs: restoreMs / repeat, bytes })}\n`);
}

main(process.argv.slice(2));
