// PostgreSQL 15 and Redis as child processes of the comparison driver: each in
// its own temporary directory, on a free loopback port, pinned to the server's
// core like every contender, and stopped by the driver. Both come from
// Debian's packages (scripts/install_test_deps.sh installs them).
//
// PostgreSQL refuses to run as root, and we are root here: initdb and
// postgres run as the packaged `postgres` user through setpriv, which execs
// (unlike runuser or su, which stay as a parent), so the pid we hold is the
// postmaster's and SIGTERM reaches it directly.

import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import pg from "pg";
import { Redis } from "ioredis";
import { LOOPBACK_HOST } from "../load_session";
import { Child, children } from "../processes";

/** How long a database may take to accept connections after its start. */
const ENGINE_READY_DEADLINE_MS = 30_000;
const READY_POLL_MS = 100;
/** The account PostgreSQL runs as when we are root (Debian's package creates it). */
const PG_SYSTEM_USER = "postgres";

function findPgBin(): string {
  const base = "/usr/lib/postgresql";
  const versions = fs.existsSync(base) ? fs.readdirSync(base).filter((v) => fs.existsSync(path.join(base, v, "bin", "postgres"))) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  const newest = versions[0];
  if (newest === undefined) throw new Error("PostgreSQL not found under /usr/lib/postgresql: run scripts/install_test_deps.sh");
  return path.join(base, newest, "bin");
}

function findRedis(): string {
  for (const candidate of ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]) if (fs.existsSync(candidate)) return candidate;
  throw new Error("redis-server not found: run scripts/install_test_deps.sh");
}

/** Runs `argv` as the postgres user when we are root; as ourselves otherwise. */
function asPgUser(argv: readonly string[]): string[] {
  if (process.getuid?.() !== 0) return [...argv];
  return ["setpriv", `--reuid=${PG_SYSTEM_USER}`, `--regid=${PG_SYSTEM_USER}`, "--init-groups", "--", ...argv];
}

function pinned(cpu: number | null, argv: readonly string[]): string[] {
  return cpu === null ? [...argv] : ["taskset", "-c", String(cpu), ...argv];
}

function start(name: string, argv: readonly string[]): Child {
  const [command = "", ...args] = argv;
  const child = new Child(name, spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] }), false, 0);
  children.add(child);
  return child;
}

async function pollReady(name: string, child: Child, probe: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + ENGINE_READY_DEADLINE_MS;
  for (;;) {
    if (!child.running) throw new Error(`${name} exited (${child.describeExit()}):\n${child.outputTail()}`);
    try {
      await probe();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`${name} not ready after ${ENGINE_READY_DEADLINE_MS} ms: ${error instanceof Error ? error.message : String(error)}\n${child.outputTail()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
  }
}

export interface Engine {
  readonly name: string;
  readonly port: number;
  readonly child: Child;
}

/** initdb (trust auth, user `bench`) and postgres with fsync and synchronous_commit on, as in production. */
export async function startPostgres(dir: string, port: number, cpu: number | null, user: string): Promise<Engine> {
  const bin = findPgBin();
  fs.mkdirSync(dir, { recursive: true });
  if (process.getuid?.() === 0) execFileSync("chown", ["-R", `${PG_SYSTEM_USER}:`, dir]);
  const data = path.join(dir, "data");
  const [initdb = "", ...initdbArgs] = asPgUser([path.join(bin, "initdb"), "-D", data, "-A", "trust", "-U", user, "-E", "UTF8", "--no-sync"]);
  execFileSync(initdb, initdbArgs, { stdio: "ignore" });
  const settings = {
    listen_addresses: LOOPBACK_HOST,
    port: String(port),
    unix_socket_directories: dir,
    fsync: "on",
    synchronous_commit: "on",
    max_connections: "100",
    shared_buffers: "128MB",
    // The comparison is about the write path, not about checkpoints landing inside a 10 s window.
    max_wal_size: "4GB",
  };
  const argv = [path.join(bin, "postgres"), "-D", data, ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`])];
  const child = start("postgres", pinned(cpu, asPgUser(argv)));
  await pollReady("postgres", child, async () => {
    const client = new pg.Client({ host: LOOPBACK_HOST, port, user, database: "postgres" });
    try {
      await client.connect();
      await client.query("SELECT 1");
    } finally {
      await client.end().catch(() => undefined);
    }
  });
  return { name: "postgres", port, child };
}

/** redis-server with persistence off, or with an AOF fsynced before every answer. */
export async function startRedis(dir: string, port: number, cpu: number | null, fsyncAlways: boolean): Promise<Engine> {
  fs.mkdirSync(dir, { recursive: true });
  const args = [
    "--port", String(port), "--bind", LOOPBACK_HOST, "--dir", dir, "--save", "", "--protected-mode", "no", "--daemonize", "no",
    ...(fsyncAlways ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]),
  ];
  const name = fsyncAlways ? "redis (appendfsync always)" : "redis (no persistence)";
  const child = start(name, pinned(cpu, [findRedis(), ...args]));
  await pollReady(name, child, async () => {
    const redis = new Redis({ host: LOOPBACK_HOST, port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    // Refused connections are expected until it listens; connect() reports them.
    redis.on("error", () => undefined);
    try {
      await redis.connect();
      await redis.ping();
    } finally {
      redis.disconnect();
    }
  });
  return { name, port, child };
}

/** The pid and every descendant of it, from /proc. */
export function processTree(root: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = parents.get(ppid) ?? [];
      list.push(Number(entry));
      parents.set(ppid, list);
    } catch {
      continue; // exited meanwhile
    }
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop() ?? -1;
    out.push(pid);
    stack.push(...(parents.get(pid) ?? []));
  }
  return out;
}
