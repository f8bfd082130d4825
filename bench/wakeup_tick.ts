// Per-tick cost of a cluster node's due wake-up page (JetStreamJournal.dueWakeups)
// with N owned actors waiting, the old scan-and-sort against the WakeupIndex:
//
//   node dist/bench/wakeup_tick.js [--sizes 1000,10000,100000] [--due-percent 1] [--ticks 200]
//
// N actors (SKUs with a live hold, unpaid orders) over 16 owned partitions,
// due times spread over the next 10 minutes, of which --due-percent are due
// now. A tick asks for the first page (WAKEUPS_PER_TICK_MAX); between ticks,
// as the woken actors would, a page's worth of actors move their wake-up on
// (untimed for the tick, timed as "set" per change). Prints, per N and kind,
// the median and p99 microseconds of a tick (wall), its mean CPU (user
// time, robust to a loaded machine) and the mean wall time per set.

import { parseArgs } from "node:util";
import { WakeupIndex } from "../src/journal/wakeup_index";
import { WAKEUPS_PER_TICK_MAX } from "../src/limits";
import { WakeupScan } from "../test/support/wakeup_scan";

const PARTITIONS = 16;

interface Index {
  claim(partition: number): void;
  set(partition: number, actorId: string, atMs: number | null): boolean;
  due(nowMs: number, limit: number, offset: number): string[];
}

function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

function run(kind: string, index: Index, n: number, duePercent: number, ticks: number): void {
  const random = xorshift(n);
  const nowMs = 1_000_000;
  for (let p = 0; p < PARTITIONS; p++) index.claim(p);
  const at = (): number => (random() * 100 < duePercent ? nowMs - Math.floor(random() * 1000) : nowMs + 1 + Math.floor(random() * 600_000));
  for (let i = 0; i < n; i++) index.set(i % PARTITIONS, `sku/s${i}`, at());
  const tickUs: number[] = [];
  let tickCpuUs = 0;
  let setNs = 0n;
  let sets = 0;
  let pageTotal = 0;
  for (let t = 0; t < ticks; t++) {
    const cpuBegan = process.cpuUsage().user;
    const began = process.hrtime.bigint();
    const page = index.due(nowMs, WAKEUPS_PER_TICK_MAX, 0);
    tickUs.push(Number(process.hrtime.bigint() - began) / 1000);
    tickCpuUs += process.cpuUsage().user - cpuBegan;
    pageTotal += page.length;
    // The woken actors move their wake-ups on; as many others get a new hold.
    const moved = Math.max(page.length, 50);
    const beganSets = process.hrtime.bigint();
    for (let k = 0; k < moved; k++) {
      const i = Math.floor(random() * n);
      index.set(i % PARTITIONS, `sku/s${i}`, at());
    }
    setNs += process.hrtime.bigint() - beganSets;
    sets += moved;
  }
  tickUs.sort((a, b) => a - b);
  console.log(
    `${kind.padEnd(6)} n=${String(n).padStart(7)} tick median ${quantile(tickUs, 0.5).toFixed(1).padStart(9)} us  p99 ${quantile(tickUs, 0.99).toFixed(1).padStart(9)} us  CPU/tick ${(tickCpuUs / ticks).toFixed(1).padStart(8)} us  set ${(Number(setNs) / sets / 1000).toFixed(2)} us  page ${(pageTotal / ticks).toFixed(0)}`,
  );
}

function main(): void {
  const { values } = parseArgs({
    options: {
      sizes: { type: "string", default: "1000,10000,100000" },
      "due-percent": { type: "string", default: "1" },
      ticks: { type: "string", default: "200" },
    },
  });
  const sizes = values.sizes.split(",").map(Number);
  const duePercent = Number(values["due-percent"]);
  const ticks = Number(values.ticks);
  for (const n of sizes) {
    // Alternating, so both see the same machine load.
    for (let round = 0; round < 2; round++) {
      run("scan", new WakeupScan(), n, duePercent, ticks);
      run("index", new WakeupIndex(), n, duePercent, ticks);
    }
  }
}

main();
