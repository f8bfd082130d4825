// Online backup of a running node's data directory.
//
// Consistency: the journal is copied by LMDB itself (mdb_env_copy2 through
// lmdb-js's backup()), which reads the whole environment in one read
// transaction while writers keep committing. Every write acknowledged before
// the copy starts is committed, so it is in the copy; nothing committed later
// is. The other files of the directory (whatever sits beside the journal, such
// as an identity file) are copied as they are. The lock file is left out: it
// belongs to the running process, not to the data. So is LMDB's lock.mdb,
// its reader table, which LMDB rebuilds when it opens an environment alone.
//
// The manifest with every file's sha256 goes first in the backup, so the
// copy is staged in STAGING_DIR inside the data directory, hashed, streamed,
// and removed. One backup runs at a time. Staging shares the journal's file
// system, so a backup that would leave less than BACKUP_DISK_RESERVE_BYTES
// free is refused with DISK_FULL before it writes anything: a backup must
// never be what fills the disk under the journal.

import { createReadStream } from "node:fs";
import { copyFile, lstat, mkdir, readdir, rm, statfs } from "node:fs/promises";
import { createHash } from "node:crypto";
import path from "node:path";
import type { Clock } from "../clock";
import { QmError } from "../errors";
import { LOCK_FILE } from "../journal/data_dir_lock";
import { BACKUP_CHUNK_BYTES_MAX, BACKUP_DISK_RESERVE_BYTES, BACKUP_FILES_MAX } from "../limits";
import {
  BACKUP_FORMAT_VERSION,
  type BackupManifest,
  ChunkWriter,
  encodeManifest,
  endOfArchive,
  entryHeader,
  entryPadding,
  MANIFEST_NAME,
  type ManifestFile,
  type SourceNode,
} from "./backup_file";

/** Where a backup is staged inside the data directory; never part of a backup, and removed at the start of the next one if a crash left it. */
export const STAGING_DIR = ".backup-staging";
/** The lock file of the abstract-socket lock before it moved to LOCK; stale wherever it is still found. */
const LEGACY_LOCK_FILE = "LOCK.pid";
/** LMDB's data file inside the journal directory: what copyJournal writes. */
const LMDB_DATA_FILE = "data.mdb";
/** LMDB's reader table inside the journal directory. */
const LMDB_LOCK_FILE = "lock.mdb";

export interface DataDirBackupOptions {
  readonly dataDir: string;
  /** The journal's directory, relative to dataDir ("journal"). */
  readonly journalDir: string;
  /** Writes a consistent copy of the journal environment into the given directory. */
  copyJournal(targetDir: string): Promise<void>;
  readonly sourceNode: () => SourceNode;
  readonly clock: Clock;
}

export interface BackupSummary {
  readonly manifest: BackupManifest;
  readonly bytes: number;
}

export class DataDirBackup {
  private running: Promise<BackupSummary> | null = null;
  private stopped = false;

  constructor(private readonly options: DataDirBackupOptions) {}

  /**
   * Streams one backup to emit, in chunks of at most BACKUP_CHUNK_BYTES_MAX.
   * emit applies backpressure by resolving late and aborts the backup by
   * rejecting. FAILED_PRECONDITION if a backup is already running.
   */
  run(emit: (chunk: Buffer) => Promise<void>): Promise<BackupSummary> {
    if (this.stopped) return Promise.reject(new QmError("UNAVAILABLE", "the node is stopping"));
    if (this.running !== null) {
      return Promise.reject(new QmError("FAILED_PRECONDITION", "a backup of this node is already running; try again when it ends"));
    }
    const running = this.runOnce(emit).finally(() => {
      this.running = null;
    });
    this.running = running;
    return running;
  }

  /** Removes a staging area a crash left behind. */
  async start(): Promise<void> {
    await rm(path.join(this.options.dataDir, STAGING_DIR), { recursive: true, force: true });
  }

  /** Refuses new backups and waits for a running one to end (its stream fails at the next chunk). Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.running?.catch(() => undefined);
  }

  private async runOnce(emit: (chunk: Buffer) => Promise<void>): Promise<BackupSummary> {
    const { dataDir } = this.options;
    const staging = path.join(dataDir, STAGING_DIR);
    await rm(staging, { recursive: true, force: true });
    try {
      await this.checkFreeSpace();
      await mkdir(staging);
      const createdAt = new Date(this.options.clock.nowMs()).toISOString();
      await this.options.copyJournal(path.join(staging, this.options.journalDir));
      await this.copyOthers(dataDir, staging, "");
      const files = await hashTree(staging);
      const manifest: BackupManifest = { format: BACKUP_FORMAT_VERSION, createdAt, sourceNode: this.options.sourceNode(), files };
      const writer = new ChunkWriter((chunk) => {
        if (this.stopped) throw new QmError("UNAVAILABLE", "the node is stopping; backup abandoned");
        return emit(chunk);
      });
      await writeArchive(writer, manifest, staging, Date.parse(createdAt));
      return { manifest, bytes: writer.bytesWritten };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOSPC") {
        throw new QmError("DISK_FULL", `no space left to stage a backup in ${dataDir}`);
      }
      throw error;
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  /** The staged copy is at most as large as the files it copies (an LMDB copy never exceeds its file). */
  private async checkFreeSpace(): Promise<void> {
    const needed = (await bytesUnder(this.options.dataDir)) + BACKUP_DISK_RESERVE_BYTES;
    const { bavail, bsize } = await statfs(this.options.dataDir);
    const free = bavail * bsize;
    if (free < needed) {
      throw new QmError(
        "DISK_FULL",
        `a backup needs ${needed} bytes free in ${this.options.dataDir} (a copy of its files plus a reserve of ${BACKUP_DISK_RESERVE_BYTES}); ${free} are free`,
        { neededBytes: String(needed), freeBytes: String(free) },
      );
    }
  }

