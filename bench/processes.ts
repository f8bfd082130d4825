// Child processes of the benchmark: started pinned to a core when possible,
// always tracked, and always stopped (SIGTERM, then SIGKILL after a grace
// period), including when the driver fails or is interrupted.

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { LOOPBACK_HOST } from "./load_session";

/** A stopped child gets this long after SIGTERM to exit before SIGKILL. */
const STOP_GRACE_MS = 10_000;
/** Lines of a child's output kept for the error report when it fails. */
const OUTPUT_TAIL_LINES_MAX = 40;
const OUTPUT_TAIL_BYTES_MAX = 16 * 1024;

export interface Pinning {
  /** null: not pinned (no taskset, or fewer than two cores). */
  readonly serverCpu: number | null;
  readonly generatorCpu: number | null;
  readonly description: string;
}

function findOnPath(program: string): string | null {
  for (const dir of (process.env["PATH"] ?? "").split(path.delimiter)) {
    if (dir === "") continue;
    const candidate = path.join(dir, program);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory.
    }
  }
  return null;
}

export function choosePinning(): Pinning {
  const cores = os.availableParallelism();
  const taskset = findOnPath("taskset");
  if (taskset === null) {
    return { serverCpu: null, generatorCpu: null, description: "not pinned: taskset not found" };
  }
  if (cores < 2) {
    return { serverCpu: null, generatorCpu: null, description: `not pinned: only ${cores} core(s)` };
  }
  return {
    serverCpu: 0,
    generatorCpu: 1,
    description: `server on CPU 0, generator (and this driver) on CPU 1 (taskset -c; ${cores} cores seen)`,
  };
}

/** Pins this process (all its threads) to `cpu`, so seeding and scraping stay off the server's core. */
export function pinSelf(cpu: number | null): void {
  if (cpu === null) return;
  execFileSync("taskset", ["-a", "-p", "-c", String(cpu), String(process.pid)], { stdio: "ignore" });
}

export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, LOOPBACK_HOST, () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error("no port"))));
    });
  });
}

export class Child {
  private exitCodeValue: number | null = null;
  private exitSignal: NodeJS.Signals | null = null;
  private exitedFlag = false;
  private readonly exited: Promise<void>;
  private tail = "";
  private stdoutText = "";

  constructor(
    readonly name: string,
    private readonly handle: ChildProcess,
    private readonly keepStdout: boolean,
    private readonly stdoutBytesMax: number,
  ) {
    this.exited = new Promise((resolve) => {
      handle.once("exit", (code, signal) => {
        this.exitedFlag = true;
        this.exitCodeValue = code;
        this.exitSignal = signal;
        resolve();
      });
      handle.once("error", (error) => {
        this.tail += `\nspawn error: ${error.message}`;
        this.exitedFlag = true;
        resolve();
      });
    });
    handle.stdout?.on("data", (chunk: Buffer) => {
      if (this.keepStdout && this.stdoutText.length < this.stdoutBytesMax) this.stdoutText += chunk.toString("utf8");
      else this.keepTail(chunk);
    });
    handle.stderr?.on("data", (chunk: Buffer) => this.keepTail(chunk));
  }

  get pid(): number {
    return this.handle.pid ?? -1;
  }

  get running(): boolean {
    return !this.exitedFlag;
  }

  get stdout(): string {
    return this.stdoutText;
  }

  describeExit(): string {
    return this.exitSignal !== null ? `killed by ${this.exitSignal}` : `exit code ${String(this.exitCodeValue)}`;
  }

  outputTail(): string {
    return this.tail.split("\n").slice(-OUTPUT_TAIL_LINES_MAX).join("\n");
  }

  /** Resolves true if the child exited within `timeoutMs`. */
  async waitForExit(timeoutMs: number): Promise<boolean> {
    if (this.exitedFlag) return true;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const result = await Promise.race([this.exited.then(() => true), timedOut]);
    clearTimeout(timer);
    return result;
  }

  get exitCode(): number | null {
    return this.exitCodeValue;
  }

  /** Idempotent: SIGTERM, then SIGKILL if the child outlives STOP_GRACE_MS. */
  async stop(): Promise<void> {
    if (this.exitedFlag) return;
    this.handle.kill("SIGTERM");
    if (await this.waitForExit(STOP_GRACE_MS)) return;
    this.handle.kill("SIGKILL");
    await this.waitForExit(STOP_GRACE_MS);
  }

