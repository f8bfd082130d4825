// Checksummed journal records (journal formats 2 to 5).
//
// LMDB stores no checksums: a zeroed or changed page is served as truth, or
// fails deep inside a read. So every value we store carries a CRC-32 in its
// first 4 bytes (little endian), computed over the value's body AND the
// identity of its key (actor id, sequence number, snapshot seq, wake-up
// time). The key is in the sum because a damaged key is as bad as a damaged
// value: a record that turns up under another actor or another seq must not
// be believed either.
//
// Why CRC-32 (the zlib polynomial): node:zlib has it built in (no
// dependency, no install script), and it detects every burst error up to 32
// bits and other damage with probability 1 - 2^-32, which is what a disk or a
// stray write produces; it is not meant to resist a deliberate forger, who
// could rewrite the file anyway. CRC-32C or xxHash would need a package with
// a native or wasm build for no gain here. node:zlib's crc32 costs about
// 0.3-0.9 µs per call on this machine whatever the length (argument checks
// and the native call), more than packing a small event; so values shorter
// than CRC_NATIVE_BYTES_MIN, and the seeds, go through a table-driven
// JavaScript loop that computes the same function (a unit test compares
// them), and only long values (snapshots) use the native one.

import { crc32 as zlibCrc32 } from "node:zlib";
import { QmError } from "../errors";

/**
 * The on-disk format this code writes, stamped in the info keyspace. Format 3
 * added the oldest audit record's time to the meta record (see
 * ActorMeta.auditOldestAtMs); its other records are format 2's, so a format 2
 * journal is read as it is. Format 4 changed no record layout: it added an
 * event kind (the SKU's `reservedMany`, one event for a ReserveBatch's holds)
 * that code reading format 3 only would skip without a word, losing those
 * holds. So a journal of an older format is read as it is and stamped 4 by its
 * first write, and code that reads formats 2 and 3 only refuses it with a
 * message instead. Format 5 did the same for the SKU's `reservedCols` (a
 * batch's holds in columns, src/domain/hold_columns.ts). A journal of any other
 * format is refused.
 */
export const JOURNAL_FORMAT = 5;
/** Formats this code reads. */
export const JOURNAL_FORMATS_READ: readonly number[] = [2, 3, 4, 5];
/** The meta record layout this code writes (format 3's; formats 4 and 5 kept it), stored in each meta record. */
export const META_RECORD_FORMAT = 3;
/** The first format with record checksums: the format of the meta records written before format 3. */
export const JOURNAL_FORMAT_CHECKSUMS = 2;
export const CHECKSUM_BYTES = 4;

/** Stable reason of every integrity failure (ErrorInfo reason on the wire). */
export const JOURNAL_CORRUPT = "JOURNAL_CORRUPT";

/** From this length on, node:zlib's native loop beats the per-call overhead. */
const CRC_NATIVE_BYTES_MIN = 512;

const CRC_TABLE = ((): Int32Array => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** zlib's crc32(data, seed): the CRC-32 of data, continuing from seed. */
export function crc32(data: Uint8Array, seed = 0): number {
  if (data.length >= CRC_NATIVE_BYTES_MIN) return zlibCrc32(data, seed);
  let crc = ~seed;
  for (let i = 0; i < data.length; i++) crc = CRC_TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

/** crc32 of a string's UTF-8 bytes; actor ids are ASCII, so the loop reads char codes directly. */
function crc32String(text: string, seed = 0): number {
  let crc = ~seed;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x80) return zlibCrc32(text, seed);
    crc = CRC_TABLE[(crc ^ code) & 0xff]! ^ (crc >>> 8);
  }
  return ~crc >>> 0;
}

// One scratch buffer for the numbers that go into a seed: the journal is
// single-threaded JS, and each use is finished before the next begins.
const scratch = Buffer.allocUnsafe(8);

function numberSeed(value: number, seed: number): number {
  scratch.writeDoubleLE(value, 0);
  return crc32(scratch, seed);
}

/** Seed of an actor's records; combine with seqSeed for records keyed by a sequence number. */
export function actorSeed(actorId: string): number {
  return crc32String(actorId);
}

export function seqSeed(actorSeedValue: number, seq: number): number {
  return numberSeed(seq, actorSeedValue);
}

/** A new buffer: the checksum, then body. */
export function seal(body: Uint8Array, seed: number): Buffer {
  const sealed = Buffer.allocUnsafe(CHECKSUM_BYTES + body.length);
  sealed.set(body, CHECKSUM_BYTES);
  sealed.writeUInt32LE(crc32(body, seed), 0);
  return sealed;
}

/** Seals a buffer whose first CHECKSUM_BYTES were left free for the checksum. */
export function sealInPlace(value: Buffer, seed: number): Buffer {
  value.writeUInt32LE(crc32(value.subarray(CHECKSUM_BYTES), seed), 0);
  return value;
}

/** The body of a sealed value, or undefined if the value does not match its checksum. */
export function unseal(value: Buffer, seed: number): Buffer | undefined {
  if (value.length < CHECKSUM_BYTES) return undefined;
  const body = value.subarray(CHECKSUM_BYTES);
  return crc32(body, seed) === value.readUInt32LE(0) ? body : undefined;
}

/** A wake-up index entry has no body: its value is the checksum of its key. */
export function wakeupValue(actorId: string, wakeAtMs: number): Buffer {
  const value = Buffer.allocUnsafe(CHECKSUM_BYTES);
  value.writeUInt32LE(numberSeed(wakeAtMs, actorSeed(actorId)), 0);
  return value;
}

