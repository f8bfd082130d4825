// `npm start`, the documented start command, as a supervisor sees it: the
// signal sent to the npm process must reach the server and end it (port
// closed, data directory free, npm's exit code the server's), stdout must be
// JSON log lines only, and a built tree must start without the TypeScript
// compiler while an unbuilt one builds.

import { expect } from "chai";
import { type ChildProcess, spawn } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, symlinkSync, utimesSync } from "node:fs";
import { connect } from "node:net";
import path from "node:path";
import { acquireDataDirLock } from "../../src/journal/data_dir_lock";
import { VERSION } from "../../src/version";
import { freePort, makeTempDir, REPO_ROOT } from "../support/server_process";

/** npm itself takes a second or two to start on a loaded machine; the server adds recovery, a build adds more. */
const SERVING_DEADLINE_MS = 60_000;
const EXIT_DEADLINE_MS = 20_000;

interface NpmRun {
  readonly child: ChildProcess;
  readonly dataDir: string;
  readonly port: number;
  stdout(): string;
  stderr(): string;
  /** The `quartermaster serving` record, once stdout has it. */
  serving(): Promise<Record<string, unknown>>;
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Process groups of every npm started here. A group outlives npm while any of
 * its members runs, so killing the group also ends a server npm orphaned
 * (the failure these tests exist to catch).
 */
const groups = new Set<number>();
function killGroups(): void {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // The whole group has exited.
    }
  }
  groups.clear();
}
process.once("exit", killGroups);

