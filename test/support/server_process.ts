// Starts the real server (dist/src/main.js) as a child process on free
// loopback ports in a temp dir, for integration and fault tests. Readiness is
// the gRPC health service answering SERVING, polled against a deadline: the
// server reports NOT_SERVING until journal recovery is done, so an open port
// alone does not mean it is ready.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type ChannelCredentials, Client, credentials, Metadata, type ServiceError, status as GrpcStatus } from "@grpc/grpc-js";
import { call, type CallOpts, type Clients, createClients } from "../../src/cli/rpc";
import { decodeStatusDetails, type StatusDetails } from "../../src/cli/status_details";

// The CLI and the tests share one client-side toolkit: re-exported, not copied.
export { call, createClients, decodeStatusDetails };
export type { CallOpts, Clients, StatusDetails };

/** Repository root: this file runs as dist/test/support/server_process.js. */
export const REPO_ROOT = path.resolve(__dirname, "../../..");
export const SERVER_MAIN = path.join(REPO_ROOT, "dist/src/main.js");

/** How long a server may take to become SERVING, recovery included. */
export const SERVING_DEADLINE_MS = 20_000;
/** How long stop() waits after SIGTERM before it gives up, SIGKILLs and reports the hang. */
export const STOP_DEADLINE_MS = 20_000;
/** Output kept per server for logs(): enough for a failure report, bounded however chatty the server is. */
export const LOG_BYTES_MAX = 1024 * 1024;
/** Pause between health polls; the per-poll deadline, not this, is what bounds the wait. */
const HEALTH_POLL_INTERVAL_MS = 50;
const HEALTH_CALL_DEADLINE_MS = 2_000;

/** grpc.health.v1.HealthCheckResponse.ServingStatus */
export const HEALTH_SERVING = 1;
export const HEALTH_NOT_SERVING = 2;

export interface ServerProcess {
  addr: string;
  metricsAddr: string;
  dataDir: string;
  pid: number;
  /** SIGTERM, wait for exit, return the exit code (null if a signal ended it). */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT: a process that stops answering without dying (zombie tests). */
  pause(): void;
  resume(): void;
  /** Captured stdout and stderr, the last LOG_BYTES_MAX of it. */
  logs(): string;
}

export interface StartOptions {
  /** Reuse a data dir, e.g. to restart over a previous server's journal. Default: a new temp dir. */
  dataDir?: string;
  env?: Record<string, string>;
  /** Default true: resolve only once the health service answers SERVING. */
  waitServing?: boolean;
  /** How the readiness poll connects; plaintext by default (a TLS listener needs its CA, and a client certificate under mutual TLS). */
  healthCredentials?: ChannelCredentials;
  /** QM_LISTEN's host (default 127.0.0.1); `addr` stays 127.0.0.1:PORT, which a wildcard host also serves. */
  listenHost?: string;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error("no port assigned"))));
    });
  });
}

export async function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(path.join(tmpdir(), prefix.endsWith("-") ? prefix : `${prefix}-`));
}

/** Keeps the newest LOG_BYTES_MAX characters of a stream of chunks. */
class LogTail {
  private chunks: string[] = [];
  private length = 0;
  private dropped = false;

  append(chunk: string): void {
    this.chunks.push(chunk);
    this.length += chunk.length;
    while (this.length > LOG_BYTES_MAX && this.chunks.length > 1) {
      this.length -= (this.chunks.shift() ?? "").length;
      this.dropped = true;
    }
    if (this.length > LOG_BYTES_MAX) {
      const only = (this.chunks[0] ?? "").slice(-LOG_BYTES_MAX);
      this.chunks = [only];
      this.length = only.length;
      this.dropped = true;
    }
  }

  text(): string {
    return (this.dropped ? "[earlier output dropped]\n" : "") + this.chunks.join("");
  }
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Children still running, so that a test run that dies mid-way does not leave servers behind. */
const liveChildren = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of liveChildren) child.kill("SIGKILL");
});