  /** Copies every regular file of the data directory except the journal (copied by LMDB), the lock and the staging area. */
  private async copyOthers(dir: string, target: string, relative: string): Promise<void> {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const rel = relative === "" ? entry.name : `${relative}/${entry.name}`;
      if (relative === "" && (entry.name === LOCK_FILE || entry.name === LEGACY_LOCK_FILE || entry.name === STAGING_DIR)) continue;
      if (rel === this.options.journalDir) {
        await this.copyJournalSiblings(path.join(dir, entry.name), path.join(target, entry.name));
        continue;
      }
      const from = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        await mkdir(path.join(target, entry.name), { recursive: true });
        await this.copyOthers(from, path.join(target, entry.name), rel);
      } else if (entry.isFile()) {
        await copyFile(from, path.join(target, entry.name));
      } else {
        throw new QmError("FAILED_PRECONDITION", `cannot back up ${from}: not a regular file or directory`);
      }
    }
  }

  /** Anything in the journal directory besides LMDB's own two files is copied as it is. */
  private async copyJournalSiblings(dir: string, target: string): Promise<void> {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (entry.name === LMDB_DATA_FILE || entry.name === LMDB_LOCK_FILE) continue;
      if (!entry.isFile()) throw new QmError("FAILED_PRECONDITION", `cannot back up ${path.join(dir, entry.name)}: not a regular file`);
      await copyFile(path.join(dir, entry.name), path.join(target, entry.name));
    }
  }
}

/** Bytes of the regular files under dir, the staging area and lock files aside; bounded by BACKUP_FILES_MAX entries. */
async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  let entries = 0;
  const walk = async (current: string, top: boolean): Promise<void> => {
    for (const entry of await readdir(current, { withFileTypes: true })) {
      if (++entries > BACKUP_FILES_MAX) throw new QmError("LIMIT_EXCEEDED", `the data directory holds more than ${BACKUP_FILES_MAX} files`);
      if (top && (entry.name === STAGING_DIR || entry.name === LOCK_FILE)) continue;
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) await walk(full, false);
      else if (entry.isFile()) total += (await lstat(full)).size;
    }
  };
  await walk(dir, true);
  return total;
}

/** Every regular file under root, sorted by path, with its size and sha256. */
async function hashTree(root: string): Promise<ManifestFile[]> {
  const paths: string[] = [];
  const walk = async (dir: string, relative: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const rel = relative === "" ? entry.name : `${relative}/${entry.name}`;
      if (entry.isDirectory()) await walk(path.join(dir, entry.name), rel);
      else paths.push(rel);
      if (paths.length > BACKUP_FILES_MAX) throw new QmError("LIMIT_EXCEEDED", `the data directory holds more than ${BACKUP_FILES_MAX} files`);
    }
  };
  await walk(root, "");
  const files: ManifestFile[] = [];
  for (const rel of paths) {
    if (rel === MANIFEST_NAME) throw new QmError("FAILED_PRECONDITION", `the data directory holds a file named ${MANIFEST_NAME}`);
    const full = path.join(root, rel);
    const { size } = await lstat(full);
    const hash = createHash("sha256");
    let read = 0;
    for await (const chunk of createReadStream(full, { highWaterMark: BACKUP_CHUNK_BYTES_MAX })) {
      const bytes = chunk as Buffer;
      hash.update(bytes);
      read += bytes.length;
    }
    if (read !== size) throw new QmError("INTERNAL", `staged ${rel} changed while it was hashed`);
    files.push({ path: rel, size, sha256: hash.digest("hex") });
  }
  return files;
}

async function writeArchive(writer: ChunkWriter, manifest: BackupManifest, staging: string, mtimeMs: number): Promise<void> {
  const manifestBytes = encodeManifest(manifest);
  await writer.push(entryHeader(MANIFEST_NAME, manifestBytes.length, mtimeMs));
  await writer.push(manifestBytes);
  await writer.push(entryPadding(manifestBytes.length));
  for (const file of manifest.files) {
    await writer.push(entryHeader(file.path, file.size, mtimeMs));
    let sent = 0;
    for await (const chunk of createReadStream(path.join(staging, file.path), { highWaterMark: BACKUP_CHUNK_BYTES_MAX })) {
      const bytes = chunk as Buffer;
      sent += bytes.length;
      await writer.push(bytes);
    }
    // The staging area is ours alone; a size change means something else wrote into it.
    if (sent !== file.size) throw new QmError("INTERNAL", `staged ${file.path} changed while it was sent`);
    await writer.push(entryPadding(file.size));
  }
  await writer.push(endOfArchive());
  await writer.flush();
}
