// Offline restore: writes a new data directory from a backup file, checking
// every file's size and sha256 against the manifest as it streams through.
//
// The target must be empty (a missing directory is created) and is locked
// with the data-directory lock from the first file written to the end of the
// scrub, so neither a node nor a second restore can share it: a node started
// meanwhile is refused ("in use") instead of starting on files the scrub has
// not passed yet, and making the restore fail. The offline scrub checks the
// result as a journal under that same lock. On any failure everything the
// restore wrote is removed again, so the directory is as empty as it was and
// no node can start on half a backup. Every file and directory written is fsynced before
// the restore reports success.

import { createReadStream } from "node:fs";
import { mkdir, open, readdir, rm, stat, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { QmError } from "../errors";
import { acquireDataDirLock, LOCK_FILE } from "../journal/data_dir_lock";
import { scrubLocked } from "../journal/scrub";
import { BACKUP_CHUNK_BYTES_MAX } from "../limits";
import { type BackupManifest, type FileSink, type ManifestFile, readBackup } from "./backup_file";

/** Scrub problems quoted in a failed restore's message; `qmctl scrub` lists them all. */
const RESTORE_PROBLEMS_SHOWN_MAX = 5;

export interface RestoreSummary {
  readonly manifest: BackupManifest;
  readonly bytes: number;
}

/** Checks a backup file end to end without writing anything. */
export async function verifyBackupFile(file: string): Promise<RestoreSummary> {
  let bytes = 0;
  const sink: FileSink = {
    open: async () => undefined,
    write: async (chunk) => {
      bytes += chunk.length;
    },
    close: async () => undefined,
  };
  const manifest = await readBackup(openSource(file), sink);
  return { manifest, bytes };
}

/** For tests: runs between the last file written and the scrub, with the lock still held. */
export interface RestoreHooks {
  readonly beforeScrub?: () => Promise<void>;
}

export async function restoreBackup(from: string, dataDir: string, hooks: RestoreHooks = {}): Promise<RestoreSummary> {
  // Before anything is created or locked: a mistyped --from must leave no trace.
  if (!(await isFile(from))) throw new QmError("NOT_FOUND", `backup file ${from} not found (or not a regular file)`, { file: from });
  // A directory with a LOCK file may be a live node's: the lock speaks first,
  // so the message says "in use". Without one, emptiness is checked before
  // locking, so a wrong, non-empty directory never gets a LOCK file from us.
  const before = await contentsOf(dataDir);
  if (!before.includes(LOCK_FILE) && before.length > 0) refuseNotEmpty(dataDir, before);
  const lock = await acquireDataDirLock(dataDir);
  let summary: RestoreSummary;
  try {
    const contents = await contentsOf(lock.dir);
    if (contents.some((name) => name !== LOCK_FILE)) refuseNotEmpty(dataDir, contents);
    const sink = new DirectorySink(lock.dir);
    try {
      const manifest = await readBackup(openSource(from), sink);
      await sink.syncDirectories();
      summary = { manifest, bytes: sink.bytes };
    } catch (error) {
      await sink.abort();
      await removeAllBut(lock.dir, LOCK_FILE);
      throw error;
    }
    await hooks.beforeScrub?.();
    await scrubRestoredDataDir(lock.dir);
  } finally {
    await lock.release();
  }
  return summary;
}

/**
 * The sha256 of every file says the bytes are the ones backed up; the scrub
 * (identity file against the journal, the file's structure, every record's
 * checksum) says those bytes make a journal a node can serve, which catches a
 * backup taken from an already damaged directory. The caller holds the
 * data-directory lock throughout; a directory that fails the scrub is
 * emptied again under it, as a failed restore is.
 */
async function scrubRestoredDataDir(dataDir: string): Promise<void> {
  const report = await scrubLocked(dataDir);
  if (report.clean) return;
  const problems = [
    ...report.problems,
    ...report.damaged.map((d) => `${d.actorId}: ${d.problems.join(", ")}`),
  ].slice(0, RESTORE_PROBLEMS_SHOWN_MAX);
  let emptied = "it was emptied again";
  try {
    await removeAllBut(dataDir, LOCK_FILE);
  } catch (error) {
    emptied = `it could not be emptied (${error instanceof Error ? error.message : String(error)})`;
  }
  throw new QmError("DATA_LOSS", `the restored data directory ${dataDir} fails the scrub, so ${emptied}: ${problems.join("; ")}`, { dataDir });
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

function openSource(file: string): AsyncIterable<Buffer> {
  return createReadStream(file, { highWaterMark: BACKUP_CHUNK_BYTES_MAX });
}

async function contentsOf(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new QmError("UNAVAILABLE", `cannot read ${dir}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function refuseNotEmpty(dir: string, contents: readonly string[]): never {
  const shown = contents.filter((n) => n !== LOCK_FILE).slice(0, 5);
  throw new QmError("FAILED_PRECONDITION", `data directory ${dir} is not empty (it holds ${shown.join(", ")}); restore needs an empty or new directory`, {
    dir,
  });
}

async function removeAllBut(dir: string, keep: string): Promise<void> {
  for (const name of await readdir(dir)) {
    if (name !== keep) await rm(path.join(dir, name), { recursive: true, force: true });
  }
}

/** Writes each file of the backup to its place under root, creating parents, refusing to overwrite anything. */
class DirectorySink implements FileSink {
  bytes = 0;
  private current: FileHandle | null = null;
  /** Directories created, to be fsynced once their entries are written; at most one per file of the backup, plus root. */
  private readonly directories = new Set<string>();

  constructor(private readonly root: string) {
    this.directories.add(root);
  }

  async open(file: ManifestFile): Promise<void> {
    const target = path.join(this.root, ...file.path.split("/"));
    const parent = path.dirname(target);
    await mkdir(parent, { recursive: true });
    for (let dir = parent; dir.startsWith(this.root) && dir !== this.root; dir = path.dirname(dir)) this.directories.add(dir);
    // "wx": a path the backup names twice, or anything already there, is an error, never an overwrite.
    this.current = await open(target, "wx", 0o644);
  }

  async write(bytes: Buffer): Promise<void> {
    const handle = this.requireOpen();
    let offset = 0;
    while (offset < bytes.length) {
      const { bytesWritten } = await handle.write(bytes, offset, bytes.length - offset);
      offset += bytesWritten;
    }
    this.bytes += bytes.length;
  }

  async close(): Promise<void> {
    const handle = this.requireOpen();
    this.current = null;
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async syncDirectories(): Promise<void> {
    // Deepest first, so a directory's entry in its parent is synced after its own entries.
    const dirs = [...this.directories].sort((a, b) => b.length - a.length);
    for (const dir of dirs) {
      const handle = await open(dir, "r");
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  }

  async abort(): Promise<void> {
    const handle = this.current;
    this.current = null;
    await handle?.close().catch(() => undefined);
  }

  private requireOpen(): FileHandle {
    if (this.current === null) throw new QmError("INTERNAL", "restore wrote to a file it had not opened");
    return this.current;
  }
}
