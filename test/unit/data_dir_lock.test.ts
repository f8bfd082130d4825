import { expect } from "chai";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { QmError } from "../../src/errors";
import { type DataDirLock, acquireDataDirLock } from "../../src/journal/data_dir_lock";

const LOCK_MODULE = resolve(__dirname, "../../src/journal/data_dir_lock.js");

const IS_ROOT = process.getuid?.() === 0;

/**
 * A second process that tries to lock dir. It prints "locked" and holds the
 * lock until killed (or, with releaseAtOnce, releases it and exits 0), or
 * prints the error as JSON and exits with 3. wrapper runs it inside another
 * command, e.g. `unshare -n`.
 */
function lockInChild(dir: string, opts: { wrapper?: string[]; releaseAtOnce?: boolean } = {}): ChildProcess {
  const onLocked = opts.releaseAtOnce === true
    ? `(l) => l.release().then(() => { process.stdout.write("released\\n"); })`
    : `() => { process.stdout.write("locked\\n"); setInterval(() => {}, 60_000); }`;
  const script = `
    const { acquireDataDirLock } = require(${JSON.stringify(LOCK_MODULE)});
    acquireDataDirLock(${JSON.stringify(dir)}).then(
      ${onLocked},
      (e) => { process.stdout.write(JSON.stringify({ code: e.code, message: e.message }) + "\\n"); process.exit(3); },
    );`;
  const [command, ...args] = [...(opts.wrapper ?? []), process.execPath, "-e", script];
  return spawn(command as string, args, { stdio: ["ignore", "pipe", "inherit"] });
}

/** The pid record in the lock file, as the error message would show it. */
function pidRecord(dir: string): string {
  return readFileSync(join(dir, "LOCK"), "latin1").trim();
}

/** The /proc/locks lines of FLOCK locks on the file with this inode number. */
function flocksOnInode(inode: number): string[] {
  return readFileSync("/proc/locks", "utf8")
    .split("\n")
    .filter((line) => / FLOCK /.test(line) && line.split(/\s+/)[5]?.endsWith(`:${inode}`) === true);
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
    // The dead holder's pid is still in the file; the file is not what locks.
    expect(pidRecord(dir)).to.equal(String(holder.pid));
    const lock = await acquireDataDirLock(dir);
    locks.push(lock);
    expect(pidRecord(dir)).to.equal(String(process.pid));
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

  it("holds a kernel flock on the LOCK file while locked and drops it on release, leaving the file in place", async () => {
    const lock = await acquireDataDirLock(dir);
    const inode = statSync(join(dir, "LOCK")).ino;
    const held = flocksOnInode(inode);
    expect(held, readFileSync("/proc/locks", "utf8")).to.have.length(1);
    expect(held[0]).to.match(/ FLOCK +ADVISORY +WRITE /);
    await lock.release();
    expect(flocksOnInode(inode)).to.deep.equal([]);
    // Never deleted: a deleted lock file would let two holders lock two inodes.
    expect(statSync(join(dir, "LOCK")).ino).to.equal(inode);
    expect(pidRecord(dir)).to.equal("");
  });

  describe("across namespaces and mounts (root)", function () {
    before(function () {
      if (!IS_ROOT) {
        console.log("    skipped: unshare and mount --bind need root");
        this.skip();
      }
    });

    it("refuses a process in another network namespace (unshare -n), as two containers on one volume are", async () => {
      locks.push(await acquireDataDirLock(dir));
      const child = lockInChild(dir, { wrapper: ["unshare", "-n"] });
      children.push(child);
      const answer = JSON.parse(await firstLine(child)) as { code: string; message: string };
      expect(answer).to.deep.equal({ code: "FAILED_PRECONDITION", message: `data directory ${dir} is in use by process ${process.pid}` });
      expect(await exited(child)).to.equal(3);
    });

    it("refuses a process that reaches the directory through a bind mount at another path", async () => {
      locks.push(await acquireDataDirLock(dir));
      const mountPoint = `${dir}-bind`;
      mkdirSync(mountPoint);
      const mount = spawn("mount", ["--bind", dir, mountPoint], { stdio: "inherit" });
      expect(await exited(mount)).to.equal(0);
      try {
        const child = lockInChild(mountPoint);
        children.push(child);
        const answer = JSON.parse(await firstLine(child)) as { code: string; message: string };
        expect(answer).to.deep.equal({
          code: "FAILED_PRECONDITION",
          message: `data directory ${mountPoint} is in use by process ${process.pid}`,
        });
      } finally {
        expect(await exited(spawn("umount", [mountPoint], { stdio: "inherit" }))).to.equal(0);
        rmSync(mountPoint, { recursive: true, force: true });
      }
    });

    it("never lets a second process that stops remove the holder's pid record", async () => {
      locks.push(await acquireDataDirLock(dir));
      // Whatever the second process manages, it stops; the holder must still be named afterwards.
      const child = lockInChild(dir, { wrapper: ["unshare", "-n"], releaseAtOnce: true });
      children.push(child);
      await firstLine(child);
      await exited(child);
      expect(pidRecord(dir)).to.equal(String(process.pid));
      expect((await lockErrorOf(dir)).message).to.equal(`data directory ${dir} is in use by process ${process.pid}`);
    });
  });
});
