// What TLS and mutual TLS on the listener cost: the real server
// (dist/src/main.js) in plaintext, TLS and mTLS, in alternating rounds, each
// answering the same number of GetSku calls from one grpc-js channel with a
// fixed number in flight. The figure is the server's CPU time per call (from
// /proc/<pid>/stat), steadier than calls/s on a shared machine; calls/s and
// the cost of a fresh connection (handshake included, one health check each)
// are printed for reference. Certificates: EC P-256 from test/support/tls.ts.
//
//   node dist/bench/tls_cost.js [--rounds 3] [--calls 20000] [--in-flight 16] [--connections 200]

import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { type ChannelCredentials, credentials, Metadata } from "@grpc/grpc-js";
import { InventoryServiceClient } from "../src/gen/quartermaster/v1/inventory";
import { createClients, healthStatus, startServer, type ServerProcess } from "../test/support/server_process";
import { seedSku } from "../test/support/fixtures";
import { createPki, type TestPki } from "../test/support/tls";
import { readCpuTimeMs } from "./processes";

type Mode = "plaintext" | "tls" | "mtls";

interface Figures {
  readonly cpuMicrosPerCall: number;
  readonly callsPerSecond: number;
  readonly connectMs: number;
}

async function clientCredentials(mode: Mode, pki: TestPki): Promise<ChannelCredentials> {
  if (mode === "plaintext") return credentials.createInsecure();
  const ca = await readFile(pki.ca.cert);
  if (mode === "tls") return credentials.createSsl(ca);
  return credentials.createSsl(ca, await readFile(pki.client.key), await readFile(pki.client.cert));
}

function getSku(client: InventoryServiceClient): Promise<void> {
  return new Promise((resolve, reject) => {
    client.getSku({ skuId: "BENCH-1" }, new Metadata(), { deadline: new Date(Date.now() + 10_000) }, (err) => (err === null ? resolve() : reject(err)));
  });
}

async function measure(mode: Mode, pki: TestPki, calls: number, inFlight: number, connections: number): Promise<Figures> {
  const env: Record<string, string> =
    mode === "plaintext" ? {} : { QM_TLS_CERT: pki.server.cert, QM_TLS_KEY: pki.server.key, ...(mode === "mtls" ? { QM_TLS_CLIENT_CA: pki.ca.cert } : {}) };
  const creds = await clientCredentials(mode, pki);
  const server: ServerProcess = await startServer({ env: { ...env, QM_LOG_LEVEL: "warn" }, healthCredentials: creds });
  try {
    if (mode === "plaintext") {
      const seed = createClients(server.addr);
      await seedSku(seed, "BENCH-1", 100);
      seed.close();
    }
    const client = new InventoryServiceClient(server.addr, creds, { "grpc.ssl_target_name_override": "localhost" });
    try {
      if (mode !== "plaintext") await getSku(client).catch(() => undefined);
      // Warm-up, then the measured calls.
      for (let i = 0; i < 1000; i++) await getSku(client).catch(() => undefined);
      const cpuBefore = readCpuTimeMs(server.pid) ?? 0;
      const started = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: inFlight }, async () => {
          while (next < calls) {
            next++;
            await getSku(client).catch(() => undefined);
          }
        }),
      );
      const elapsedMs = performance.now() - started;
      const cpuMs = (readCpuTimeMs(server.pid) ?? 0) - cpuBefore;
      const connectStarted = performance.now();
      for (let i = 0; i < connections; i++) await healthStatus(server.addr, { credentials: creds, deadlineMs: 5_000 });
      const connectMs = (performance.now() - connectStarted) / connections;
      return { cpuMicrosPerCall: (cpuMs * 1000) / calls, callsPerSecond: calls / (elapsedMs / 1000), connectMs };
    } finally {
      client.close();
    }
  } finally {
    await server.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { rounds: { type: "string", default: "3" }, calls: { type: "string", default: "20000" }, "in-flight": { type: "string", default: "16" }, connections: { type: "string", default: "200" } },
  });
  const rounds = Number(values.rounds);
  const calls = Number(values.calls);
  const inFlight = Number(values["in-flight"]);
  const connections = Number(values.connections);
  const pki = await createPki();
  const results: Record<Mode, Figures[]> = { plaintext: [], tls: [], mtls: [] };
  for (let round = 0; round < rounds; round++) {
    for (const mode of ["plaintext", "tls", "mtls"] as const) {
      const figures = await measure(mode, pki, calls, inFlight, connections);
      results[mode].push(figures);
      process.stdout.write(`round ${round + 1} ${mode}: ${figures.cpuMicrosPerCall.toFixed(1)} µs CPU/call, ${figures.callsPerSecond.toFixed(0)} calls/s, ${figures.connectMs.toFixed(2)} ms per new connection + call\n`);
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
  const base = median(results.plaintext.map((f) => f.cpuMicrosPerCall));
  for (const mode of ["plaintext", "tls", "mtls"] as const) {
    const cpu = median(results[mode].map((f) => f.cpuMicrosPerCall));
    process.stdout.write(
      `median ${mode}: ${cpu.toFixed(1)} µs CPU/call (${(cpu / base).toFixed(2)}× plaintext), ${median(results[mode].map((f) => f.callsPerSecond)).toFixed(0)} calls/s, ${median(results[mode].map((f) => f.connectMs)).toFixed(2)} ms per new connection + call\n`,
    );
  }
}

void main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
    process.exit(1);
  },
);
