// The backup file format. A backup is a POSIX tar (ustar) stream, so any tar
// can list or unpack it (`tar -tvf node.qmbackup`):
//
//   1. quartermaster-backup.json  the manifest (BackupManifest below): format
//      version, creation time, source node, and the path, size and sha256 of
//      every file that follows, in order;
//   2. exactly those files, as regular-file entries, paths relative to the
//      data directory with "/" separators;
//   3. the end-of-archive marker (two zero blocks).
//
// Nothing else is accepted: no directories, links, extension headers or files
// the manifest does not name. The manifest comes first so a restore knows what
// to expect before it writes a byte, and checks every file as it streams
// through. Sizes at or above 8 GiB use tar's base-256 size field (GNU tar and
// bsdtar read it), so an LMDB file of any size fits.
//
// We wrote the ~150 lines of ustar here instead of taking a tar package: we
// need exactly one entry kind, and the reader must refuse everything else.

import { createHash } from "node:crypto";
import { QmError } from "../errors";
import { BACKUP_CHUNK_BYTES_MAX, BACKUP_FILES_MAX, BACKUP_MANIFEST_BYTES_MAX, BACKUP_PATH_BYTES_MAX } from "../limits";

export const BACKUP_FORMAT_VERSION = 1;
export const MANIFEST_NAME = "quartermaster-backup.json";

export interface ManifestFile {
  /** Relative to the data directory, "/"-separated. */
  readonly path: string;
  readonly size: number;
  /** Lowercase hex. */
  readonly sha256: string;
}

export interface SourceNode {
  /** QM_NODE_ID of the node that made the backup. */
  readonly nodeId: string;
  readonly hostname: string;
  /** The gRPC address the node served the backup on. */
  readonly address: string;
  readonly dataDir: string;
  readonly pid: number;
}

export interface BackupManifest {
  readonly format: number;
  /** ISO 8601, when the consistent copy was taken. */
  readonly createdAt: string;
  readonly sourceNode: SourceNode;
  readonly files: readonly ManifestFile[];
}

const BLOCK_BYTES = 512;
const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK_BYTES);
/** Largest size the 11 octal digits of the ustar size field hold. */
const OCTAL_SIZE_MAX = 0o77777777777;
const SHA256_PATTERN = /^[0-9a-f]{64}$/;
/** One path segment: what our own data directory holds, and no way out of it ("..", "." and "" are refused separately). */
const SEGMENT_PATTERN = /^[A-Za-z0-9._-]+$/;

// ---- Writing -------------------------------------------------------------------

/** Cuts what it is given into chunks of exactly BACKUP_CHUNK_BYTES_MAX (the last one shorter) and hands each to emit, in order. */
export class ChunkWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private written = 0;

  constructor(private readonly emit: (chunk: Buffer) => Promise<void>) {}

  get bytesWritten(): number {
    return this.written;
  }

  async push(bytes: Buffer): Promise<void> {
    let rest = bytes;
    while (this.pendingBytes + rest.length >= BACKUP_CHUNK_BYTES_MAX) {
      const take = BACKUP_CHUNK_BYTES_MAX - this.pendingBytes;
      this.pending.push(rest.subarray(0, take));
      rest = rest.subarray(take);
      const chunk = Buffer.concat(this.pending, BACKUP_CHUNK_BYTES_MAX);
      this.pending = [];
      this.pendingBytes = 0;
      await this.emitChunk(chunk);
    }
    if (rest.length > 0) {
      this.pending.push(rest);
      this.pendingBytes += rest.length;
    }
  }

  async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const chunk = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    await this.emitChunk(chunk);
  }

  private async emitChunk(chunk: Buffer): Promise<void> {
    this.written += chunk.length;
    await this.emit(chunk);
  }
}