/**
 * Port conflicts that startServer retries on fresh ports: a free port is found by binding and
 * closing, so another process (another suite running at the same time, or a child of this one)
 * can take it before the server binds it. Seen as a failed "before all" hook with "address already
 * in use" while several suites shared the machine.
 */
const PORT_CONFLICT_ATTEMPTS = 3;

export async function startServer(opts: StartOptions = {}): Promise<ServerProcess> {
  // A test that chose the listen addresses itself gets its conflict reported, not retried.
  const portsChosenHere = opts.env?.QM_LISTEN === undefined && opts.env?.QM_METRICS_LISTEN === undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      return await startServerOnce(opts);
    } catch (err) {
      const conflict = err instanceof Error && err.message.includes("address already in use");
      if (!portsChosenHere || !conflict || attempt >= PORT_CONFLICT_ATTEMPTS) throw err;
    }
  }
}

async function startServerOnce(opts: StartOptions): Promise<ServerProcess> {
  const [port, metricsPort] = await distinctFreePorts();
  const addr = `127.0.0.1:${port}`;
  const metricsAddr = `127.0.0.1:${metricsPort}`;
  const dataDir = opts.dataDir ?? (await makeTempDir("qm-test-"));
  const child = spawn(process.execPath, [SERVER_MAIN], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      QM_LISTEN: `${opts.listenHost ?? "127.0.0.1"}:${port}`,
      QM_METRICS_LISTEN: metricsAddr,
      QM_DATA_DIR: dataDir,
      QM_LOG_LEVEL: "warn",
      ...opts.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  liveChildren.add(child);
  const logs = new LogTail();
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => logs.append(chunk));
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => logs.append(chunk));

  let exit: Exit | undefined;
  const exited = new Promise<Exit>((resolve) => {
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      liveChildren.delete(child);
      resolve(exit);
    });
    child.once("error", (err) => {
      logs.append(`[spawn error] ${err.message}\n`);
      exit = { code: null, signal: null };
      liveChildren.delete(child);
      resolve(exit);
    });
  });

  const waitExit = async (deadlineMs: number): Promise<Exit | undefined> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), deadlineMs);
    });
    try {
      return await Promise.race([exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };

  const server: ServerProcess = {
    addr,
    metricsAddr,
    dataDir,
    pid: child.pid ?? -1,
    async stop(): Promise<number | null> {
      if (exit === undefined) {
        child.kill("SIGCONT");
        child.kill("SIGTERM");
      }
      const result = await waitExit(STOP_DEADLINE_MS);
      if (result === undefined) {
        child.kill("SIGKILL");
        await exited;
        throw new Error(`server ${addr} did not exit within ${STOP_DEADLINE_MS} ms of SIGTERM; logs:\n${logs.text()}`);
      }
      return result.code;
    },
    async kill(): Promise<void> {
      if (exit === undefined) child.kill("SIGKILL");
      await exited;
    },
    pause(): void {
      if (exit === undefined) child.kill("SIGSTOP");
    },
    resume(): void {
      if (exit === undefined) child.kill("SIGCONT");
    },
    logs: () => logs.text(),
  };

  if (opts.waitServing ?? true) {
    try {
      await waitServing(addr, exited, opts.healthCredentials ?? credentials.createInsecure());
    } catch (err) {
      await server.kill();
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`${message}\nserver logs:\n${logs.text()}`);
    }
  }
  return server;
}

/** Two ports from one probe could collide only if the OS hands out the same port twice; ask until they differ. */
async function distinctFreePorts(): Promise<[number, number]> {
  const first = await freePort();
  for (let attempt = 0; attempt < 10; attempt++) {
    const second = await freePort();
    if (second !== first) return [first, second];
  }
  throw new Error("could not find two distinct free ports");
}