  /** Synchronous last resort for process exit handlers. */
  killNow(): void {
    if (!this.exitedFlag) this.handle.kill("SIGKILL");
  }

  private keepTail(chunk: Buffer): void {
    this.tail += chunk.toString("utf8");
    if (this.tail.length > OUTPUT_TAIL_BYTES_MAX) this.tail = this.tail.slice(-OUTPUT_TAIL_BYTES_MAX);
  }
}

export interface SpawnOptions {
  readonly name: string;
  readonly script: string;
  readonly args: readonly string[];
  readonly cpu: number | null;
  /** Flags for node itself, before the script (--cpu-prof, --heapsnapshot-signal...). */
  readonly nodeArgs?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  /** Collect stdout (up to stdoutBytesMax) for the caller instead of only keeping a tail. */
  readonly keepStdout?: boolean;
  readonly stdoutBytesMax?: number;
}

/** Every child started and not yet reaped; the driver's exit handlers kill what is left. */
export const children = new Set<Child>();

/** Starts `node script args`, under `taskset -c cpu` when cpu is set; taskset execs node, so the pid is node's. */
export function spawnNode(options: SpawnOptions): Child {
  const nodeArgs = [...(options.nodeArgs ?? []), options.script, ...options.args];
  const [command, args] =
    options.cpu === null
      ? [process.execPath, nodeArgs]
      : ["taskset", ["-c", String(options.cpu), process.execPath, ...nodeArgs]];
  const child = spawn(command, args, {
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const tracked = new Child(options.name, child, options.keepStdout ?? false, options.stdoutBytesMax ?? 0);
  children.add(tracked);
  return tracked;
}

/** Temporary directories to delete if the driver is interrupted before its own cleanup runs. */
export const temporaryDirs = new Set<string>();

/** For exit handlers: kills what is left and deletes the temporary directories, synchronously. */
export function emergencyCleanup(): void {
  for (const child of children) child.killNow();
  for (const dir of temporaryDirs) fs.rmSync(dir, { recursive: true, force: true });
  temporaryDirs.clear();
}

/**
 * Runs a driver's main when the file is run as a script: an interrupted run
 * (SIGINT or SIGTERM) or a failed one must not leave servers, databases or
 * data directories behind.
 */
export function runBenchMain(name: string, main: (argv: readonly string[]) => Promise<number>): void {
  process.once("SIGINT", () => {
    emergencyCleanup();
    process.exit(130);
  });
  process.once("SIGTERM", () => {
    emergencyCleanup();
    process.exit(143);
  });
  process.once("exit", emergencyCleanup);
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`${name}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      emergencyCleanup();
      process.exitCode = 1;
    },
  );
}

export async function stopChild(child: Child | null): Promise<void> {
  if (child === null) return;
  await child.stop();
  children.delete(child);
}

export interface MemoryFigures {
  readonly rssBytes: number;
  readonly peakRssBytes: number;
  /** Private memory (heaps, buffers): what the process really holds. */
  readonly anonRssBytes: number;
  /** Resident file-backed pages, e.g. a memory-mapped database; the kernel can drop these under pressure. */
  readonly fileRssBytes: number;
}

/** VmRSS, VmHWM and the RSS split of a live process, in bytes; null when /proc has no such process. */
export function readMemory(pid: number): MemoryFigures | null {
  let status: string;
  try {
    status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return null;
  }
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, "m").exec(status);
    return match?.[1] === undefined ? Number.NaN : Number(match[1]) * 1024;
  };
  return {
    rssBytes: field("VmRSS"),
    peakRssBytes: field("VmHWM"),
    anonRssBytes: field("RssAnon"),
    fileRssBytes: field("RssFile") + field("RssShmem"),
  };
}

let clockTicksPerSecond: number | null = null;

/** USER_HZ, the unit of /proc/<pid>/stat times; 100 on every Linux we know, asked once anyway. */
function ticksPerSecond(): number {
  if (clockTicksPerSecond === null) {
    try {
      clockTicksPerSecond = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicksPerSecond = 100;
    }
  }
  return clockTicksPerSecond;
}

/** CPU time (user + system, all threads) a live process has used so far, in ms; null when it is gone. */
export function readCpuTimeMs(pid: number): number | null {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces; the fields we need follow its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of the whole line, so 11 and 12 after the name and state.
  const user = Number(fields[11]);
  const system = Number(fields[12]);
  if (!Number.isFinite(user) || !Number.isFinite(system)) return null;
  return ((user + system) * 1000) / ticksPerSecond();
}