/** The 512-byte ustar header of a regular file. */
export function entryHeader(name: string, size: number, mtimeMs: number): Buffer {
  checkPath(name);
  const header = Buffer.alloc(BLOCK_BYTES);
  header.write(name, 0, 100, "utf8");
  header.write("0000644\0", 100, "latin1"); // mode
  header.write("0000000\0", 108, "latin1"); // uid
  header.write("0000000\0", 116, "latin1"); // gid
  writeSize(header, size);
  header.write(`${Math.floor(mtimeMs / 1000).toString(8).padStart(11, "0")}\0`, 136, "latin1");
  header.write("        ", 148, "latin1"); // checksum field counts as spaces while summing
  header.write("0", 156, "latin1"); // typeflag: regular file
  header.write("ustar\0" + "00", 257, "latin1");
  header.write(`${checksumOf(header).toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return header;
}

/** Zero bytes that round an entry's data up to whole blocks. */
export function entryPadding(size: number): Buffer {
  const rest = size % BLOCK_BYTES;
  return rest === 0 ? Buffer.alloc(0) : Buffer.alloc(BLOCK_BYTES - rest);
}

export function endOfArchive(): Buffer {
  return END_OF_ARCHIVE;
}

export function encodeManifest(manifest: BackupManifest): Buffer {
  checkManifest(manifest);
  return Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, "utf8");
}

function writeSize(header: Buffer, size: number): void {
  if (size <= OCTAL_SIZE_MAX) {
    header.write(`${size.toString(8).padStart(11, "0")}\0`, 124, "latin1");
    return;
  }
  // Base-256: the high bit of the first byte set, the value big-endian in the rest.
  header.fill(0, 124, 136);
  header[124] = 0x80;
  header.writeBigUInt64BE(BigInt(size), 128);
}

function checksumOf(header: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK_BYTES; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  return sum;
}

// ---- Reading -------------------------------------------------------------------

/** Where a reader puts the files it checks; a verification without restoring passes one that drops the bytes. */
export interface FileSink {
  /** Called once per file, before its bytes. */
  open(file: ManifestFile): Promise<void>;
  write(bytes: Buffer): Promise<void>;
  /** Called after the last byte of the file checked out. */
  close(): Promise<void>;
}

/**
 * Reads a whole backup from source, checks the manifest, then every file's
 * size and sha256 against it, handing the bytes to sink as they come. Returns
 * the manifest. Any deviation from the format is DATA_LOSS naming what was
 * wrong: the sink may have received part of a bad file and must be discarded.
 */
export async function readBackup(source: AsyncIterable<Buffer>, sink: FileSink): Promise<BackupManifest> {
  const reader = new BlockReader(source[Symbol.asyncIterator]());
  const first = await reader.header();
  if (first === null || first.name !== MANIFEST_NAME) damaged(`the first entry must be ${MANIFEST_NAME}`);
  if (first.size > BACKUP_MANIFEST_BYTES_MAX) damaged(`manifest of ${first.size} bytes is larger than ${BACKUP_MANIFEST_BYTES_MAX}`);
  const manifestBytes = await reader.exact(first.size);
  await reader.skip(entryPadding(first.size).length);
  const manifest = parseManifest(manifestBytes);

  for (const file of manifest.files) {
    const entry = await reader.header();
    if (entry === null) damaged(`it ends before ${file.path}`);
    if (entry.name !== file.path) damaged(`expected ${file.path} next, found ${entry.name}`);
    if (entry.size !== file.size) damaged(`${file.path} is ${entry.size} bytes, the manifest says ${file.size}`);
    await sink.open(file);
    const hash = createHash("sha256");
    let left = file.size;
    while (left > 0) {
      const bytes = await reader.some(Math.min(left, BACKUP_CHUNK_BYTES_MAX));
      hash.update(bytes);
      await sink.write(bytes);
      left -= bytes.length;
    }
    const sha256 = hash.digest("hex");
    if (sha256 !== file.sha256) damaged(`${file.path} has sha256 ${sha256}, the manifest says ${file.sha256}`);
    await sink.close();
    await reader.skip(entryPadding(file.size).length);
  }
  const extra = await reader.header();
  if (extra !== null) damaged(`it holds ${extra.name}, which the manifest does not list`);
  return manifest;
}

function parseManifest(bytes: Buffer): BackupManifest {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch (error) {
    damaged(`the manifest is not JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  checkManifest(value);
  return value;
}

/** Everything a restore relies on, checked before any file is written. */
function checkManifest(value: unknown): asserts value is BackupManifest {
  if (typeof value !== "object" || value === null) damaged("the manifest is not an object");
  const m = value as Partial<Record<keyof BackupManifest, unknown>>;
  if (m.format !== BACKUP_FORMAT_VERSION) damaged(`manifest format ${String(m.format)} is not ${BACKUP_FORMAT_VERSION}`);
  if (typeof m.createdAt !== "string" || Number.isNaN(Date.parse(m.createdAt))) damaged("manifest createdAt is not a time");
  const node = m.sourceNode as Partial<Record<keyof SourceNode, unknown>> | undefined;
  if (
    typeof node !== "object" ||
    node === null ||
    typeof node.nodeId !== "string" ||
    typeof node.hostname !== "string" ||
    typeof node.address !== "string" ||
    typeof node.dataDir !== "string" ||
    !Number.isSafeInteger(node.pid)
  ) {
    damaged("manifest sourceNode needs nodeId, hostname, address, dataDir and pid");
  }
  if (!Array.isArray(m.files)) damaged("manifest files is not a list");
  if (m.files.length > BACKUP_FILES_MAX) damaged(`manifest lists ${m.files.length} files, more than ${BACKUP_FILES_MAX}`);
  const seen = new Set<string>();
  for (const [i, f] of (m.files as unknown[]).entries()) {
    const file = f as Partial<Record<keyof ManifestFile, unknown>>;
    if (typeof file !== "object" || file === null || typeof file.path !== "string") damaged(`manifest files[${i}] has no path`);
    checkPath(file.path);
    if (file.path === MANIFEST_NAME || seen.has(file.path)) damaged(`manifest lists ${file.path} twice`);
    seen.add(file.path);
    if (!(Number.isSafeInteger(file.size) && (file.size as number) >= 0)) damaged(`manifest size of ${file.path} is not a byte count`);
    if (typeof file.sha256 !== "string" || !SHA256_PATTERN.test(file.sha256)) damaged(`manifest sha256 of ${file.path} is not a sha256`);
  }
}

/** A relative path that stays inside the directory it is joined to. */
function checkPath(path: string): void {
  if (Buffer.byteLength(path) > BACKUP_PATH_BYTES_MAX) damaged(`path ${path} is longer than ${BACKUP_PATH_BYTES_MAX} bytes`);
  const segments = path.split("/");
  for (const segment of segments) {
    if (segment === "" || segment === "." || segment === ".." || !SEGMENT_PATTERN.test(segment)) {
      damaged(`path ${JSON.stringify(path)} is not a plain relative path`);
    }
  }
}

function damaged(what: string): never {
  throw new QmError("DATA_LOSS", `backup is damaged or not a Quartermaster backup: ${what}`);
}

interface EntryHeader {
  readonly name: string;
  readonly size: number;
}

/** Pulls exact byte counts out of a stream of arbitrary chunks, holding at most one chunk beyond what was asked. */
class BlockReader {
  private buffer: Buffer = Buffer.alloc(0);
  private ended = false;

  constructor(private readonly source: AsyncIterator<Buffer>) {}

  /** The next entry's header, or null at the end-of-archive marker. */
  async header(): Promise<EntryHeader | null> {
    const block = await this.exact(BLOCK_BYTES);
    if (block.every((b) => b === 0)) {
      // The marker is two zero blocks; a writer that stopped after one is still readable.
      return null;
    }
    const stored = parseInt(block.toString("latin1", 148, 156).replace(/[\0 ]+$/, "").trim(), 8);
    if (stored !== checksumOf(block)) damaged("a tar header fails its checksum");
    if (block.toString("latin1", 257, 262) !== "ustar") damaged("an entry is not ustar");
    const type = block.toString("latin1", 156, 157);
    const name = nulTerminated(block, 0, 100);
    if (type !== "0" && type !== "\0") damaged(`${name} is not a regular file (type ${JSON.stringify(type)})`);
    if (nulTerminated(block, 345, 155) !== "") damaged(`${name} uses a ustar prefix`);
    return { name, size: readSize(block) };
  }

  /** Exactly n bytes; DATA_LOSS if the stream ends first. */
  async exact(n: number): Promise<Buffer> {
    while (this.buffer.length < n) {
      if (!(await this.pull())) damaged("it ends in the middle of an entry");
    }
    const out = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(n);
    return out;
  }

  /** Between 1 and n bytes, whatever is at hand. */
  async some(n: number): Promise<Buffer> {
    if (this.buffer.length === 0 && !(await this.pull())) damaged("it ends in the middle of a file");
    const out = this.buffer.subarray(0, Math.min(n, this.buffer.length));
    this.buffer = this.buffer.subarray(out.length);
    return out;
  }

  async skip(n: number): Promise<void> {
    if (n > 0) await this.exact(n);
  }

  private async pull(): Promise<boolean> {
    if (this.ended) return false;
    const next = await this.source.next();
    if (next.done === true) {
      this.ended = true;
      return false;
    }
    const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    return true;
  }
}

function nulTerminated(block: Buffer, offset: number, length: number): string {
  const field = block.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return field.subarray(0, end < 0 ? length : end).toString("utf8");
}

function readSize(block: Buffer): number {
  if ((block[124]! & 0x80) !== 0) {
    const size = block.readBigUInt64BE(128);
    if (block.subarray(125, 128).some((b) => b !== 0) || size > BigInt(Number.MAX_SAFE_INTEGER)) damaged("an entry size is out of range");
    return Number(size);
  }
  const text = block.toString("latin1", 124, 136).replace(/[\0 ]+$/, "").trim();
  if (!/^[0-7]+$/.test(text)) damaged("an entry size is not octal");
  return parseInt(text, 8);
}
