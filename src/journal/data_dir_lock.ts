// One process per data directory. The embedded journal assumes a single
// writer (its group commit, its counters, the runtime's one activation per
// actor), so a second server started on the same directory must refuse to
// run, and a server that died, however it died, must not leave a lock that
// needs a human to remove.
//
// The lock is a listening Linux abstract unix socket named after the
// directory's real path. Its name lives in the kernel, not on disk: binding a
// name already bound fails with EADDRINUSE, and the kernel drops the name the
// moment its last descriptor closes, including on SIGKILL or a crash. A lock
// file with a pid inside would need staleness guessing (pid reuse) instead.
//
// LOCK.pid in the directory only feeds the error message; it is not the lock.
// It can name a dead process for the instant between a new holder's bind and
// its rewrite of the file.
//
// Limitation: abstract socket names are per network namespace. Two containers
// with their own network namespaces that mount the same volume do NOT see each
// other's lock; run them in one namespace or give each its own volume.

import { createHash } from "node:crypto";
import { mkdir, readFile, realpath, rename, unlink, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { QmError } from "../errors";

export interface DataDirLock {
  /** The directory's real path, as the lock is keyed. */
  readonly dir: string;
  /** Idempotent. Frees the directory for another process. */
  release(): Promise<void>;
}

const PID_FILE = "LOCK.pid";
const SOCKET_PREFIX = "\0quartermaster-lock:";

/** Fails with FAILED_PRECONDITION if another process (or this one) holds the directory. Creates the directory if missing. */
export async function acquireDataDirLock(dir: string): Promise<DataDirLock> {
  if (process.platform !== "linux") {
    throw new QmError("FAILED_PRECONDITION", `data directory locking needs Linux abstract sockets (platform ${process.platform})`);
  }
  await mkdir(dir, { recursive: true });
  const realDir = await realpath(dir);
  // A hash keeps the name within the 107 bytes of sun_path and free of odd characters.
  const name = SOCKET_PREFIX + createHash("sha256").update(realDir).digest("hex");
  // Nobody is meant to connect; anyone who does is dropped at once.
  const server = createServer((socket) => socket.destroy());
  try {
    await listen(server, name);
  } catch (error) {
    if (errorCode(error) === "EADDRINUSE") {
      const holder = await readHolderPid(realDir);
      throw new QmError("FAILED_PRECONDITION", `data directory ${dir} is in use by process ${holder}`, { dir, pid: holder });
    }
    throw new QmError("UNAVAILABLE", `cannot lock data directory ${dir}: ${error instanceof Error ? error.message : String(error)}`);
  }
  // The lock must not keep the process alive on its own.
  server.unref();
  // Once bound, a server error cannot give the name away; without a listener
  // it would crash the process, so it is ignored.
  server.on("error", () => undefined);
  try {
    await writePidFile(realDir);
  } catch (error) {
    await closeServer(server);
    throw new QmError("UNAVAILABLE", `cannot write ${join(realDir, PID_FILE)}: ${error instanceof Error ? error.message : String(error)}`);
  }
  return new HeldLock(realDir, server);
}

class HeldLock implements DataDirLock {
  private released: Promise<void> | null = null;

  constructor(
    readonly dir: string,
    private readonly server: Server,
  ) {}

  release(): Promise<void> {
    if (this.released === null) this.released = this.releaseOnce();
    return this.released;
  }

  private async releaseOnce(): Promise<void> {
    // The pid file goes first: while we still hold the socket, nobody else can
    // have rewritten it, so we never delete a newer holder's file.
    await unlink(join(this.dir, PID_FILE)).catch(() => undefined);
    await closeServer(this.server);
  }
}

function listen(server: Server, name: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ path: name, exclusive: true }, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => server.close(() => resolve()));
}

async function writePidFile(dir: string): Promise<void> {
  // Write then rename, so a reader never sees a half-written pid.
  const tmp = join(dir, `${PID_FILE}.${process.pid}.tmp`);
  await writeFile(tmp, `${process.pid}\n`);
  await rename(tmp, join(dir, PID_FILE));
}

async function readHolderPid(dir: string): Promise<string> {
  try {
    const text = (await readFile(join(dir, PID_FILE), "utf8")).trim();
    return /^[0-9]+$/.test(text) ? text : "unknown";
  } catch {
    // The holder has bound the socket but not yet written its pid.
    return "unknown";
  }
}

function errorCode(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null || !("code" in error)) return undefined;
  return typeof error.code === "string" ? error.code : undefined;
}
