import { expect } from "chai";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { QmError } from "../../src/errors";
import { type DataDirLock, acquireDataDirLock } from "../../src/journal/data_dir_lock";

const LOCK_MODULE = resolve(__dirname, "../../src/journal/data_dir_lock.js");

/**
 * A second process that tries to lock dir. It prints "locked" and holds the
 * lock until killed, or prints the error as JSON and exits with 3.
 */
function lockInChild(dir: string): ChildProcess {
  const script = `
    const { acquireDataDirLock } = require(${JSON.stringify(LOCK_MODULE)});
    acquireDataDirLock(${JSON.stringify(dir)}).then(
      () => { process.stdout.write("locked\\n"); setInterval(() => {}, 60_000); },
      (e) => { process.stdout.write(JSON.stringify({ code: e.code, message: e.message }) + "\\n"); process.exit(3); },
    );`;
  return spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
}

/** The child's first line of output; the deadline replaces any sleep. */
function firstLine(child: ChildProcess, deadlineMs = 10_000): Promise<string> {
  return new Promise((done, fail) => {
    let text = "";
    const timer = setTimeout(() => fail(new Error(`no output from child within ${deadlineMs} ms`)), deadlineMs);
    child.stdout?.on("data", (chunk: Buffer) => {
      text += chunk.toString();
      const newline = text.indexOf("\n");
      if (newline >= 0) {
        clearTimeout(timer);
        done(text.slice(0, newline));
      }
    });
    // "close", not "exit": output can still be in the pipe when the child exits.
    child.once("close", (code) => {
      clearTimeout(timer);
      if (text.indexOf("\n") < 0) fail(new Error(`child exited with ${code} before printing a line`));
    });
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((done) => child.once("exit", (code) => done(code)));
}

async function lockErrorOf(dir: string): Promise<QmError> {
  try {
    await acquireDataDirLock(dir);
  } catch (error) {
    if (error instanceof QmError) return error;
    throw error;
  }
  throw new Error(`expected ${dir} to be locked`);
}

describe("acquireDataDirLock", function () {
  this.timeout(20_000);

  let dir: string;
  let locks: DataDirLock[] = [];
  let children: ChildProcess[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "qm-lock-"));
  });

  afterEach(async () => {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited(child);
    }
    for (const lock of locks) await lock.release();
    rmSync(dir, { recursive: true, force: true });
    children = [];
    locks = [];
  });

  it("refuses a second process on a held directory with FAILED_PRECONDITION naming the holder's pid", async () => {
    locks.push(await acquireDataDirLock(dir));
    const child = lockInChild(dir);
    children.push(child);
    const answer = JSON.parse(await firstLine(child)) as { code: string; message: string };
    expect(answer).to.deep.equal({ code: "FAILED_PRECONDITION", message: `data directory ${dir} is in use by process ${process.pid}` });
    expect(await exited(child)).to.equal(3);
  });

  it("lets a new process take the directory after the holder is killed with SIGKILL, without cleanup", async () => {
    const holder = lockInChild(dir);
    children.push(holder);
    expect(await firstLine(holder)).to.equal("locked");
    const refused = await lockErrorOf(dir);
    expect(refused.code).to.equal("FAILED_PRECONDITION");
    expect(refused.message).to.equal(`data directory ${dir} is in use by process ${holder.pid}`);

    holder.kill("SIGKILL");
    await exited(holder);
    // LOCK.pid of the dead holder is still there; it is not what locks.
    expect(readFileSync(join(dir, "LOCK.pid"), "utf8").trim()).to.equal(String(holder.pid));
    const lock = await acquireDataDirLock(dir);
    locks.push(lock);
    expect(readFileSync(join(dir, "LOCK.pid"), "utf8").trim()).to.equal(String(process.pid));
  });

  it("refuses a second lock in the same process, and frees the directory on release (idempotent)", async () => {
    const lock = await acquireDataDirLock(dir);
    expect((await lockErrorOf(dir)).message).to.equal(`data directory ${dir} is in use by process ${process.pid}`);
    await lock.release();
    await lock.release();
    const child = lockInChild(dir);
    children.push(child);
    expect(await firstLine(child)).to.equal("locked");
  });

  it("locks the real directory, so a symlink to a held directory is refused too", async () => {
    locks.push(await acquireDataDirLock(dir));
    const link = join(dir, "..", `${dir.split("/").pop() ?? "x"}-link`);
    symlinkSync(dir, link);
    try {
      expect((await lockErrorOf(link)).code).to.equal("FAILED_PRECONDITION");
    } finally {
      rmSync(link, { force: true });
    }
  });
});