export function wakeupValid(actorId: string, wakeAtMs: number, value: Buffer): boolean {
  return value.length === CHECKSUM_BYTES && value.readUInt32LE(0) === numberSeed(wakeAtMs, actorSeed(actorId));
}

/** The error a damaged record of an actor fails with; status_mapping turns it into DATA_LOSS with reason JOURNAL_CORRUPT. */
export function corruptError(actorId: string, what: string): QmError {
  return new QmError("DATA_LOSS", `journal record of ${actorId} is damaged: ${what}`, { reason: JOURNAL_CORRUPT, actorId });
}

export function isCorruptError(error: unknown): error is QmError {
  return error instanceof QmError && error.code === "DATA_LOSS";
}

// ---- Meta record ------------------------------------------------------------
// Fixed layout, little endian: checksum u32, format u32, then lastSeq,
// snapshotSeq, wakeAtMs (-1: none), auditCount, auditLastSeq as float64, and
// from format 3 on auditOldestAtMs (NaN: not known). A format 2 record is the
// same without the last field; both are read.

export interface ActorMeta {
  readonly lastSeq: number;
  readonly snapshotSeq: number;
  readonly wakeAtMs: number | null;
  readonly auditCount: number;
  readonly auditLastSeq: number;
  /**
   * atMs of the actor's lowest-seq audit record, when known (null: a format 2
   * record, no audit record, or retention stopped by its per-append budget).
   * Retention reads it instead of the audit keyspace: with it known and
   * young, an append that keeps every record reads no audit record at all.
   * Measured over 100,000 SKUs that each hold one audit record, the range
   * read it saves was 4.5% of all samples of a uniform reserve run.
   */
  readonly auditOldestAtMs: number | null;
}

export const NEW_ACTOR: ActorMeta = { lastSeq: 0, snapshotSeq: 0, wakeAtMs: null, auditCount: 0, auditLastSeq: 0, auditOldestAtMs: null };

/** A format 2 meta record. */
const META_V2_BYTES = 8 + 5 * 8;
const META_BYTES = META_V2_BYTES + 8;
/** wakeAtMs is validated >= 0, so a negative value marks "no wake-up" in the fixed layout. */
const META_NO_WAKE = -1;

export function encodeMeta(actorId: string, meta: ActorMeta): Buffer {
  const bytes = Buffer.allocUnsafe(META_BYTES);
  bytes.writeUInt32LE(META_RECORD_FORMAT, 4);
  writeMetaFields(bytes, meta);
  bytes.writeDoubleLE(meta.auditOldestAtMs ?? Number.NaN, META_V2_BYTES);
  return sealInPlace(bytes, actorSeed(actorId));
}

/** A format 2 meta record, as code before format 3 wrote it: for tests that open an old data directory. */
export function encodeMetaV2(actorId: string, meta: Omit<ActorMeta, "auditOldestAtMs">): Buffer {
  const bytes = Buffer.allocUnsafe(META_V2_BYTES);
  bytes.writeUInt32LE(JOURNAL_FORMAT_CHECKSUMS, 4);
  writeMetaFields(bytes, meta);
  return sealInPlace(bytes, actorSeed(actorId));
}

function writeMetaFields(bytes: Buffer, meta: Omit<ActorMeta, "auditOldestAtMs">): void {
  bytes.writeDoubleLE(meta.lastSeq, 8);
  bytes.writeDoubleLE(meta.snapshotSeq, 16);
  bytes.writeDoubleLE(meta.wakeAtMs ?? META_NO_WAKE, 24);
  bytes.writeDoubleLE(meta.auditCount, 32);
  bytes.writeDoubleLE(meta.auditLastSeq, 40);
}

/** Throws DATA_LOSS for a damaged record; undefined bytes is a new actor. */
export function decodeMeta(actorId: string, bytes: Buffer | undefined): ActorMeta {
  if (bytes === undefined) return NEW_ACTOR;
  if ((bytes.length !== META_BYTES && bytes.length !== META_V2_BYTES) || unseal(bytes, actorSeed(actorId)) === undefined) {
    throw corruptError(actorId, `meta record fails its checksum (${bytes.length} bytes)`);
  }
  const format = bytes.readUInt32LE(4);
  if (format !== (bytes.length === META_BYTES ? META_RECORD_FORMAT : JOURNAL_FORMAT_CHECKSUMS)) {
    throw corruptError(actorId, `meta record of ${bytes.length} bytes has format ${format}`);
  }
  const wakeAtMs = bytes.readDoubleLE(24);
  const oldest = bytes.length === META_BYTES ? bytes.readDoubleLE(META_V2_BYTES) : Number.NaN;
  const meta: ActorMeta = {
    lastSeq: bytes.readDoubleLE(8),
    snapshotSeq: bytes.readDoubleLE(16),
    wakeAtMs: wakeAtMs === META_NO_WAKE ? null : wakeAtMs,
    auditCount: bytes.readDoubleLE(32),
    auditLastSeq: bytes.readDoubleLE(40),
    auditOldestAtMs: Number.isNaN(oldest) ? null : oldest,
  };
  if (!(Number.isSafeInteger(meta.lastSeq) && Number.isSafeInteger(meta.snapshotSeq) && meta.snapshotSeq >= 0 && meta.snapshotSeq <= meta.lastSeq)) {
    throw corruptError(actorId, `meta record has snapshot seq ${meta.snapshotSeq} and last seq ${meta.lastSeq}`);
  }
  return meta;
}
