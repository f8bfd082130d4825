// What a resident catalogue costs in memory: a node reserves once on every
// SKU of a catalogue (in order, through gRPC), then stays idle, and its memory
// is read once a second; variant against variant, in alternating rounds:
//
//   node dist/bench/resident_memory.js --template D --skus 100000 \
//     --variant 'bound10k' --variant 'bound120k QM_ACTIVE_ACTORS_MAX=120000' [--rounds 2] [--idle-s 15] [--json]
//
// D is a catalogue from `growth.js build --dir D --skus N --events-per-sku 2`.
// Every node runs with QM_ACTOR_IDLE_MS=600000 unless its variant says
// otherwise, so that what the bound admits stays in memory through the idle
// window, and the idle collector (QM_IDLE_GC_MIB) has its quiet time to
// return garbage. Reported per pass, at the end of the window: VmRSS, RssAnon
// (the private part; the rest is mostly data.mdb's mapped pages, which the
// kernel can drop), qm_actors_active and V8's heap used. Per variant after the
// first: the extra RssAnon and heap per extra resident actor, against the
// first variant of the same round. Each resident SKU holds the one hold the
// warm pass made, as a SKU in use would.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { parseCatalogVariant, warmAll } from "./catalog_grpc";
import { waitUntilServing } from "./health_client";
import { median, positive, roundOrder } from "./hot_cpu";
import { LOOPBACK_HOST } from "./load_session";
import { type MemoryFigures, choosePinning, freeLoopbackPort, pinSelf, readMemory, spawnNode, stopChild, temporaryDirs, runBenchMain } from "./processes";
import { sampleSum, scrapeText } from "./prometheus";

const HEALTH_DEADLINE_MS = 60_000;
const SAMPLE_MS = 1_000;
/** Long enough that nothing the bound admits is passivated within a pass. */
const ACTOR_IDLE_MS = 600_000;
const MIB = 1024 * 1024;

interface Pass {
  readonly variant: string;
  readonly round: number;
  readonly warmSeconds: number;
  readonly rssBytes: number;
  readonly anonBytes: number;
  readonly activeActors: number;
  readonly heapUsedBytes: number;
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      template: { type: "string" },
      skus: { type: "string", default: "100000" },
      variant: { type: "string", multiple: true },
      rounds: { type: "string", default: "2" },
      "idle-s": { type: "string", default: "15" },
      concurrency: { type: "string", default: "64" },
      sessions: { type: "string", default: "4" },
      json: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.template === undefined) throw new Error("--template DIR is required (a data directory from growth.js build)");
  const template = path.resolve(values.template);
  const skus = positive("skus", values.skus);
  const rounds = positive("rounds", values.rounds);
  const idleSeconds = positive("idle-s", values["idle-s"]);
  const concurrency = positive("concurrency", values.concurrency);
  const sessions = positive("sessions", values.sessions);
  const defaultMain = path.resolve(__dirname, "..", "src", "main.js");
  const variants = (values.variant ?? ["current"]).map((spec) => parseCatalogVariant(spec, defaultMain));
  if (!fs.existsSync(path.join(template, "journal", "data.mdb"))) throw new Error(`${template} holds no journal; build it with growth.js build`);
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  log(`pinning: ${pinning.description}; load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  const passes: Pass[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const [index, variant] of roundOrder(variants, round)) {
      const port = await freeLoopbackPort();
      const metricsPort = await freeLoopbackPort();
      const address = `${LOOPBACK_HOST}:${port}`;
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "qm-resident-"));
      temporaryDirs.add(dataDir);
      fs.cpSync(variant.template ?? template, dataDir, { recursive: true });
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        QM_LISTEN: address,
        QM_METRICS_LISTEN: `${LOOPBACK_HOST}:${metricsPort}`,
        QM_DATA_DIR: dataDir,
        QM_LOG_LEVEL: "warn",
        QM_ACTOR_IDLE_MS: String(ACTOR_IDLE_MS),
        ...variant.env,
      };
      const server = spawnNode({ name: `server ${variant.name}`, script: variant.main, args: [], nodeArgs: variant.nodeArgs, cpu: pinning.serverCpu, env });
      try {
        await waitUntilServing(address, HEALTH_DEADLINE_MS, () => server.running);
        const started = performance.now();
        await warmAll(address, skus, sessions, concurrency, `m${index}-${round}-${process.pid}`);
        const warmSeconds = (performance.now() - started) / 1000;
        let last: MemoryFigures | null = null;
        for (let second = 0; second < idleSeconds; second++) {
          await sleep(SAMPLE_MS);
          last = readMemory(server.pid);
          if (last === null) throw new Error(`${variant.name}: node gone (${server.describeExit()})`);
        }
        const scraped = await scrapeText(`${LOOPBACK_HOST}:${metricsPort}`);
        if ("error" in scraped) throw new Error(`${variant.name}: metrics: ${scraped.error}`);
        const pass: Pass = {
          variant: variant.name,
          round,
          warmSeconds,
          rssBytes: last?.rssBytes ?? Number.NaN,
          anonBytes: last?.anonRssBytes ?? Number.NaN,
          activeActors: sampleSum(scraped.text, "qm_actors_active") ?? Number.NaN,
          heapUsedBytes: sampleSum(scraped.text, "qm_nodejs_heap_size_used_bytes") ?? Number.NaN,
        };
        passes.push(pass);
        log(
          `round ${round} ${variant.name.padEnd(12)} warm ${warmSeconds.toFixed(1)} s; after ${idleSeconds} s idle: VmRSS ${(pass.rssBytes / MIB).toFixed(0)} MiB, ` +
            `RssAnon ${(pass.anonBytes / MIB).toFixed(0)} MiB, heap used ${(pass.heapUsedBytes / MIB).toFixed(0)} MiB, ${pass.activeActors} actors; load ${(os.loadavg()[0] ?? 0).toFixed(1)}`,
        );
      } finally {
        await stopChild(server);
        fs.rmSync(dataDir, { recursive: true, force: true });
        temporaryDirs.delete(dataDir);
      }
    }
  }
  const first = variants[0]!.name;
  log(`\nmedians over ${rounds} alternating rounds (per-actor figures against ${first} of the same round)`);
  for (const variant of variants) {
    const mine = passes.filter((p) => p.variant === variant.name);
    const perActor = (field: (p: Pass) => number): number =>
      median(
        mine.map((p) => {
          const base = passes.find((b) => b.variant === first && b.round === p.round);
          return base === undefined || p.activeActors === base.activeActors ? Number.NaN : (field(p) - field(base)) / (p.activeActors - base.activeActors);
        }),
      );
    log(
      `${variant.name.padEnd(12)} VmRSS ${(median(mine.map((p) => p.rssBytes)) / MIB).toFixed(0)} MiB, RssAnon ${(median(mine.map((p) => p.anonBytes)) / MIB).toFixed(0)} MiB, ` +
        `heap used ${(median(mine.map((p) => p.heapUsedBytes)) / MIB).toFixed(0)} MiB, actors ${median(mine.map((p) => p.activeActors))}` +
        (variant.name === first ? "" : `; per extra actor: RssAnon ${perActor((p) => p.anonBytes).toFixed(0)} B, heap ${perActor((p) => p.heapUsedBytes).toFixed(0)} B`),
    );
  }
  if (values.json) process.stdout.write(`${JSON.stringify({ passes })}\n`);
  return 0;
}

if (require.main === module) runBenchMain("resident_memory", main);
