// A ReserveBatch turn on one hot SKU in process, this build against another,
// in alternating rounds: the SKU actor deciding 1,000-item reserveMany
// messages on a SKU whose live holds grow as in batch_cpu.js (to 150,000), and
// the turn's event packed and sealed as the journal does before its write.
// Both builds must end with the same stock and version, or it stops.
//
//   node dist/bench/batch_turn.js --dist /path/to/other/dist [--rounds 8] [--batches 150] [--items 1000]
//
// Why in process: the decisions and the event's encoding are a fifth to a
// third of an item's server CPU, and batch_cpu.js's rounds, at the load four
// engineers make on two cores, vary by more than that (bench/README.md
// "ReserveBatch on one hot SKU", fourth round). This shows what the turn
// itself gained; batch_cpu.js whether it shows end to end.

import * as path from "node:path";
import { parseArgs } from "node:util";
import { pack } from "msgpackr";
import type * as SkuActor from "../src/actors/inventory/sku_actor";
import type { TurnContext } from "../src/actors/runtime/behavior";
import type * as Sku from "../src/domain/sku";
import type * as RecordCodec from "../src/journal/record_codec";
import { median } from "./hot_cpu";

const SKU_ID = "hot-0";
const TTL_MS = 3_600_000;
const AT_MS = 1_764_625_000_123;

interface Build {
  readonly name: string;
  /** ns per item of one pass, and what the SKU looked like after it. */
  readonly pass: (idBatches: readonly (readonly string[])[]) => { ns: number; outcome: string };
}

function load(name: string, dist: string): Build {
  const at = (...parts: string[]): string => path.resolve(dist, "src", ...parts);
  const { skuBehavior } = require(at("actors", "inventory", "sku_actor")) as typeof SkuActor;
  const { applySkuEvent, newSkuState } = require(at("domain", "sku")) as typeof Sku;
  const { actorSeed, seal, seqSeed } = require(at("journal", "record_codec")) as typeof RecordCodec;
  const seed = actorSeed(`sku/${SKU_ID}`);
  return {
    name,
    pass(idBatches) {
      const state = newSkuState(SKU_ID);
      applySkuEvent(state, { t: "defined", def: { title: "T", priceMinor: 1, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: [] }, atMs: AT_MS });
      applySkuEvent(state, { t: "adjusted", seq: 1, locationId: "wh-1", delta: 1_000_000_000, reason: "RECEIVED", key: "", atMs: AT_MS });
      let emitted: unknown[] = [];
      const ctx = {
        actorId: `sku/${SKU_ID}`,
        key: SKU_ID,
        state,
        nowMs: AT_MS,
        emit: (event: unknown) => {
          applySkuEvent(state, event as Sku.SkuEvent);
          emitted.push(event);
        },
        emitApplied: (event: unknown) => emitted.push(event),
      } as unknown as TurnContext<Sku.SkuState>;
      let bytes = 0;
      let items = 0;
      const start = process.hrtime.bigint();
      for (const ids of idBatches) {
        const cols: Sku.ReserveColumns = { ids, quantities: ids.map(() => 1), locationIds: ids.map(() => ""), ttlsMs: ids.map(() => TTL_MS) };
        skuBehavior.handle(ctx, { op: "reserveMany", cols });
        for (const event of emitted) bytes += seal(pack(event), seqSeed(seed, state.version)).length;
        emitted = [];
        items += ids.length;
      }
      const ns = Number(process.hrtime.bigint() - start) / items;
      return { ns, outcome: `reserved ${state.reserved} version ${state.version} live ${state.live.size} (${(bytes / items).toFixed(1)} journal bytes per item)` };
    },
  };
}

/** Ids as the request reader makes them: fresh strings sliced from a buffer, so no hash is cached from an earlier pass. */
function freshIds(round: number, batches: number, items: number): string[][] {
  return Array.from({ length: batches }, (_, b) => {
    const text = Array.from({ length: items }, (_, i) => `bench-r${round}x-${b}-${String(i).padStart(6, "0")}`);
    const bytes = Buffer.from(text.join(""), "latin1");
    let offset = 0;
    return text.map((id) => bytes.toString("latin1", offset, (offset += id.length)));
  });
}

function main(argv: readonly string[]): void {
  const { values } = parseArgs({
    args: [...argv],
    options: { dist: { type: "string" }, rounds: { type: "string", default: "8" }, batches: { type: "string", default: "150" }, items: { type: "string", default: "1000" } },
    strict: true,
  });
  if (values.dist === undefined) throw new Error("--dist /path/to/other/dist is required");
  const rounds = Number(values.rounds);
  const batches = Number(values.batches);
  const items = Number(values.items);
  const builds = [load("other", values.dist), load("this", path.resolve(__dirname, ".."))];
  const ns: Record<string, number[]> = { other: [], this: [] };
  const outcomes = new Set<string>();
  for (let r = -1; r < rounds; r++) {
    // Reversed on odd rounds, so neither build always runs on the warmer heap; round -1 warms up.
    const order = r % 2 === 0 ? builds : [...builds].reverse();
    for (const build of order) {
      const { ns: perItem, outcome } = build.pass(freshIds(r + 1, batches, items));
      if (r >= 0) ns[build.name]?.push(perItem);
      outcomes.add(outcome.replace(/ \(.*\)$/, ""));
      if (r === -1) process.stdout.write(`${build.name}: ${outcome}\n`);
    }
  }
  // A faster turn that decides otherwise is no result.
  if (outcomes.size !== 1) throw new Error(`the builds decided differently: ${[...outcomes].join("; ")}`);
  const a = ns.other ?? [];
  const b = ns.this ?? [];
  const ratios = b.map((v, i) => v / (a[i] ?? Number.NaN));
  process.stdout.write(`turn: ns/item other ${median(a).toFixed(0)} this ${median(b).toFixed(0)}; this/other ${median(ratios).toFixed(2)} (per round ${ratios.map((x) => x.toFixed(2)).join(" ")})\n`);
}

main(process.argv.slice(2));
