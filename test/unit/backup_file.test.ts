import { expect } from "chai";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  BACKUP_FORMAT_VERSION,
  type BackupManifest,
  ChunkWriter,
  encodeManifest,
  endOfArchive,
  entryHeader,
  entryPadding,
  type FileSink,
  MANIFEST_NAME,
  type ManifestFile,
  readBackup,
} from "../../src/backup/backup_file";
import { QmError } from "../../src/errors";
import { BACKUP_CHUNK_BYTES_MAX } from "../../src/limits";

const SOURCE = { nodeId: "n1", hostname: "h", address: "127.0.0.1:1", dataDir: "/d", pid: 7 };
const MTIME_MS = Date.parse("2026-12-01T12:00:00Z");

function sha256(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** A deterministic byte pattern that is not all one value, so a misplaced chunk changes the hash. */
function pattern(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

interface Entry {
  readonly name: string;
  readonly data: Buffer;
}

/** Builds an archive from raw entries, so a test can write what our writer never would. */
function archive(entries: readonly Entry[], end = true): Buffer {
  const parts: Buffer[] = [];
  for (const { name, data } of entries) parts.push(entryHeader(name, data.length, MTIME_MS), data, entryPadding(data.length));
  if (end) parts.push(endOfArchive());
  return Buffer.concat(parts);
}

function manifestOf(files: readonly { path: string; data: Buffer }[]): BackupManifest {
  return {
    format: BACKUP_FORMAT_VERSION,
    createdAt: new Date(MTIME_MS).toISOString(),
    sourceNode: SOURCE,
    files: files.map((f) => ({ path: f.path, size: f.data.length, sha256: sha256(f.data) })),
  };
}

function validBackup(files: readonly { path: string; data: Buffer }[]): Buffer {
  return archive([{ name: MANIFEST_NAME, data: encodeManifest(manifestOf(files)) }, ...files.map((f) => ({ name: f.path, data: f.data }))]);
}

/** Feeds bytes in uneven pieces, as a file or socket would. */
async function* pieces(bytes: Buffer, size = 1000): AsyncGenerator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

class MemorySink implements FileSink {
  readonly files = new Map<string, Buffer[]>();
  private current: string | null = null;
  async open(file: ManifestFile): Promise<void> {
    this.current = file.path;
    this.files.set(file.path, []);
  }
  async write(bytes: Buffer): Promise<void> {
    this.files.get(this.current ?? "")?.push(Buffer.from(bytes));
  }
  async close(): Promise<void> {
    this.current = null;
  }
  content(path: string): Buffer {
    return Buffer.concat(this.files.get(path) ?? []);
  }
}

async function damageOf(bytes: Buffer): Promise<string> {
  try {
    await readBackup(pieces(bytes), new MemorySink());
  } catch (error) {
    if (error instanceof QmError) {
      expect(error.code).to.equal("DATA_LOSS");
      return error.message;
    }
    throw error;
  }
  throw new Error("expected the backup to be refused");
}

describe("backup file format", function () {
  const files = [
    { path: "identity.json", data: Buffer.from('{"node":"n1"}\n') },
    { path: "journal/data.mdb", data: pattern(3 * 4096 + 77, 5) },
    { path: "empty", data: Buffer.alloc(0) },
  ];

  it("reads back every file byte for byte and returns the manifest", async () => {
    const sink = new MemorySink();
    const manifest = await readBackup(pieces(validBackup(files), 333), sink);
    expect(manifest).to.deep.equal(manifestOf(files));
    for (const f of files) expect(sink.content(f.path).equals(f.data), f.path).to.equal(true);
  });

  it("cuts the stream into chunks of exactly BACKUP_CHUNK_BYTES_MAX, the last one shorter, losing no byte", async () => {
    const chunks: Buffer[] = [];
    const writer = new ChunkWriter(async (c) => {
      chunks.push(Buffer.from(c));
    });
    const input = pattern(2 * BACKUP_CHUNK_BYTES_MAX + 1234, 9);
    for (let i = 0; i < input.length; i += 70_001) await writer.push(input.subarray(i, i + 70_001));
    await writer.flush();
    expect(chunks.map((c) => c.length)).to.deep.equal([BACKUP_CHUNK_BYTES_MAX, BACKUP_CHUNK_BYTES_MAX, 1234]);
    expect(Buffer.concat(chunks).equals(input)).to.equal(true);
    expect(writer.bytesWritten).to.equal(input.length);
  });

  it("is a tar file that GNU tar lists and unpacks to the same bytes", function () {
    const dir = mkdtempSync(join(tmpdir(), "qm-tar-"));
    try {
      writeFileSync(join(dir, "b.tar"), validBackup(files));
      const listing = execFileSync("tar", ["-tf", join(dir, "b.tar")], { encoding: "utf8" }).trim().split("\n");
      expect(listing).to.deep.equal([MANIFEST_NAME, "identity.json", "journal/data.mdb", "empty"]);
      execFileSync("tar", ["-xf", join(dir, "b.tar"), "-C", dir]);
      for (const f of files) expect(sha256(readFileSync(join(dir, f.path)))).to.equal(sha256(f.data));
      const manifest = JSON.parse(readFileSync(join(dir, MANIFEST_NAME), "utf8")) as BackupManifest;
      expect(manifest.files.map((f) => f.path)).to.deep.equal(files.map((f) => f.path));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a file whose bytes changed, naming it and both checksums", async () => {
    const bytes = validBackup(files);
    const at = bytes.indexOf(files[1]!.data.subarray(0, 64)) + 100;
    bytes[at] = bytes[at]! ^ 0xff;
    const message = await damageOf(bytes);
    expect(message).to.include(`journal/data.mdb has sha256`);
    expect(message).to.include(`the manifest says ${sha256(files[1]!.data)}`);
  });

  it("refuses a backup cut short, one with a file the manifest does not list, and one whose files come out of order", async () => {
    const whole = validBackup(files);
    expect(await damageOf(whole.subarray(0, whole.length - 2048 - 512))).to.match(/ends in the middle|ends before/);
    const extra = archive([
      { name: MANIFEST_NAME, data: encodeManifest(manifestOf(files)) },
      ...files.map((f) => ({ name: f.path, data: f.data })),
      { name: "stray", data: Buffer.from("x") },
    ]);
    expect(await damageOf(extra)).to.include("it holds stray, which the manifest does not list");
    const swapped = archive([
      { name: MANIFEST_NAME, data: encodeManifest(manifestOf(files)) },
      { name: files[1]!.path, data: files[1]!.data },
      { name: files[0]!.path, data: files[0]!.data },
    ]);
    expect(await damageOf(swapped)).to.include("expected identity.json next, found journal/data.mdb");
  });

  it("refuses a manifest path that would leave the data directory, before writing anything", async () => {
    const evil = { format: BACKUP_FORMAT_VERSION, createdAt: new Date(MTIME_MS).toISOString(), sourceNode: SOURCE, files: [{ path: "../x", size: 1, sha256: sha256(Buffer.from("x")) }] };
    const bytes = archive([{ name: MANIFEST_NAME, data: Buffer.from(JSON.stringify(evil)) }]);
    const sink = new MemorySink();
    try {
      await readBackup(pieces(bytes), sink);
      expect.fail("accepted ../x");
    } catch (error) {
      expect((error as QmError).code).to.equal("DATA_LOSS");
      expect((error as QmError).message).to.include('path "../x" is not a plain relative path');
    }
    expect(sink.files.size).to.equal(0);
  });

  it("refuses a file that is not a backup at all", async () => {
    expect(await damageOf(Buffer.from("hello, not a tar file".repeat(100)))).to.match(/checksum|not ustar/);
    expect(await damageOf(archive([{ name: "identity.json", data: Buffer.from("{}") }]))).to.include(`the first entry must be ${MANIFEST_NAME}`);
  });

  it("writes sizes of 8 GiB and more in base-256 and reads them back", async () => {
    const size = 8 * 1024 ** 3 + 5;
    const header = entryHeader("journal/data.mdb", size, MTIME_MS);
    expect(header[124]).to.equal(0x80);
    expect(header.readBigUInt64BE(128)).to.equal(BigInt(size));
    const small = entryHeader("journal/data.mdb", 0o77777777777, MTIME_MS);
    expect(small.toString("latin1", 124, 135)).to.equal("77777777777");
    // The reader takes the size from the header: it matches the manifest, so the only complaint is the missing data.
    const manifest = encodeManifest({ ...manifestOf([]), files: [{ path: "journal/data.mdb", size, sha256: "0".repeat(64) }] });
    const bytes = Buffer.concat([entryHeader(MANIFEST_NAME, manifest.length, MTIME_MS), manifest, entryPadding(manifest.length), header]);
    expect(await damageOf(bytes)).to.include("it ends in the middle of a file");
  });
});
