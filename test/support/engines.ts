// Starts the real engines cluster mode runs on — etcd and nats-server with
// JetStream — as child processes on free loopback ports in temp dirs, for
// integration and fault tests. The binaries come from Debian's packages,
// installed by scripts/install_test_deps.sh (run by `npm test`); a missing one
// is an error, never a skipped test. Readiness is polled against a deadline:
// etcd answers a range request, nats-server's monitoring port answers
// /healthz?js-enabled-only=true once JetStream is up. Ports the harness picked
// itself are retried on fresh ones when the engine finds them taken (see
// startOnFreePorts); ports the caller chose are not.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { request } from "node:http";
import { Etcd3 } from "etcd3";
import { freePort, makeTempDir } from "./server_process";

/** How long an engine may take to answer its first request. */
export const ENGINE_READY_DEADLINE_MS = 20_000;
/** How long stop() waits after SIGTERM before it SIGKILLs. */
const ENGINE_STOP_DEADLINE_MS = 10_000;
const READY_POLL_INTERVAL_MS = 50;
/**
 * Starts on fresh ports when the ones the harness picked were taken before the
 * engine bound them: freePort() finds a port by binding and closing it, so
 * another suite (or a child of this one) can take it first. As startServer
 * does for our own server (server_process.ts).
 */
export const ENGINE_PORT_CONFLICT_ATTEMPTS = 3;
/** How etcd and nats-server ("bind: address already in use") and redis-server ("bind: Address already in use") report a taken port. */
const PORT_CONFLICT = /address already in use/i;
/** Output kept per engine for failure reports. */
const ENGINE_LOG_CHARS_MAX = 64 * 1024;

export interface EngineProcess {
  readonly pid: number;
  readonly dataDir: string;
  /** SIGTERM, then SIGKILL after a deadline; resolves once the process is gone. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL; resolves once the process is gone. */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT, for pause (zombie) tests. */
  pause(): void;
  resume(): void;
  logs(): string;
}

export interface EtcdProcess extends EngineProcess {
  /** http://127.0.0.1:PORT, for QM_ETCD_ENDPOINTS and etcd3 clients. */
  readonly endpoint: string;
  /** Pass both back with dataDir to start etcd again on the same store at the same address. */
  readonly clientPort: number;
  readonly peerPort: number;
}

export interface NatsProcess extends EngineProcess {
  /** nats://127.0.0.1:PORT, for QM_NATS_URL and nats clients. */
  readonly url: string;
  /** Pass both back with dataDir to start nats-server again on the same store at the same address. */
  readonly port: number;
  readonly monitorPort: number;
}

/** How the harness picks a free port; tests of the harness inject one that returns a port held elsewhere. */
export type PortPicker = () => Promise<number>;

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/**
 * Runs `start` on ports from `pick`, again on fresh ones (up to
 * ENGINE_PORT_CONFLICT_ATTEMPTS) while it fails because a port was taken.
 * `chosen` holds the ports the caller gave: with any of them the conflict is
 * the caller's to see, and `start` runs once.
 */
export async function startOnFreePorts<T>(
  chosen: readonly (number | undefined)[],
  pick: PortPicker,
  start: (ports: number[]) => Promise<T>,
): Promise<T> {
  const chosenHere = chosen.every((port) => port === undefined);
  for (let attempt = 1; ; attempt++) {
    const ports: number[] = [];
    for (const port of chosen) ports.push(port ?? (await distinctPort(pick, ports)));
    try {
      return await start(ports);
    } catch (error) {
      const conflict = error instanceof Error && PORT_CONFLICT.test(error.message);
      if (!chosenHere || !conflict || attempt >= ENGINE_PORT_CONFLICT_ATTEMPTS) throw error;
    }
  }
}

/**
 * etcd over https with this certificate (`ca` is what the readiness probe trusts).
 * `clientCertAuth`: etcd also requires a client certificate signed by `ca` (--client-cert-auth), and the probe presents this one.
 */
export interface EtcdTls {
  cert: string;
  key: string;
  ca: string;
  clientCertAuth?: { cert: string; key: string };
}

/** `pickPort`: for tests of the harness. */
export async function startEtcd(
  opts: { dataDir?: string; clientPort?: number; peerPort?: number; tls?: EtcdTls; pickPort?: PortPicker } = {},
): Promise<EtcdProcess> {
  const binary = requireBinary("etcd", ["/usr/bin/etcd"]);
  // A fresh store per attempt: one that etcd began with other addresses would not match the next ones.
  return startOnFreePorts([opts.clientPort, opts.peerPort], opts.pickPort ?? freePort, async ([clientPort = 0, peerPort = 0]) =>
    startEtcdOn(binary, opts.dataDir ?? (await makeTempDir("qm-etcd-")), clientPort, peerPort, opts.tls),
  );
}

