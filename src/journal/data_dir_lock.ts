// One process per data directory. The embedded journal assumes a single
// writer (its group commit, its counters, the runtime's one activation per
// actor), so a second server started on the same directory must refuse to
// run, and a server that died, however it died, must not leave a lock that
// needs a human to remove.
//
// The lock is an exclusive flock(2) on the file LOCK inside the directory,
// held for the life of the process. It belongs to the file system object, not
// to a path string or a namespace, so it excludes a second process that
// reaches the directory through a symlink, a bind mount, or from another
// network or mount namespace (two containers sharing one volume). The kernel
// drops it when the last descriptor of our open file description closes,
// which includes SIGKILL and crashes: nothing stale is left behind.
//
// Node has no flock API. We open LOCK ourselves and let util-linux's `flock`
// (Debian Essential, /usr/bin/flock) lock the descriptor it inherits: flock
// locks belong to the open file description, which the child shares with us,
// so the lock stays ours after `flock` exits. Node opens every file with
// O_CLOEXEC, so no later child of ours inherits the descriptor and could
// outlive us holding the lock. We chose this over a native addon
// (fs-native-extensions has prebuilds, fs-ext compiles at install time, which
// npm 11 does not run): one small, ubiquitous binary run once at start costs
// less than a native module in every install.
//
// Taking the lock needs no free space: LOCK is opened without O_TRUNC and,
// after the first start, already exists. The pid written into it only feeds
// the error message, is written in place at a fixed width (so on a full disk
// it either overwrites bytes already allocated or is skipped), and is never
// the lock. The file is never deleted: unlinking a lock file lets the next
// process lock a new inode while an old holder still holds the old one.

import { constants, close, open, read, write } from "node:fs";
import { mkdir, realpath } from "node:fs/promises";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { QmError } from "../errors";

export interface DataDirLock {
  /** The directory's real path. */
  readonly dir: string;
  /** Idempotent. Frees the directory for another process. */
  release(): Promise<void>;
}

/** The lock file's name inside the data directory; backups leave it out. */
export const LOCK_FILE = "LOCK";
/** The util-linux tool that takes the lock on our descriptor. */
const FLOCK_COMMAND = "flock";
/** Exit status we ask `flock` to use when another holder has the lock, distinct from its usage and system errors (1). */
const FLOCK_CONFLICT_EXIT = 75;
/** Bytes of the pid record: a Linux pid has at most 7 digits; padding keeps every record the same length, so rewriting it never grows the file. */
const PID_RECORD_BYTES = 16;
/** Bytes of `flock`'s stderr kept for an error message. */
const FLOCK_STDERR_BYTES_MAX = 4096;

const openFd = promisify(open);
const closeFd = promisify(close);
const readFd = promisify(read);
const writeFd = promisify(write);

/** Fails with FAILED_PRECONDITION if another process (or this one) holds the directory. Creates the directory if missing. */
export async function acquireDataDirLock(dir: string): Promise<DataDirLock> {
  await mkdir(dir, { recursive: true });
  const realDir = await realpath(dir);
  const path = join(realDir, LOCK_FILE);
  let fd: number;
  try {
    // O_NOFOLLOW: LOCK must be the directory's own file, not a link to one elsewhere.
    fd = await openFd(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o644);
  } catch (error) {
    throw new QmError("UNAVAILABLE", `cannot open ${path}: ${messageOf(error)}`);
  }
  let outcome: FlockOutcome;
  try {
    outcome = await flockExclusive(fd);
  } catch (error) {
    await closeFd(fd).catch(() => undefined);
    throw new QmError("UNAVAILABLE", `cannot lock data directory ${dir}: ${messageOf(error)}`);
  }
  if (outcome === "held-elsewhere") {
    const holder = await readHolderPid(fd);
    await closeFd(fd).catch(() => undefined);
    throw new QmError("FAILED_PRECONDITION", `data directory ${dir} is in use by process ${holder}`, { dir, pid: holder });
  }
  // Best effort: on a full disk the message loses the pid, the node still starts.
  await writePidRecord(fd, String(process.pid)).catch(() => undefined);
  return new HeldLock(realDir, fd);
}

class HeldLock implements DataDirLock {
  private released: Promise<void> | null = null;

  constructor(
    readonly dir: string,
    private readonly fd: number,
  ) {}

  release(): Promise<void> {
    if (this.released === null) this.released = this.releaseOnce();
    return this.released;
  }

  private async releaseOnce(): Promise<void> {
    // Blanked while we still hold the lock, so the record never names us after
    // we are gone; nobody else can be writing it now. Closing drops the lock.
    await writePidRecord(this.fd, "").catch(() => undefined);
    await closeFd(this.fd);
  }
}

type FlockOutcome = "locked" | "held-elsewhere";

/** Takes an exclusive, non-blocking flock on fd's open file description through the `flock` tool. */
function flockExclusive(fd: number): Promise<FlockOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      FLOCK_COMMAND,
      ["--nonblock", "--exclusive", "--conflict-exit-code", String(FLOCK_CONFLICT_EXIT), "3"],
      // The child's descriptor 3 is a duplicate of fd: same open file description, so the lock it takes is ours.
      { stdio: ["ignore", "ignore", "pipe", fd] },
    );
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      if (stderr.length < FLOCK_STDERR_BYTES_MAX) stderr += chunk;
    });
    child.once("error", (error) => reject(new Error(`cannot run ${FLOCK_COMMAND} (util-linux): ${error.message}`)));
    child.once("close", (code, signal) => {
      if (code === 0) resolve("locked");
      else if (code === FLOCK_CONFLICT_EXIT) resolve("held-elsewhere");
      else reject(new Error(`${FLOCK_COMMAND} exited with ${code ?? signal}: ${stderr.trim().slice(0, FLOCK_STDERR_BYTES_MAX)}`));
    });
  });
}

async function writePidRecord(fd: number, pid: string): Promise<void> {
  const record = Buffer.from(`${pid.padEnd(PID_RECORD_BYTES - 1, " ")}\n`);
  // Positional write at 0 without truncation: the file keeps its size, so no new block is needed once it exists.
  await writeFd(fd, record, 0, record.length, 0);
}

async function readHolderPid(fd: number): Promise<string> {
  try {
    const buffer = Buffer.alloc(PID_RECORD_BYTES);
    const { bytesRead } = await readFd(fd, buffer, 0, PID_RECORD_BYTES, 0);
    const text = buffer.subarray(0, bytesRead).toString("latin1").trim();
    // Empty between a new holder's lock and its pid write, or when the disk was full.
    return /^[0-9]+$/.test(text) ? text : "unknown";
  } catch {
    return "unknown";
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