/**
 * Polls grpc.health.v1.Health/Check until SERVING, the process exits, or
 * SERVING_DEADLINE_MS passes. The channel's reconnect backoff is cut to tens of
 * milliseconds: grpc-js's default (1 s, growing) would make a server that opens
 * its port a moment after the first attempt look slow to start.
 */
async function waitServing(addr: string, exited: Promise<Exit>, channelCredentials: ChannelCredentials): Promise<void> {
  const client = new Client(addr, channelCredentials, {
    // Test servers' certificates name localhost; an IP as the TLS server name only earns a Node warning.
    "grpc.ssl_target_name_override": "localhost",
    "grpc.initial_reconnect_backoff_ms": HEALTH_POLL_INTERVAL_MS,
    "grpc.max_reconnect_backoff_ms": 250,
  });
  const deadline = Date.now() + SERVING_DEADLINE_MS;
  let last = "no answer yet";
  try {
    while (Date.now() < deadline) {
      // Racing every poll against the exit turns a crash during startup into an immediate failure with its logs.
      const callDeadlineMs = Math.min(HEALTH_CALL_DEADLINE_MS, Math.max(1, deadline - Date.now()));
      const outcome = await Promise.race([
        healthCheckOn(client, "", callDeadlineMs).then(
          (status) => ({ status }),
          (err: unknown) => ({ err }),
        ),
        exited.then((e) => ({ exit: e })),
      ]);
      if ("exit" in outcome) {
        throw new Error(`server exited before SERVING (code ${outcome.exit.code}, signal ${outcome.exit.signal})`);
      }
      if ("status" in outcome && outcome.status === HEALTH_SERVING) return;
      last = "status" in outcome ? `status ${outcome.status}` : describe(outcome.err);
      await new Promise((resolve) => setTimeout(resolve, HEALTH_POLL_INTERVAL_MS));
    }
    throw new Error(`server ${addr} not SERVING within ${SERVING_DEADLINE_MS} ms (last: ${last})`);
  } finally {
    client.close();
  }
}

function describe(err: unknown): string {
  if (err instanceof Error && typeof (err as Partial<ServiceError>).code === "number") {
    const e = err as ServiceError;
    return `${GrpcStatus[e.code] ?? e.code}: ${e.details}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/**
 * One Health/Check call: the serving status number (1 SERVING, 2 NOT_SERVING),
 * or a rejection with the ServiceError (NOT_FOUND for an unknown service).
 * Exported for fault tests that watch a server go NOT_SERVING while it drains.
 */
export async function healthStatus(addr: string, opts: { service?: string; deadlineMs?: number; credentials?: ChannelCredentials } = {}): Promise<number> {
  const client = new Client(addr, opts.credentials ?? credentials.createInsecure());
  try {
    return await healthCheckOn(client, opts.service ?? "", opts.deadlineMs ?? HEALTH_CALL_DEADLINE_MS);
  } finally {
    client.close();
  }
}

// HealthCheckRequest is { string service = 1 } and HealthCheckResponse is
// { ServingStatus status = 1 }: encoded by hand, so the harness needs neither
// proto-loader nor generated code for a two-field API.
function encodeHealthRequest(service: string): Buffer {
  const writer = new BinaryWriter();
  if (service !== "") writer.uint32((1 << 3) | 2).string(service);
  return Buffer.from(writer.finish());
}

function decodeHealthResponse(bytes: Buffer): number {
  const reader = new BinaryReader(bytes);
  let status = 0;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === 0) status = reader.int32();
    else reader.skip(wireType);
  }
  return status;
}

function healthCheckOn(client: Client, service: string, deadlineMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      encodeHealthRequest,
      decodeHealthResponse,
      service,
      // Wait for the connection within the deadline rather than failing at once while the port is not open yet.
      new Metadata({ waitForReady: true }),
      { deadline: new Date(Date.now() + deadlineMs) },
      (err: ServiceError | null, value?: number) => {
        if (err !== null) reject(err);
        else resolve(value ?? 0);
      },
    );
  });
}