async function startEtcdOn(binary: string, dataDir: string, clientPort: number, peerPort: number, tls: EtcdTls | undefined): Promise<EtcdProcess> {
  const endpoint = `${tls === undefined ? "http" : "https"}://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const engine = spawnEngine(binary, [
    "--name", "qm-test",
    "--data-dir", dataDir,
    "--listen-client-urls", endpoint,
    "--advertise-client-urls", endpoint,
    "--listen-peer-urls", peer,
    "--initial-advertise-peer-urls", peer,
    "--initial-cluster", `qm-test=${peer}`,
    "--log-level", "error",
    "--logger", "zap",
    ...(tls === undefined ? [] : ["--cert-file", tls.cert, "--key-file", tls.key]),
    ...(tls?.clientCertAuth === undefined ? [] : ["--client-cert-auth", "--trusted-ca-file", tls.ca]),
  ], dataDir);
  const client = tls?.clientCertAuth;
  const credentials =
    tls === undefined
      ? {}
      : { credentials: { rootCertificate: readFileSync(tls.ca), ...(client === undefined ? {} : { privateKey: readFileSync(client.key), certChain: readFileSync(client.cert) }) } };
  await waitReady(engine, `etcd at ${endpoint}`, async () => {
    const client = new Etcd3({ hosts: endpoint, dialTimeout: 1_000, ...credentials });
    try {
      await client.get("/quartermaster/ready-probe").string();
    } finally {
      client.close();
    }
  });
  return { ...engine, endpoint, clientPort, peerPort };
}

/** `pickPort`: for tests of the harness. */
export async function startNats(
  opts: { dataDir?: string; port?: number; monitorPort?: number; args?: readonly string[]; pickPort?: PortPicker } = {},
): Promise<NatsProcess> {
  const binary = requireBinary("nats-server", ["/usr/sbin/nats-server", "/usr/bin/nats-server"]);
  const dataDir = opts.dataDir ?? (await makeTempDir("qm-nats-"));
  return startOnFreePorts([opts.port, opts.monitorPort], opts.pickPort ?? freePort, ([port = 0, monitorPort = 0]) =>
    startNatsOn(binary, dataDir, port, monitorPort, opts.args ?? []),
  );
}

async function startNatsOn(binary: string, dataDir: string, port: number, monitorPort: number, args: readonly string[]): Promise<NatsProcess> {
  const url = `nats://127.0.0.1:${port}`;
  const engine = spawnEngine(binary, ["-a", "127.0.0.1", "-p", String(port), "-m", String(monitorPort), "-js", "-sd", dataDir, ...args], dataDir);
  await waitReady(engine, `nats-server at ${url}`, () => httpOk(`http://127.0.0.1:${monitorPort}/healthz?js-enabled-only=true`));
  return { ...engine, url, port, monitorPort };
}

export function requireBinary(name: string, candidates: readonly string[]): string {
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) {
    throw new Error(`${name} is not installed (looked in ${candidates.join(", ")}); run scripts/install_test_deps.sh as root`);
  }
  return found;
}

/** A port from `pick` that is none of `others` (the ports one engine already has). */
async function distinctPort(pick: PortPicker, others: readonly number[]): Promise<number> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = await pick();
    if (!others.includes(port)) return port;
  }
  throw new Error("could not find distinct free ports");
}

export interface Spawned extends EngineProcess {
  readonly exited: Promise<void>;
  readonly hasExited: () => boolean;
}

export function spawnEngine(binary: string, args: readonly string[], dataDir: string): Spawned {
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  let output = "";
  const keep = (chunk: string): void => {
    output = (output + chunk).slice(-ENGINE_LOG_CHARS_MAX);
  };
  child.stdout?.setEncoding("utf8").on("data", keep);
  child.stderr?.setEncoding("utf8").on("data", keep);
  let done = false;
  const exited = new Promise<void>((resolve) => {
    const finish = (): void => {
      done = true;
      live.delete(child);
      resolve();
    };
    child.once("exit", finish);
    child.once("error", (err) => {
      keep(`[spawn error] ${err.message}\n`);
      finish();
    });
  });
  const signal = (name: NodeJS.Signals): void => {
    if (!done) child.kill(name);
  };
  let stopping: Promise<void> | undefined;
  return {
    pid: child.pid ?? -1,
    dataDir,
    exited,
    hasExited: () => done,
    stop: () =>
      (stopping ??= (async () => {
        signal("SIGCONT");
        signal("SIGTERM");
        const timer = setTimeout(() => signal("SIGKILL"), ENGINE_STOP_DEADLINE_MS);
        await exited;
        clearTimeout(timer);
      })()),
    kill: async () => {
      signal("SIGKILL");
      await exited;
    },
    pause: () => signal("SIGSTOP"),
    resume: () => signal("SIGCONT"),
    logs: () => output,
  };
}

export async function waitReady(engine: Spawned, what: string, probe: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + ENGINE_READY_DEADLINE_MS;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    const exitedEarly = (): Error => new Error(`${what} exited before it was ready; output:\n${engine.logs()}`);
    if (engine.hasExited()) throw exitedEarly();
    try {
      // Raced with the exit: an engine that could not bind its port exits, while the probe may hang
      // on whatever else holds that port (a listener that accepts and never answers).
      const exited = engine.exited.then(() => {
        throw exitedEarly();
      });
      exited.catch(() => undefined);
      await Promise.race([probe(), exited]);
      return;
    } catch (error) {
      if (engine.hasExited()) throw exitedEarly();
      last = error instanceof Error ? error.message : String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_INTERVAL_MS));
  }
  await engine.kill();
  throw new Error(`${what} not ready within ${ENGINE_READY_DEADLINE_MS} ms (last: ${last}); output:\n${engine.logs()}`);
}

function httpOk(url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: 1_000 }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve();
      else reject(new Error(`${url}: HTTP ${res.statusCode}`));
    });
    req.once("timeout", () => req.destroy(new Error(`${url}: timed out`)));
    req.once("error", reject);
    req.end();
  });
}