async function npmStart(cwd: string, args: readonly string[] = []): Promise<NpmRun> {
  const [port, metricsPort] = [await freePort(), await freePort()];
  const dataDir = await makeTempDir("qm-npm-start-");
  // Detached: npm leads its own process group, as under a terminal or a supervisor.
  const child = spawn("npm", ["start", ...args], {
    cwd,
    detached: true,
    env: {
      ...process.env,
      QM_LISTEN: `127.0.0.1:${port}`,
      QM_METRICS_LISTEN: `127.0.0.1:${metricsPort === port ? 0 : metricsPort}`,
      QM_DATA_DIR: dataDir,
      QM_LOG_LEVEL: "info",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  if (child.pid !== undefined) groups.add(child.pid);
  let out = "";
  let err = "";
  child.stdout?.setEncoding("utf8").on("data", (c: string) => (out += c));
  child.stderr?.setEncoding("utf8").on("data", (c: string) => (err += c));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  let ended = false;
  void exit.then(() => (ended = true));
  return {
    child,
    dataDir,
    port,
    stdout: () => out,
    stderr: () => err,
    async serving() {
      const deadline = Date.now() + SERVING_DEADLINE_MS;
      while (Date.now() < deadline && !ended) {
        const line = out.split("\n").find((l) => l.includes('"quartermaster serving"'));
        if (line !== undefined) return JSON.parse(line) as Record<string, unknown>;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`npm start did not serve (exited: ${ended})\nstdout:\n${out}\nstderr:\n${err}`);
    },
    async exited() {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`npm start did not exit\nstdout:\n${out}\nstderr:\n${err}`)), EXIT_DEADLINE_MS);
      });
      try {
        return await Promise.race([exit, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

function portRefuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(true));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** After the run: no server left, its port closed, its data directory free for the next process. */
async function expectGone(run: NpmRun, serverPid: number): Promise<void> {
  expect(alive(serverPid), `server pid ${serverPid} still running`).to.equal(false);
  expect(await portRefuses(run.port), `port ${run.port} still open`).to.equal(true);
  const lock = await acquireDataDirLock(run.dataDir);
  await lock.release();
}

function nonJsonLines(text: string): string[] {
  return text.split("\n").filter((line) => {
    if (line === "") return false;
    try {
      return typeof JSON.parse(line) !== "object";
    } catch {
      return true;
    }
  });
}

/** A copy of the built tree: package.json, dist, proto, scripts, and node_modules without the compiler. */
async function builtTreeWithoutCompiler(): Promise<string> {
  const dir = await makeTempDir("qm-built-tree-");
  for (const entry of ["package.json", "dist", "proto", "scripts", "bin"]) {
    cpSync(path.join(REPO_ROOT, entry), path.join(dir, entry), { recursive: true, preserveTimestamps: true });
  }
  mkdirSync(path.join(dir, "node_modules"));
  for (const name of readdirSync(path.join(REPO_ROOT, "node_modules"))) {
    if (name === "typescript" || name === "@typescript" || name === ".bin") continue;
    symlinkSync(path.join(REPO_ROOT, "node_modules", name), path.join(dir, "node_modules", name));
  }
  return dir;
}

describe("npm start (the documented start command)", function () {
  this.timeout(180_000);
  afterEach(killGroups);

  it("passes SIGTERM sent to npm to the server, which drains and exits 0: port closed, data directory free", async () => {
    const run = await npmStart(REPO_ROOT, ["--silent"]);
    const serving = await run.serving();
    const serverPid = serving.pid as number;
    expect(serverPid).to.not.equal(run.child.pid);
    process.kill(run.child.pid as number, "SIGTERM");
    const exit = await run.exited();
    expect(exit.code, run.stderr()).to.equal(0);
    expect(run.stdout()).to.include('"msg":"stopped"');
    await expectGone(run, serverPid);
    expect(nonJsonLines(run.stdout()), "stdout of npm start --silent").to.deep.equal([]);
  });

  it("drains once when SIGINT reaches the whole process group (Ctrl-C) and npm forwards it too", async () => {
    const run = await npmStart(REPO_ROOT);
    const serverPid = (await run.serving()).pid as number;
    process.kill(-(run.child.pid as number), "SIGINT");
    const exit = await run.exited();
    expect(exit.code, run.stdout()).to.equal(0);
    expect(run.stdout()).to.include('"msg":"stopped"');
    expect(run.stdout()).to.not.include("second signal");
    await expectGone(run, serverPid);
    // Without --silent npm 11 prints its own banner on stdout; it is the only non-JSON there (the build's output goes to stderr).
    expect(nonJsonLines(run.stdout())).to.deep.equal([`> quartermaster@${VERSION} start`, "> node scripts/build_if_stale.js && exec node dist/src/main.js"]);
  });

  it("starts a built tree that has no TypeScript compiler, even when its sources look newer", async () => {
    const dir = await builtTreeWithoutCompiler();
    mkdirSync(path.join(dir, "src"));
    cpSync(path.join(REPO_ROOT, "src/main.ts"), path.join(dir, "src/main.ts"));
    const future = new Date(Date.now() + 3600_000);
    utimesSync(path.join(dir, "src/main.ts"), future, future);
    const run = await npmStart(dir, ["--silent"]);
    const serverPid = (await run.serving()).pid as number;
    expect(run.stderr()).to.include("no TypeScript compiler is installed; starting the existing build");
    process.kill(run.child.pid as number, "SIGTERM");
    expect((await run.exited()).code).to.equal(0);
    await expectGone(run, serverPid);
  });

  it("builds first when dist/ is missing and the compiler is there (a fresh clone), keeping stdout JSON", async () => {
    const dir = await makeTempDir("qm-fresh-tree-");
    for (const entry of ["package.json", "tsconfig.json", "src", "proto", "scripts"]) {
      cpSync(path.join(REPO_ROOT, entry), path.join(dir, entry), { recursive: true });
    }
    symlinkSync(path.join(REPO_ROOT, "node_modules"), path.join(dir, "node_modules"));
    const run = await npmStart(dir, ["--silent"]);
    const serverPid = (await run.serving()).pid as number;
    expect(run.stderr()).to.include("dist/ is missing; building");
    process.kill(run.child.pid as number, "SIGTERM");
    expect((await run.exited()).code).to.equal(0);
    await expectGone(run, serverPid);
    expect(nonJsonLines(run.stdout())).to.deep.equal([]);
  });

  it("refuses a tree with neither dist/ nor a compiler, saying what to run", async () => {
    const dir = await makeTempDir("qm-no-build-");
    cpSync(path.join(REPO_ROOT, "package.json"), path.join(dir, "package.json"));
    cpSync(path.join(REPO_ROOT, "scripts"), path.join(dir, "scripts"), { recursive: true });
    const run = await npmStart(dir, ["--silent"]);
    const exit = await run.exited();
    expect(exit.code).to.equal(1);
    expect(run.stderr()).to.include("dist/ is missing and no TypeScript compiler is installed: run `npm ci && npm run build`");
  });
});
