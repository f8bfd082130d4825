// What authentication (QM_AUTH_CONFIG) costs per call, in two parts.
//
// 1. In process: AuthGate.admit for one call, with the open gate, a token
//    already verified (the cache), and a token verified from scratch (ES256 and
//    RS256 signature checks): what the cache saves.
// 2. The real server (dist/src/main.js, pinned to CPU 0) without and with
//    QM_AUTH_CONFIG, in alternating rounds, each answering the same fixed number
//    of calls from the raw generator on CPU 1: GetSku (an in-memory read, where
//    the gate's share is largest) and Reserve on one hot SKU (a durable write).
//    Both modes send the same authorization header, so the bytes on the wire
//    are the same and only the gate differs. The figure is the server's CPU time
//    per call (/proc/<pid>/stat), which moves far less than calls/s on a shared
//    machine; calls/s are printed for reference.
//
//   node dist/bench/auth_cost.js [--rounds 3] [--requests 30000] [--iterations 20000]

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { credentials, Metadata } from "@grpc/grpc-js";
import pino from "pino";
import { systemClock } from "../src/clock";
import { AdjustmentReason, AdjustStockRequest, GetSkuRequest, InventoryServiceClient, UpsertSkuRequest } from "../src/gen/quartermaster/v1/inventory";
import { loadAuthConfig } from "../src/security/auth_config";
import { AuthGate } from "../src/security/auth_gate";
import type { GateCall } from "../src/security/call_gate";
import { OPEN_GATE } from "../src/security/call_gate";
import { TokenVerifier } from "../src/security/tokens";
import { generateTestKey, signToken, type TestKey, writeAuthFiles } from "../test/support/security";
import { waitUntilServing } from "./health_client";
import { runLoad, scenarioFrameFactory } from "./h2_load";
import { LOOPBACK_HOST } from "./load_session";
import { choosePinning, freeLoopbackPort, pinSelf, readCpuTimeMs, runBenchMain, spawnNode, stopChild, temporaryDirs } from "./processes";
import { grpcFrame } from "./reserve_frames";

const GET_SKU_PATH = "/quartermaster.v1.InventoryService/GetSku";
const RESERVE_PATH = "/quartermaster.v1.InventoryService/Reserve";
const HOT_SKU = "hot-0";
const HOT_UNITS = 900_000_000;
const HEALTH_DEADLINE_MS = 30_000;
const CALL_DEADLINE_MS = 10_000;
const WARMUP_MS = 1_000;
/** Long enough that the request count, not the clock, ends every run. */
const DURATION_MS_MAX = 600_000;

type Mode = "open" | "auth";

interface Round {
  readonly mode: Mode;
  readonly call: "GetSku" | "Reserve";
  readonly cpuMicrosPerCall: number;
  readonly callsPerSecond: number;
}

function gateCall(callPath: string, metadata: Metadata): GateCall {
  return { path: callPath, metadata, authContext: () => ({}) };
}

/** Mean time of `once`; a promise it returns is awaited, a plain value is not (the gate answers a cached token without one). */
async function microseconds(iterations: number, once: () => unknown): Promise<number> {
  const run = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const result = once();
      if (result instanceof Promise) await result;
    }
  };
  await run(Math.min(1000, iterations));
  const started = performance.now();
  await run(iterations);
  return ((performance.now() - started) * 1000) / iterations;
}

async function inProcess(dir: string, iterations: number): Promise<void> {
  const es = await generateTestKey("es", "ES256");
  const rs = await generateTestKey("rs", "RS256");
  const config = loadAuthConfig(await writeAuthFiles(dir, { keys: [es, rs] }));
  const gate = new AuthGate({ config, clock: systemClock, logger: pino({ level: "silent" }) });
  const claims = { sub: "bench", tenant: "t", roles: ["reader"] };
  const esToken = await signToken(es, claims);
  const rsToken = await signToken(rs, claims);
  const metadata = new Metadata();
  metadata.set("authorization", `Bearer ${esToken}`);
  const call = gateCall(GET_SKU_PATH, metadata);
  const verifier = new TokenVerifier(config.tokens ?? fail("no tokens"), systemClock);
  const figures: [string, number][] = [
    ["open gate", await microseconds(iterations, () => OPEN_GATE.admit(call))],
    ["auth gate, token cached", await microseconds(iterations, () => gate.admit(call))],
    ["ES256 verification (no cache)", await microseconds(Math.ceil(iterations / 10), () => verifier.verify(esToken))],
    ["RS256 verification (no cache)", await microseconds(Math.ceil(iterations / 10), () => verifier.verify(rsToken))],
  ];
  for (const [what, micros] of figures) process.stdout.write(`in process: ${what}: ${micros.toFixed(2)} µs per call\n`);
}

function fail(message: string): never {
  throw new Error(message);
}

async function seed(address: string, metadata: Metadata): Promise<void> {
  const client = new InventoryServiceClient(address, credentials.createInsecure());
  const unary = <Req>(method: (req: Req, md: Metadata, opts: { deadline: number }, cb: (error: Error | null) => void) => unknown, request: Req): Promise<void> =>
    new Promise((resolve, reject) => {
      method.call(client, request, metadata, { deadline: Date.now() + CALL_DEADLINE_MS }, (error) => (error === null ? resolve() : reject(error)));
    });
  try {
    await unary(client.upsertSku, UpsertSkuRequest.fromPartial({ skuId: HOT_SKU, title: "hot", currency: "USD", updateMask: ["title", "currency"] }));
    await unary(
      client.adjustStock,
      AdjustStockRequest.fromPartial({ skuId: HOT_SKU, locationId: "WH1", delta: HOT_UNITS, reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED }),
    );
  } finally {
    client.close();
  }
}

async function measure(mode: Mode, authFile: string, token: string, requests: number, serverCpu: number | null): Promise<Round[]> {
  const port = await freeLoopbackPort();
  const address = `${LOOPBACK_HOST}:${port}`;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "qm-auth-cost-"));
  temporaryDirs.add(dataDir);
  const env = {
    ...process.env,
    QM_LISTEN: address,
    QM_METRICS_LISTEN: "",
    QM_DATA_DIR: dataDir,
    QM_LOG_LEVEL: "warn",
    QM_AUTH_CONFIG: mode === "auth" ? authFile : "",
  };
  const server = spawnNode({ name: `quartermaster (${mode})`, script: path.join(__dirname, "../src/main.js"), args: [], cpu: serverCpu, env });
  const headers = [["authorization", `Bearer ${token}`]] as const;
  try {
    await waitUntilServing(address, HEALTH_DEADLINE_MS, () => server.running);
    const metadata = new Metadata();
    metadata.set("authorization", `Bearer ${token}`);
    await seed(address, metadata);
    const rounds: Round[] = [];
    const getSku = grpcFrame(GetSkuRequest.encode({ skuId: HOT_SKU }).finish());
    const loads = [
      { call: "GetSku" as const, path: GET_SKU_PATH, frameFactory: () => getSku },
      {
        call: "Reserve" as const,
        path: RESERVE_PATH,
        frameFactory: scenarioFrameFactory({ scenario: "hot", runTag: `auth-cost-${mode}-${Date.now()}`, hotSkuId: HOT_SKU, skuCount: 1, seed: 1 }),
      },
    ];
    for (const load of loads) {
      const before = readCpuTimeMs(server.pid);
      const result = await runLoad({
        target: address,
        path: load.path,
        transport: "raw",
        sessions: 4,
        concurrency: 64,
        warmupMs: WARMUP_MS,
        durationMs: DURATION_MS_MAX,
        requestsMax: requests,
        frameFactory: load.frameFactory,
        headers,
      });
      const after = readCpuTimeMs(server.pid);
      if (before === null || after === null) throw new Error("server CPU time unreadable");
      if (result.errorTotal > 0) throw new Error(`${mode} ${load.call}: ${result.errorTotal} calls failed`);
      rounds.push({ mode, call: load.call, cpuMicrosPerCall: ((after - before) * 1000) / result.okTotal, callsPerSecond: result.callsPerSecond });
    }
    return rounds;
  } finally {
    await stopChild(server);
    fs.rmSync(dataDir, { recursive: true, force: true });
    temporaryDirs.delete(dataDir);
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

export async function main(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      rounds: { type: "string", default: "3" },
      requests: { type: "string", default: "30000" },
      iterations: { type: "string", default: "20000" },
    },
    strict: true,
  });
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  process.stdout.write(`pinning: ${pinning.description}\n`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qm-auth-cost-keys-"));
  temporaryDirs.add(dir);
  await inProcess(dir, Number(values.iterations));

  const key: TestKey = await generateTestKey("bench-1", "ES256");
  const authFile = await writeAuthFiles(dir, { keys: [key], principals: [{ subject: "bench", tenant: "bench", roles: ["checkout", "warehouse"] }] });
  // Valid for the whole run: expiry mid-run would turn every call into a failure.
  const token = await signToken(key, { sub: "bench", expInS: 24 * 3600 });
  const rounds: Round[] = [];
  for (let i = 0; i < Number(values.rounds); i++) {
    for (const mode of i % 2 === 0 ? (["open", "auth"] as const) : (["auth", "open"] as const)) {
      for (const round of await measure(mode, authFile, token, Number(values.requests), pinning.serverCpu)) {
        rounds.push(round);
        process.stdout.write(`round ${i + 1} ${mode} ${round.call}: ${round.cpuMicrosPerCall.toFixed(1)} µs server CPU per call, ${round.callsPerSecond.toFixed(0)} calls/s\n`);
      }
    }
  }
  for (const call of ["GetSku", "Reserve"] as const) {
    const of = (mode: Mode): Round[] => rounds.filter((r) => r.mode === mode && r.call === call);
    const open = median(of("open").map((r) => r.cpuMicrosPerCall));
    const auth = median(of("auth").map((r) => r.cpuMicrosPerCall));
    process.stdout.write(
      `median ${call}: open ${open.toFixed(1)} µs/call (${median(of("open").map((r) => r.callsPerSecond)).toFixed(0)} calls/s), ` +
        `auth ${auth.toFixed(1)} µs/call (${median(of("auth").map((r) => r.callsPerSecond)).toFixed(0)} calls/s), ratio ${(auth / open).toFixed(3)}\n`,
    );
  }
  fs.rmSync(dir, { recursive: true, force: true });
  temporaryDirs.delete(dir);
}

if (require.main === module) runBenchMain("auth_cost", (argv) => main(argv).then(() => 0));
