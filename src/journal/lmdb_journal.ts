// The embedded journal: one LMDB environment per data directory.
//
// Durability. A resolved append() is on disk: the environment is opened with
// overlappingSync off (and never noSync), so lmdb-js resolves a transaction
// only after mdb_txn_commit has written the pages, fdatasync'ed the data file
// and written the meta page through LMDB's O_DSYNC descriptor, all under the
// write lock. lmdb-js's default (overlappingSync on) does not resolve
// earlier in lmdb 3.5.6 (its promise waits for the fdatasync and the O_DSYNC
// "flushed" meta write, seen under strace), but releases the write lock at
// commit, before the flush, so that the next transaction can run during it.
// We keep it off: with the benchmarks' 64 callers every commit already
// carries all of them, so there is nothing to overlap (bench/README, "Sixth
// pass (stop 11): overlapping the commit with the previous fsync"), and a
// flush failing after its commit, with later writes already built on it,
// would need the node to stop writing.
// bench/journal_sync_count.ts counts the sync calls per commit under strace.
//
// Group commit is ours, not lmdb-js's: appends wait in a bounded queue, and
// one write at a time takes everything queued (up to JOURNAL_BATCH_APPENDS_MAX)
// into ONE transaction, so N appends cost one fsync. The batch is taken from
// the queue inside the transaction callback, so appends that arrive while the
// write lock is being taken still join it. lmdb-js's own event-turn batching
// is switched off: we never issue loose puts, and with it on lmdb-js leaves an
// internal promise unhandled when a commit fails, which would crash the
// process on the first disk error (seen with lmdb 3.5.6).
//
// A failed commit with an I/O error (EIO, from the fdatasync above or from a
// short write) stops the journal for good: that batch and everything queued
// or appended later fail UNAVAILABLE with reason JOURNAL_FAILED, and
// onFailed tells the node, which turns NOT_SERVING and exits (main.ts, code
// 74) for its supervisor to restart it into recovery. Linux may drop the
// pages of a failed fsync, or mark them clean, so a retried fsync can succeed
// over data that never reached the disk (PostgreSQL's "fsyncgate", 2018).
// LMDB's copy-on-write means the failed transaction's pages are unreferenced
// (its meta page was never written), so a restart finds exactly the last
// synced commit; but whether a later write built on the same file and page
// cache is durable is unknowable in this process, and an EIO usually means a
// failing device. So we stop, as PostgreSQL does (it PANICs), rather than
// stay up read-only: reads served from memory after the failure could show
// state that is not on disk, and a supervisor restart is what re-reads the
// file. lmdb 3.5.6 does not stop by itself: it sets MDB_FATAL_ERROR only
// when the meta page write fails, not on a failed data fdatasync, and the
// next commit is acknowledged (seen under strace, test/fault/fsync_failure).
// ENOSPC, EDQUOT and MDB_MAP_FULL stay DISK_FULL and retryable: they are
// refused before anything is synced. EIO is never taken for a full disk,
// even with little space free.
//
// Atomicity. The batch runs in a child transaction: if anything throws half
// way, LMDB aborts the child, nothing of the batch is written, and every
// append of the batch is rejected with UNAVAILABLE. A per-append failure that
// we can decide before writing (FENCED, a stale snapshot, a repeated audit
// seq) rejects only that append and writes none of it.
//
// Key layout: named sub-databases (openDB), one per keyspace, all in one
// environment so one transaction spans them. We chose them over one database
// with tagged array keys (['e', actorId, seq]) because
//   - every keyspace is its own B-tree, so a range scan or a key count (the
//     compaction check) touches only its own entries and no tag byte is stored
//     in every key;
//   - each keyspace picks its value format: payloads are msgpack bytes encoded
//     by us at append() time, the meta record is a fixed 48-byte layout, the
//     wake-up index has empty values;
//   - keys stay lmdb's ordered-binary arrays, so (actorId, seq) and
//     (wakeAtMs, actorId) sort the way the scans need.
// The keyspaces (every value starts with a CRC-32 of its body and key, see
// record_codec.ts; this is journal format 4, which reads formats 2 and 3):
//   meta      actorId            -> ActorMeta (lastSeq, snapshotSeq, wakeAtMs, audit count/last seq/oldest atMs)
//   events    [actorId, seq]     -> packed event; only seq > snapshotSeq are kept
//   snapshots actorId            -> packed state of the snapshot at meta.snapshotSeq
//   wakeups   [wakeAtMs, actorId] -> checksum only; exactly one entry per actor with a wake-up time
//   audit     [actorId, seq]     -> float64 atMs (big endian) followed by the packed data
//   info      "format"           -> u32 journal format; "identity" -> the data directory's identity (identity.ts)
//
// Integrity. A read that finds a damaged record, or that LMDB fails on (a
// zeroed page: MDB_CORRUPTED), fails only its actor, with DATA_LOSS and
// reason JOURNAL_CORRUPT; lmdb-js's shared read transaction is left unusable
// by a failed read (every later read gets MDB_BAD_TXN), so it is reset first.
// Range reads (the timer's wake-up scan, audit reads and retention) never
// step an LMDB cursor onto a page we have not checked: a cursor stepping onto
// a zeroed leaf aborts the process (lmdb_pages.ts). The wake-up scan reads
// the pages itself and steps over a damaged one; the audit reads check the
// pages first and fail only their actor.
// Before LMDB maps the file, lmdb_file_check.ts refuses a structurally
// damaged one (truncated, bad meta pages), which would otherwise kill the
// process with SIGBUS or SIGSEGV.
//
// Actor ids are restricted to `kind/key` (or `kind/tenant/key`) with ID_PATTERN characters. Besides
// rejecting unknown input, this keeps every character above the separator
// byte of lmdb's array keys, so the range [actorId, 0]..[actorId, MAX] of one
// actor can never contain a key of another actor whose id extends it.

import type { SpanContext } from "@opentelemetry/api";
import { appendSpanContext, traceCommit } from "../observability/journal_tracing";
import { existsSync } from "node:fs";
import { mkdir, statfs } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import * as lmdb from "lmdb";
import { open, type Database, type RootDatabase } from "lmdb";
import { pack, Unpackr, unpack } from "msgpackr";
import type { Clock } from "../clock";
import type { JournalObserver } from "../observability/observer";
import { JOURNAL_FAILED, QmError, assert } from "../errors";
import {
  DAMAGED_ACTORS_LOGGED_MAX,
  ID_LENGTH_MAX,
  TENANT_LENGTH_MAX,
  JOURNAL_APPEND_BYTES_MAX,
  JOURNAL_BATCH_APPENDS_MAX,
  JOURNAL_COMMIT_CAUSE_WAIT_MS,
  JOURNAL_DISK_FREE_BYTES_MIN,
  JOURNAL_QUEUE_APPENDS_MAX,
  PAGE_SIZE_MAX,
  WAKEUPS_PER_TICK_MAX,
  WAKEUPS_SCAN_DEPTH_MAX,
} from "../limits";
import type {
  ActorId,
  AppendRequest,
  AuditRecord,
  Journal,
  JournalStats,
  Recovered,
  Snapshot,
} from "./journal";
import { checkLmdbFile } from "./lmdb_file_check";
import { LmdbPageReader, type PageDamage } from "./lmdb_pages";
import {
  type ActorMeta,
  CHECKSUM_BYTES,
  JOURNAL_CORRUPT,
  JOURNAL_FORMAT,
  JOURNAL_FORMATS_READ,
  actorSeed,
  corruptError,
  decodeMeta,
  encodeMeta,
  isCorruptError,
  seal,
  sealInPlace,
  seqSeed,
  unseal,
  wakeupValid,
  wakeupValue,
} from "./record_codec";

/**
 * lmdb-js's key codec (ordered-binary), which it exports but does not
 * declare: our page walk (lmdb_pages.ts) compares and decodes keys exactly as
 * the databases store them.
 */
const { keyValueToBuffer, bufferToKeyValue } = lmdb as unknown as {
  readonly keyValueToBuffer: (key: unknown) => Buffer;
  readonly bufferToKeyValue: (bytes: Buffer) => unknown;
};

/** `kind/key` or `kind/tenant/key` (src/security/tenancy.ts): the kind is short; the key is an id of at most ID_LENGTH_MAX. */
const ACTOR_ID_LENGTH_MAX = 2 * ID_LENGTH_MAX + TENANT_LENGTH_MAX + 2;
const ACTOR_ID_PATTERN = /^[A-Za-z0-9._:-]+\/(?:[A-Za-z0-9._:-]+\/)?[A-Za-z0-9._:-]+$/;
/**
 * Audit records one append may delete beyond those it adds. Adding the
 * append's own records keeps the per-actor count from ever growing past
 * maxPerActor; the extra allowance drains a backlog (expired records, or a
 * lowered maxPerActor) in bounded steps.
 */
const AUDIT_PRUNE_PER_APPEND_MAX = 256;
/** readAudit serves pages of at most PAGE_SIZE_MAX; callers ask for one more to learn whether another page follows. */
const READ_AUDIT_LIMIT_MAX = PAGE_SIZE_MAX + 1;
/** Bytes of the audit value header: the record's atMs, so retention reads it without decoding the data. */
const AUDIT_HEADER_BYTES = 8;
/** Sub-databases we open, plus room for a later one without reopening the environment differently. */
const SUB_DATABASES_MAX = 8;

/** The data file inside the environment directory. */
export const LMDB_DATA_FILE = "data.mdb";
/** Keys of the info keyspace. */
const INFO_FORMAT = "format";
const INFO_IDENTITY = "identity";

export interface AuditRetention {
  /** Records older than this (by their atMs, against the clock) are dropped. */
  readonly maxAgeMs: number;
  /** At most this many records are kept per actor, oldest dropped first. */
  readonly maxPerActor: number;
}

export interface JournalLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface JournalReadStats {
  readonly recordsRead: number;
}

/** Counters of the journal's integrity checks, for metrics. */
export interface JournalIntegrityStats {
  /** Reads that failed on a damaged record or page (each failed read counts). */
  readonly corruptReads: number;
  /** Distinct actors found damaged since start (counted up to DAMAGED_ACTORS_LOGGED_MAX, then corruptReads goes on). */
  readonly damagedActors: number;
  /** Writes refused because the disk was full. */
  readonly diskFullWrites: number;
}

export interface LmdbJournalOptions {
  /** Directory of the LMDB environment; created if missing. */
  readonly path: string;
  readonly auditRetention: AuditRetention;
  readonly clock: Clock;
  readonly logger?: JournalLogger;
  /** Told of each durable write's duration and of every fencing conflict. */
  readonly observer?: JournalObserver;
  /**
   * Open without writing anything: no environment is created, no format
   * record written, appends fail. For scrub and other offline checks.
   */
  readonly readOnly?: boolean;
  /**
   * Called once when a commit fails with an I/O error: the journal accepts no
   * more appends, and the node must stop acknowledging writes and restart
   * (see the top of the file).
   */
  readonly onFailed?: (error: QmError) => void;
}

interface EncodedAudit {
  readonly seq: number;
  readonly atMs: number;
  /** The checksum, AUDIT_HEADER_BYTES of atMs, then the packed data. */
  readonly value: Buffer;
}

/** An append with its values already encoded, so later mutation by the caller cannot change what is written. */
interface PendingAppend {
  readonly actorId: ActorId;
  readonly expectedLastSeq: number;
  readonly events: readonly Buffer[];
  readonly snapshot: { readonly seq: number; readonly state: Buffer } | undefined;
  readonly wakeAtMs: number | null | undefined;
  readonly audit: readonly EncodedAudit[];
  /** Encoded size, for the commit span. */
  readonly bytes: number;
  /** The journal.append span this append was issued under, linked from its commit span; undefined when untraced. */
  readonly spanContext: SpanContext | undefined;
  /** clock.monotonicMs() at append(), for the queue wait in stats(). */
  readonly queuedMs: number;
  readonly resolve: () => void;
  readonly reject: (error: QmError) => void;
}

export type EventKey = [ActorId, number];
export type WakeKey = [number, ActorId];
export type AuditKey = [ActorId, number];

export interface Stores {
  readonly meta: Database<Buffer, ActorId>;
  readonly events: Database<Buffer, EventKey>;
  readonly snapshots: Database<Buffer, ActorId>;
  readonly wakeups: Database<Buffer, WakeKey>;
  readonly audit: Database<Buffer, AuditKey>;
  readonly info: Database<Buffer, string>;
}

type State = "new" | "open" | "closing" | "closed";

export class LmdbJournal implements Journal {
  private readonly path: string;
  private readonly retention: AuditRetention;
  private readonly clock: Clock;
  private readonly logger: JournalLogger | undefined;
  private readonly observer: JournalObserver | undefined;
  private readonly readOnly: boolean;
  private readonly onFailed: ((error: QmError) => void) | undefined;

  /**
   * One queue, taken from the front one batch per write transaction, and the
   * next transaction begins only after the last one is durable (writeLoop);
   * a batch retried after damage goes back to the front, in order.
   */
  readonly durableInIssueOrder = true;
  private state: State = "new";
  private root: RootDatabase<Buffer, string> | undefined;
  private stores: Stores | undefined;
  /** Our own page walk of data.mdb, for the range reads (lmdb_pages.ts says why). */
  private pages: LmdbPageReader | undefined;

  /** Bounded by JOURNAL_QUEUE_APPENDS_MAX. */
  private queue: PendingAppend[] = [];
  /** The write loop, while one runs; at most one at a time. */
  private writing: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  /** False while the stored format record says format 2: the first write stamps the current one. */
  private formatCurrent = true;

  private commits = 0;
  private appends = 0;
  private eventsWritten = 0;
  /** Summed over appends: from append() until a write transaction took them. */
  private queueWaitMs = 0;
  /** Records the read methods returned or stepped over; see readStats(). */
  private recordsRead = 0;
  private corruptReads = 0;
  private diskFullWrites = 0;
  /** Actors already logged as damaged; bounded by DAMAGED_ACTORS_LOGGED_MAX. */
  private readonly damagedLogged = new Set<string>();
  /** Set while writes fail on a full disk, so it is logged once per episode. */
  private diskFull = false;
  /** Set for good when a commit failed with an I/O error; every later append fails with it (failJournal). */
  private failure: QmError | null = null;

  constructor(options: LmdbJournalOptions) {
    const { maxAgeMs, maxPerActor } = options.auditRetention;
    if (!(Number.isFinite(maxAgeMs) && maxAgeMs >= 0) || !(Number.isSafeInteger(maxPerActor) && maxPerActor >= 0)) {
      throw new QmError("INVALID_ARGUMENT", "auditRetention needs maxAgeMs >= 0 and an integer maxPerActor >= 0");
    }
    this.path = options.path;
    this.retention = { maxAgeMs, maxPerActor };
    this.clock = options.clock;
    this.logger = options.logger;
    this.observer = options.observer;
    this.readOnly = options.readOnly === true;
    this.onFailed = options.onFailed;
  }

  async open(): Promise<void> {
    if (this.state === "open") return;
    if (this.state !== "new") throw new QmError("FAILED_PRECONDITION", `journal ${this.path} was closed; open a new one`);
    const file = join(this.path, LMDB_DATA_FILE);
    if (existsSync(file)) {
      const check = await checkLmdbFile(file);
      if (!check.ok) {
        throw new QmError("DATA_LOSS", `journal file ${file} is damaged: ${check.problem}`, { reason: JOURNAL_CORRUPT, file });
      }
    } else if (this.readOnly) {
      throw new QmError("NOT_FOUND", `no journal at ${file}`, { file });
    }
    try {
      const root = open<Buffer, string>({
        path: this.path,
        maxDbs: SUB_DATABASES_MAX,
        // See the top of the file: a resolved write must already be flushed.
        overlappingSync: false,
        noSync: false,
        // We batch ourselves, inside one transaction callback.
        eventTurnBatching: false,
        encoding: "binary",
        readOnly: this.readOnly,
      });
      this.root = root;
      const db = <K extends ActorId | EventKey | WakeKey | AuditKey>(name: string): Database<Buffer, K> =>
        root.openDB<Buffer, K>(name, { encoding: "binary" });
      this.stores = {
        meta: db<ActorId>("meta"),
        events: db<EventKey>("events"),
        snapshots: db<ActorId>("snapshots"),
        wakeups: db<WakeKey>("wakeups"),
        audit: db<AuditKey>("audit"),
        info: db<string>("info"),
      };
    } catch (error) {
      await this.root?.close();
      this.root = undefined;
      this.stores = undefined;
      if (isLmdbCorruption(error)) {
        throw new QmError("DATA_LOSS", `journal file ${file} is damaged: ${messageOf(error)}`, { reason: JOURNAL_CORRUPT, file });
      }
      throw new QmError("UNAVAILABLE", `cannot open journal at ${this.path}: ${messageOf(error)}`);
    }
    try {
      await this.checkFormat();
    } catch (error) {
      await this.root.close();
      this.root = undefined;
      this.stores = undefined;
      if (error instanceof QmError) throw error;
      // The keyspace directory itself is unreadable: nothing can be served from this file.
      throw new QmError("DATA_LOSS", `journal file ${file} is damaged: ${messageOf(error)}`, { reason: JOURNAL_CORRUPT, file });
    }
    const pageSize = (this.root.getStats() as { readonly pageSize?: unknown }).pageSize;
    assert(typeof pageSize === "number" && pageSize > 0 && (pageSize & (pageSize - 1)) === 0, `LMDB reports page size ${String(pageSize)}`);
    this.pages = new LmdbPageReader(file, pageSize);
    this.state = "open";
  }

  /**
   * Format 2 added record checksums. An empty journal is stamped with the
   * current format; a journal holding records without a format record was
   * written by format 1 and is refused: there are no production data
   * directories of it, and reading it would mean serving records without
   * checksums. A format 2 or 3 journal is read as it is (record_codec.ts),
   * and its first write stamps the current format in the same transaction,
   * so that code reading older formats only refuses it from then on instead
   * of taking the new meta records for damaged ones or skipping event kinds
   * it does not know. Not at open: a node that opens the journal and stops (the
   * identity check refuses it, say) leaves it readable by the release before.
   */
  private async checkFormat(): Promise<void> {
    const { info, meta } = this.openStores();
    const stored = info.get(INFO_FORMAT);
    this.recordsRead++;
    if (stored === undefined) {
      const empty = meta.getKeysCount({ limit: 1 }) === 0;
      if (!empty) {
        throw new QmError(
          "FAILED_PRECONDITION",
          `journal at ${this.path} has format 1 (no record checksums); this version reads formats ${formatList()} only: start from an empty data directory`,
          { path: this.path },
        );
      }
      await this.stampFormat();
      return;
    }
    const body = unseal(stored, actorSeed(INFO_FORMAT));
    if (body === undefined || body.length !== 4) {
      throw new QmError("DATA_LOSS", `journal at ${this.path}: its format record is damaged`, { reason: JOURNAL_CORRUPT, path: this.path });
    }
    const format = body.readUInt32LE(0);
    if (!JOURNAL_FORMATS_READ.includes(format)) {
      throw new QmError("FAILED_PRECONDITION", `journal at ${this.path} has format ${format}; this version reads formats ${formatList()} only`, {
        path: this.path,
      });
    }
    this.formatCurrent = format === JOURNAL_FORMAT;
  }

  /** Records the current format (one synced transaction); a read-only journal writes nothing. */
  private async stampFormat(): Promise<void> {
    if (this.readOnly) return;
    const { info } = this.openStores();
    await this.root?.transaction(() => info.putSync(INFO_FORMAT, formatRecord()));
  }

  /** The identity record stored in the journal (identity.ts owns its content), or undefined if none was stored. */
  storedIdentity(): string | undefined {
    const stored = this.openStores().info.get(INFO_IDENTITY);
    this.recordsRead++;
    if (stored === undefined) return undefined;
    const body = unseal(stored, actorSeed(INFO_IDENTITY));
    if (body === undefined) {
      throw new QmError("DATA_LOSS", `journal at ${this.path}: its identity record is damaged`, { reason: JOURNAL_CORRUPT, path: this.path });
    }
    return body.toString("utf8");
  }

  /** Stores the identity record durably (one synced transaction). */
  async storeIdentity(identity: string): Promise<void> {
    const { info } = this.openStores();
    if (this.readOnly || this.root === undefined) throw new QmError("FAILED_PRECONDITION", `journal ${this.path} is read-only`);
    const value = seal(Buffer.from(identity, "utf8"), actorSeed(INFO_IDENTITY));
    await this.root.transaction(() => info.putSync(INFO_IDENTITY, value));
  }

  close(): Promise<void> {
    if (this.closing === null) this.closing = this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    this.state = "closing";
    // Appends accepted before close() are still written and answered.
    while (this.writing !== null) await this.writing;
    const root = this.root;
    this.root = undefined;
    this.stores = undefined;
    this.state = "closed";
    this.pages?.close();
    this.pages = undefined;
    if (root !== undefined) await root.close();
  }

  /**
   * Writes a consistent copy of the environment (data.mdb) into targetDir,
   * while appends go on: LMDB copies from one read transaction, so the copy
   * holds exactly the writes committed before it began. Online backup uses it.
   */
  async copyTo(targetDir: string): Promise<void> {
    const root = this.root;
    if (this.state !== "open" || root === undefined) throw new QmError("UNAVAILABLE", `journal ${this.path} is not open`);
    await mkdir(targetDir, { recursive: true });
    // Not compacted: the copy is the file as it is, page for page.
    await root.backup(targetDir, false);
  }

  /**
   * commits: writes that stored at least one append (a batch of only rejected
   * appends writes nothing). appends: appends carried by committed writes,
   * FENCED ones included; appends of a failed write are not counted.
   * queueWaitSeconds: every append taken by a write, failed ones included.
   */
  stats(): JournalStats {
    return { commits: this.commits, appends: this.appends, events: this.eventsWritten, queueWaitSeconds: this.queueWaitMs / 1000 };
  }

  /**
   * Records read since open (meta, snapshot and event records of recoveries,
   * wake-up entries scanned, audit records scanned, format and identity). Lets
   * a test assert that start-up reads a fixed number of records however many
   * actors the journal holds: recovery is lazy.
   */
  readStats(): JournalReadStats {
    return { recordsRead: this.recordsRead };
  }

  integrityStats(): JournalIntegrityStats {
    return { corruptReads: this.corruptReads, damagedActors: this.damagedLogged.size, diskFullWrites: this.diskFullWrites };
  }

  // ---- Reads ----------------------------------------------------------------
  // Each read method runs synchronously to its end against lmdb-js's shared
  // read transaction, which lmdb-js renews only when it processes a commit
  // (a callback or microtask, never in the middle of synchronous code), so
  // one call sees one consistent snapshot.

  async recover(actorId: ActorId): Promise<Recovered> {
    checkActorId(actorId);
    const stores = this.openStores();
    const recovered = this.guardRead(actorId, () => recoverActor(stores, actorId));
    this.recordsRead += 1 + (recovered.snapshot === undefined ? 0 : 1) + recovered.events.length + (recovered.wakeAtMs === null ? 0 : 1);
    return recovered;
  }

  /** The keyspaces, for scrub.ts's offline walk; not for serving. */
  keyspaces(): Stores {
    return this.openStores();
  }

  async dueWakeups(nowMs: number, limit: number, offset = 0): Promise<ActorId[]> {
    if (!Number.isFinite(nowMs)) throw new QmError("INVALID_ARGUMENT", "nowMs must be a finite number");
    checkLimit("limit", limit, WAKEUPS_PER_TICK_MAX);
    if (!(Number.isSafeInteger(offset) && offset >= 0 && offset <= WAKEUPS_SCAN_DEPTH_MAX)) {
      throw new QmError("INVALID_ARGUMENT", `offset must be an integer from 0 to ${WAKEUPS_SCAN_DEPTH_MAX}`);
    }
    const pages = this.openPages();
    // Read by our own page walk, not an LMDB cursor: a cursor stepping onto a
    // damaged leaf aborts the process, and one damaged page must stop only
    // the timers of the actors whose entries were on it. The walk steps over
    // a damaged page (logged once, counted) and goes on with the rest. A
    // damaged entry is left out (its actor fails DATA_LOSS when it is
    // activated for any other reason).
    return this.guardRead("wakeups", () => {
      const root = pages.root("wakeups");
      if (root === null) return [];
      if (typeof root !== "number") {
        this.noteDamagedPage("wakeups", root);
        return [];
      }
      const due: ActorId[] = [];
      // From the earliest entry, stopping at the first one not yet due: it
      // reads at most limit + 1 entries however many actors wait.
      for (const { key, value } of pages.entries(root, offset, (damage) => this.noteDamagedPage("wakeups", damage))) {
        this.recordsRead++;
        const decoded = decodeWakeKey(key);
        if (decoded === undefined) {
          this.noteDamage("wakeups", `a wake-up key cannot be decoded: ${key.toString("hex")}`);
          continue;
        }
        const [wakeAtMs, actorId] = decoded;
        if (wakeAtMs > nowMs || due.length === limit) break;
        if (value !== undefined && wakeupValid(actorId, wakeAtMs, value)) due.push(actorId);
        else this.noteDamage(actorId, "wake-up entry fails its checksum");
      }
      return due;
    });
  }

  async readAudit(actorId: ActorId, afterSeq: number, limit: number): Promise<AuditRecord[]> {
    checkActorId(actorId);
    if (!(Number.isSafeInteger(afterSeq) && afterSeq >= 0)) {
      throw new QmError("INVALID_ARGUMENT", "afterSeq must be an integer >= 0");
    }
    checkLimit("limit", limit, READ_AUDIT_LIMIT_MAX);
    const { audit } = this.openStores();
    // Retention runs on append; an idle actor may still hold expired records,
    // so they are skipped here too. The scan is bounded by what retention
    // keeps per actor (maxPerActor plus a drained-in-steps backlog).
    const cutoffMs = this.clock.nowMs() - this.retention.maxAgeMs;
    const end: AuditKey = [actorId, Number.MAX_SAFE_INTEGER];
    return this.guardRead(actorId, () => {
      const seed = actorSeed(actorId);
      const page: AuditRecord[] = [];
      // In chunks, each cursor pass preceded by a check of the pages it will
      // visit (lmdb_pages.ts): a cursor stepping onto a damaged leaf would
      // abort the process.
      let after: AuditKey = [actorId, afterSeq];
      for (;;) {
        this.checkRangePages("audit", actorId, after, end, READ_AUDIT_LIMIT_MAX);
        let read = 0;
        for (const { key, value } of released(audit.getRange({ start: after, exclusiveStart: true, end, inclusiveEnd: true, limit: READ_AUDIT_LIMIT_MAX }))) {
          this.recordsRead++;
          read++;
          after = key;
          const body = unseal(value, seqSeed(seed, key[1]));
          if (body === undefined || body.length < AUDIT_HEADER_BYTES) throw corruptError(actorId, `audit record ${key[1]} fails its checksum`);
          const atMs = body.readDoubleBE(0);
          if (atMs < cutoffMs) continue;
          page.push({ seq: key[1], atMs, data: decodeValue(actorId, body.subarray(AUDIT_HEADER_BYTES)) });
          if (page.length === limit) return page;
        }
        if (read < READ_AUDIT_LIMIT_MAX) return page;
      }
    });
  }

  /**
   * Throws DATA_LOSS for `actorId` if a page a cursor read of [start, end]
   * (at most entriesMax entries) would visit is damaged; see lmdb_pages.ts.
   */
  private checkRangePages(keyspace: "audit", actorId: ActorId, start: AuditKey, end: AuditKey, entriesMax: number): void {
    const pages = this.openPages();
    const root = pages.root(keyspace);
    if (root === null) return;
    const damage = typeof root === "number" ? pages.checkRange(root, keyValueToBuffer(start), keyValueToBuffer(end), entriesMax) : root;
    if (damage !== undefined) throw corruptError(actorId, `${keyspace} page ${damage.page} is damaged (${damage.problem})`);
  }

  /** A damaged page of a keyspace that names no actor: logged once per page, counted. */
  private noteDamagedPage(keyspace: string, damage: PageDamage): void {
    const subject = `${keyspace} page ${damage.page}`;
    if (!this.damagedLogged.has(subject) && this.damagedLogged.size < DAMAGED_ACTORS_LOGGED_MAX) {
      this.logger?.error(
        { keyspace, page: damage.page, path: this.path, detail: damage.problem, reason: JOURNAL_CORRUPT },
        `journal ${keyspace} keyspace damaged: the timers of the actors whose wake-ups were on this page are lost (the actors answer DATA_LOSS), every other timer goes on; stop the node, run qmctl scrub and restore from a backup`,
      );
    }
    this.noteDamage(subject, damage.problem, false);
  }

  /**
   * Runs a read; a damaged record fails it with DATA_LOSS for `subject` only.
   * LMDB errors (MDB_CORRUPTED, MDB_PAGE_NOTFOUND...) leave lmdb-js's shared
   * read transaction unusable, so it is reset before the error is returned,
   * and every other actor reads on.
   */
  private guardRead<T>(subject: string, read: () => T): T {
    try {
      return read();
    } catch (error) {
      if (isCorruptError(error)) {
        this.noteDamage(subject, error.message);
        throw error;
      }
      if (error instanceof QmError) throw error;
      this.resetReadTransaction();
      const damage = corruptError(subject, `LMDB read failed: ${messageOf(error)}`);
      this.noteDamage(subject, damage.message);
      throw damage;
    }
  }

  /** After a failed read: lmdb-js's shared read transaction is unusable until reset. */
  resetReadTransaction(): void {
    try {
      this.root?.resetReadTxn();
    } catch (error) {
      // lmdb-js throws if the transaction was already reset; the next read renews it either way.
      this.logger?.warn({ err: error, path: this.path }, "journal read transaction reset failed");
    }
  }

  /** Counts a damaged record and logs it once per actor (up to DAMAGED_ACTORS_LOGGED_MAX actors). */
  private noteDamage(subject: string, what: string, log = true): void {
    this.corruptReads++;
    if (this.damagedLogged.has(subject)) return;
    if (this.damagedLogged.size >= DAMAGED_ACTORS_LOGGED_MAX) {
      if (this.damagedLogged.size === DAMAGED_ACTORS_LOGGED_MAX) {
        this.logger?.error({ path: this.path, actors: DAMAGED_ACTORS_LOGGED_MAX }, "journal: more damaged actors than are logged one by one; see qm_journal_corrupt_reads_total and run qmctl scrub");
      }
      return;
    }
    this.damagedLogged.add(subject);
    if (log) this.logger?.error({ actorId: subject, path: this.path, detail: what, reason: JOURNAL_CORRUPT }, "journal record damaged: the actor answers DATA_LOSS until it is restored");
  }

  // ---- Appends ----------------------------------------------------------------

  append(request: AppendRequest): Promise<void> {
    if (this.state !== "open") {
      return Promise.reject(new QmError("UNAVAILABLE", `journal ${this.path} is ${this.state === "new" ? "not open" : "closed"}`));
    }
    if (this.failure !== null) return Promise.reject(this.failedFor(request.actorId));
    if (this.queue.length >= JOURNAL_QUEUE_APPENDS_MAX) {
      return Promise.reject(new QmError("OVERLOADED", `journal queue is full (${JOURNAL_QUEUE_APPENDS_MAX} appends waiting)`));
    }
    let encoded: Omit<PendingAppend, "resolve" | "reject" | "spanContext" | "queuedMs">;
    try {
      encoded = encodeAppend(request);
    } catch (error) {
      return Promise.reject(error);
    }
    const spanContext = appendSpanContext();
    const queuedMs = this.clock.monotonicMs();
    return new Promise<void>((resolve, reject) => {
      // Spelled out, not spread: a spread of the encoded append into the
      // pending one measured 4.4% of all samples of a ReserveBatch across
      // 100,000 SKUs (4,000 appends per commit).
      const { actorId, expectedLastSeq, events, snapshot, wakeAtMs, audit, bytes } = encoded;
      this.queue.push({ actorId, expectedLastSeq, events, snapshot, wakeAtMs, audit, bytes, spanContext, queuedMs, resolve, reject });
      if (this.writing === null) this.writing = this.writeLoop();
    });
  }

  /** Writes batches until the queue is empty. Never rejects: every outcome goes to the appends. */
  private async writeLoop(): Promise<void> {
    try {
      while (this.queue.length > 0) await this.writeBatch();
    } catch (error) {
      // Only a broken invariant gets here (writeBatch answers every append it
      // took); fail what is queued rather than leave callers waiting forever.
      await this.failBatch(this.queue.splice(0, this.queue.length), error);
    } finally {
      this.writing = null;
    }
  }

  private async writeBatch(): Promise<void> {
    const root = this.root;
    assert(root !== undefined, "the journal is open while appends are queued");
    // Filled inside the transaction callback; a holder object because the
    // catch below must know whether the callback took a batch.
    const taken: { batch?: PendingAppend[] } = {};
    let outcomes: (QmError | null)[];
    const beganMs = this.clock.monotonicMs();
    try {
      const stores = this.openStores();
      outcomes = await root.childTransaction(() => {
        const batch = this.queue.splice(0, JOURNAL_BATCH_APPENDS_MAX);
        taken.batch = batch;
        const takenMs = this.clock.monotonicMs();
        for (const pending of batch) this.queueWaitMs += takenMs - pending.queuedMs;
        if (!this.formatCurrent) stores.info.putSync(INFO_FORMAT, formatRecord());
        return batch.map((pending) => this.applyAppend(stores, pending));
      });
    } catch (error) {
      // The transaction failed before or after our callback ran; either way
      // nothing of this batch is on disk. If the callback never ran, the
      // appends are still queued: fail the next batch's worth so the loop
      // always makes progress instead of retrying a broken disk forever.
      if (taken.batch !== undefined && isLmdbCorruption(error)) {
        this.isolateDamage(taken.batch, error);
        return;
      }
      await this.failBatch(taken.batch ?? this.queue.splice(0, JOURNAL_BATCH_APPENDS_MAX), error);
      return;
    }
    const batch = taken.batch;
    if (batch === undefined) {
      // lmdb-js resolved without running the callback: the appends are still
      // queued, but fail them rather than spin on empty transactions.
      await this.failBatch(this.queue.splice(0, JOURNAL_BATCH_APPENDS_MAX), new Error("transaction ended without running the batch"));
      return;
    }
    // The transaction that carried the batch also carried the format record.
    this.formatCurrent = true;
    this.settleBatch(batch, outcomes, (this.clock.monotonicMs() - beganMs) / 1000);
  }

  /**
   * A damaged page under one actor's keys poisons the whole write
   * transaction. Each append of the failed batch is probed with exact
   * lookups of the keys it writes (a lookup descends from the root and checks
   * every page's type, so it finds the damaged page without writing); the
   * appends that reach damage fail with DATA_LOSS, the others go back to the
   * front of the queue for the next write. If no append reaches the damage
   * (a damaged free-page list, say) the batch fails as UNAVAILABLE rather
   * than loop.
   */
  private isolateDamage(batch: readonly PendingAppend[], error: unknown): void {
    const stores = this.openStores();
    const healthy: PendingAppend[] = [];
    for (const pending of batch) {
      try {
        this.guardRead(pending.actorId, () => probeAppend(stores, pending));
        healthy.push(pending);
      } catch (damage) {
        pending.reject(damage instanceof QmError ? damage : corruptError(pending.actorId, messageOf(damage)));
      }
    }
    if (healthy.length === batch.length) {
      this.logger?.error({ err: error, path: this.path }, "journal write failed on a damaged page outside every actor's records; run qmctl scrub");
      const message = `journal write failed on a damaged page: ${messageOf(error)}`;
      for (const pending of batch) pending.reject(new QmError("UNAVAILABLE", message, { reason: JOURNAL_CORRUPT, actorId: pending.actorId }));
      return;
    }
    this.queue.unshift(...healthy);
  }

  private settleBatch(batch: readonly PendingAppend[], outcomes: readonly (QmError | null)[], seconds: number): void {
    assert(outcomes.length === batch.length, "one outcome per append of the batch");
    let applied = 0;
    for (let i = 0; i < batch.length; i++) {
      const pending = batch[i]!;
      const outcome = outcomes[i];
      if (outcome === null) {
        applied++;
        this.eventsWritten += pending.events.length;
        pending.resolve();
      } else {
        if (outcome?.code === "FENCED") this.observer?.fencingConflict(pending.actorId, outcome.message);
        pending.reject(outcome ?? new QmError("INTERNAL", "append outcome missing"));
      }
    }
    const traceId = traceCommit("lmdb", batch, applied, seconds);
    // A batch of rejected appends writes nothing, so it is no durable write.
    if (applied > 0) {
      this.commits++;
      this.observer?.journalCommit(seconds, applied, traceId);
    }
    this.appends += batch.length;
    if (this.diskFull) {
      this.diskFull = false;
      this.logger?.info({ path: this.path }, "journal writes succeed again: the disk has room");
    }
  }

  private async failBatch(batch: readonly PendingAppend[], error: unknown): Promise<void> {
    // lmdb-js rejects with "Commit failed (see commitError for details)" and
    // rejects error.commitError with the errno; that second promise must be
    // handled or the process dies of an unhandled rejection, and it is the
    // only place that says whether the disk is full.
    const cause = await commitCauseOf(error);
    // Before the free-space check: an EIO on a nearly full disk may be a
    // failed fdatasync, which must never be retried as a full disk.
    if (this.failure !== null || isIoError(cause) || isIoError(error)) {
      this.failJournal(batch, cause);
      return;
    }
    if (isDiskFull(cause) || isDiskFull(error) || (await this.diskHasNoRoom())) {
      this.diskFullWrites += batch.length;
      if (!this.diskFull) {
        this.diskFull = true;
        this.logger?.error(
          { err: cause ?? error, path: this.path },
          `journal write failed: the disk holding ${this.path} is full; writes fail with RESOURCE_EXHAUSTED until space is freed, reads go on`,
        );
      }
      const message = `journal write failed: no space left on the disk holding ${this.path}`;
      for (const pending of batch) pending.reject(new QmError("DISK_FULL", message, { reason: "DISK_FULL", actorId: pending.actorId }));
      return;
    }
    this.logger?.warn({ err: error, cause, path: this.path, appends: batch.length }, "journal write failed; its appends are rejected");
    const detail = cause === undefined ? messageOf(error) : `${messageOf(error)}: ${messageOf(cause)}`;
    const message = `journal write failed: ${detail}`;
    for (const pending of batch) pending.reject(new QmError("UNAVAILABLE", message, { actorId: pending.actorId }));
  }

  /**
   * Stops the journal after a commit failed with an I/O error (see the top of
   * the file): the batch, everything queued and every later append fail with
   * UNAVAILABLE/JOURNAL_FAILED, logged once, and the node is told once.
   */
  private failJournal(batch: readonly PendingAppend[], cause: unknown): void {
    const first = this.failure === null;
    if (first) {
      this.failure = new QmError(
        "UNAVAILABLE",
        `journal write failed with an I/O error (${messageOf(cause)}) at ${this.path}: nothing of it was acknowledged, and this node acknowledges no more writes until it has restarted`,
        { reason: JOURNAL_FAILED, path: this.path },
      );
    }
    const queued = this.queue.splice(0, this.queue.length);
    for (const pending of batch) pending.reject(this.failedFor(pending.actorId));
    for (const pending of queued) pending.reject(this.failedFor(pending.actorId));
    if (!first) return;
    this.logger?.error(
      { err: cause, path: this.path, reason: JOURNAL_FAILED, appends: batch.length + queued.length },
      `journal commit failed with an I/O error at ${this.path}: its appends were not acknowledged and the node stops writing and exits (code 74) to recover from what is on disk; check the disk (dmesg, SMART), run qmctl scrub --data-dir on the data directory, then start the node again`,
    );
    this.onFailed?.(this.failure as QmError);
  }

  /** The journal's failure, as the error of one append. */
  private failedFor(actorId: ActorId): QmError {
    const failure = this.failure as QmError;
    return new QmError("UNAVAILABLE", failure.message, { ...failure.metadata, actorId });
  }

  /** True once a commit failed with an I/O error: the journal accepts no more appends. */
  get failed(): boolean {
    return this.failure !== null;
  }

  /**
   * After a failed write that is neither ENOSPC nor EIO, the free space
   * itself is asked: an LMDB error on a full disk need not carry ENOSPC.
   * An EIO never gets here (failJournal): on a full disk it may be LMDB's
   * code for a short write, which would be safe to retry, but it may as well
   * be a failed fdatasync, which is not, and the errno cannot tell them apart.
   * Only the failure path pays for it.
   */
  private async diskHasNoRoom(): Promise<boolean> {
    try {
      const fs = await statfs(this.path);
      return fs.bavail * fs.bsize < JOURNAL_DISK_FREE_BYTES_MIN;
    } catch {
      return false;
    }
  }

  /**
   * Runs inside the write transaction. Returns null when the append was
   * written, or the error that rejects it alone (then nothing of it is
   * written). Throws only for a failure of the transaction itself.
   */
  private applyAppend(stores: Stores, pending: PendingAppend): QmError | null {
    const { actorId } = pending;
    let meta: ActorMeta;
    try {
      // Reads inside the write transaction see this batch's earlier writes,
      // so two appends of one actor in one batch chain. getBinaryFast, not
      // get: no Buffer per append (1.4% of a Zipf reserve's samples was the
      // read and its copy); the bytes are valid only until the next LMDB call,
      // and decodeMeta turns them into numbers at once (see recoverActor).
      meta = decodeMeta(actorId, exact(stores.meta.getBinaryFast(actorId)));
    } catch (error) {
      if (!(error instanceof QmError)) throw error; // an LMDB failure poisons the transaction: let it abort
      if (isCorruptError(error)) this.noteDamage(actorId, error.message);
      return error;
    }
    if (meta.lastSeq !== pending.expectedLastSeq) {
      return new QmError("FENCED", `append to ${actorId} expected last seq ${pending.expectedLastSeq}, journal has ${meta.lastSeq}`, {
        actorId,
        expectedLastSeq: String(pending.expectedLastSeq),
        lastSeq: String(meta.lastSeq),
      });
    }
    if (pending.snapshot !== undefined && pending.snapshot.seq < meta.snapshotSeq) {
      return new QmError("INVALID_ARGUMENT", `snapshot of ${actorId} at seq ${pending.snapshot.seq} is older than the stored one at ${meta.snapshotSeq}`);
    }
    const firstAudit = pending.audit[0];
    if (firstAudit !== undefined && firstAudit.seq <= meta.auditLastSeq) {
      return new QmError("INVALID_ARGUMENT", `audit seq ${firstAudit.seq} of ${actorId} is not after the stored ${meta.auditLastSeq}`);
    }
    const pruneFailure = this.checkPrunePages(actorId, meta, pending);
    if (pruneFailure !== null) return pruneFailure;

    // Events the snapshot in this same append already covers are never written.
    const coveredSeq = pending.snapshot?.seq ?? 0;
    const lastSeq = pending.expectedLastSeq + pending.events.length;
    for (let i = 0; i < pending.events.length; i++) {
      const seq = pending.expectedLastSeq + 1 + i;
      if (seq > coveredSeq) stores.events.putSync([actorId, seq], pending.events[i]!);
    }

    let snapshotSeq = meta.snapshotSeq;
    if (pending.snapshot !== undefined) {
      stores.snapshots.putSync(actorId, pending.snapshot.state);
      // Compaction: events up to the previous snapshot are already gone, so
      // this deletes exactly the stored events the new snapshot covers, work
      // proportional to events written since the last snapshot.
      const deleteThrough = Math.min(pending.snapshot.seq, pending.expectedLastSeq);
      for (let seq = meta.snapshotSeq + 1; seq <= deleteThrough; seq++) stores.events.removeSync([actorId, seq]);
      snapshotSeq = pending.snapshot.seq;
    }

    let wakeAtMs = meta.wakeAtMs;
    if (pending.wakeAtMs !== undefined && pending.wakeAtMs !== meta.wakeAtMs) {
      if (meta.wakeAtMs !== null) stores.wakeups.removeSync([meta.wakeAtMs, actorId]);
      if (pending.wakeAtMs !== null) stores.wakeups.putSync([pending.wakeAtMs, actorId], wakeupValue(actorId, pending.wakeAtMs));
      wakeAtMs = pending.wakeAtMs;
    }

    let auditCount = meta.auditCount;
    let auditLastSeq = meta.auditLastSeq;
    let auditOldestAtMs = meta.auditCount === 0 ? (pending.audit[0]?.atMs ?? null) : meta.auditOldestAtMs;
    for (const record of pending.audit) {
      stores.audit.putSync([actorId, record.seq], record.value);
      auditCount++;
      auditLastSeq = record.seq;
    }
    if (auditCount > 0 && !this.auditWithinRetention(auditCount, auditOldestAtMs)) {
      const pruned = this.pruneAudit(stores.audit, actorId, auditCount, AUDIT_PRUNE_PER_APPEND_MAX + pending.audit.length);
      auditCount -= pruned.dropped;
      auditOldestAtMs = pruned.oldestAtMs;
    }
    if (auditCount === 0) auditOldestAtMs = null;

    stores.meta.putSync(actorId, encodeMeta(actorId, { lastSeq, snapshotSeq, wakeAtMs, auditCount, auditLastSeq, auditOldestAtMs }));
    return null;
  }

  /**
   * When this append's retention will walk the actor's audit records with a
   * cursor, checks the pages that walk visits first (lmdb_pages.ts): a cursor
   * stepping onto a damaged leaf would abort the process. Runs before
   * anything of the append is written, so a damaged page rejects the append
   * alone, with DATA_LOSS. Only appends that prune pay for it.
   */
  private checkPrunePages(actorId: ActorId, meta: ActorMeta, pending: PendingAppend): QmError | null {
    const count = meta.auditCount + pending.audit.length;
    const oldestAtMs = meta.auditCount === 0 ? (pending.audit[0]?.atMs ?? null) : meta.auditOldestAtMs;
    if (count === 0 || this.auditWithinRetention(count, oldestAtMs)) return null;
    try {
      this.checkRangePages("audit", actorId, [actorId, 0], [actorId, Number.MAX_SAFE_INTEGER], AUDIT_PRUNE_PER_APPEND_MAX + pending.audit.length);
      return null;
    } catch (error) {
      if (!isCorruptError(error)) throw error;
      this.noteDamage(actorId, error.message);
      return error;
    }
  }

  /**
   * True when pruning would drop nothing: no more records than maxPerActor
   * and the oldest one (known from the meta record) still young. Exactly the
   * test pruneAudit's walk makes on its first record, without the walk.
   */
  private auditWithinRetention(count: number, oldestAtMs: number | null): boolean {
    return count <= this.retention.maxPerActor && oldestAtMs !== null && oldestAtMs >= this.clock.nowMs() - this.retention.maxAgeMs;
  }

  /**
   * Drops the actor's oldest audit records while they are over maxPerActor or
   * older than maxAgeMs, at most budget of them. Returns how many it dropped,
   * and the atMs of the first record it kept (null when it kept none, or when
   * the budget ran out before it reached one, so the next append walks again).
   * Age is judged in seq order and stops at the first record still young: the
   * actor stamps atMs from its clock as seq grows, so the expired ones form
   * the oldest prefix.
   */
  private pruneAudit(
    audit: Database<Buffer, AuditKey>,
    actorId: ActorId,
    count: number,
    budget: number,
  ): { readonly dropped: number; readonly oldestAtMs: number | null } {
    const cutoffMs = this.clock.nowMs() - this.retention.maxAgeMs;
    const doomed: AuditKey[] = [];
    let oldestAtMs: number | null = null;
    let remaining = count;
    for (const { key, value } of released(
      audit.getRange({
        start: [actorId, 0],
        end: [actorId, Number.MAX_SAFE_INTEGER],
        inclusiveEnd: true,
        limit: budget,
      }),
    )) {
      // A damaged record's atMs may be garbage; pruning it early or late is harmless, reading it is checked.
      if (remaining <= this.retention.maxPerActor && value.length >= CHECKSUM_BYTES + AUDIT_HEADER_BYTES && value.readDoubleBE(CHECKSUM_BYTES) >= cutoffMs) {
        oldestAtMs = value.readDoubleBE(CHECKSUM_BYTES);
        break;
      }
      doomed.push(key);
      remaining--;
    }
    // Deleting after the walk: the cursor must not see its own deletions.
    for (const key of doomed) audit.removeSync(key);
    return { dropped: doomed.length, oldestAtMs };
  }

  private openPages(): LmdbPageReader {
    if (this.pages === undefined) throw new QmError("UNAVAILABLE", `journal ${this.path} is not open`);
    return this.pages;
  }

  private openStores(): Stores {
    if (this.stores === undefined) throw new QmError("UNAVAILABLE", `journal ${this.path} is not open`);
    return this.stores;
  }
}

// ---- Verified reads ------------------------------------------------------------

/**
 * An actor's records, every one checked against its checksum and against the
 * meta record (snapshot present iff snapshotSeq > 0, events exactly
 * snapshotSeq+1..lastSeq). Throws DATA_LOSS naming the actor for any damage.
 *
 * The meta record and the events are read with getBinaryFast, which copies
 * the value into one buffer lmdb-js reuses for the next read, instead of
 * get(), which also slices a new Buffer per record: each record is checked
 * and decoded before the next read, and the decoder copies binary fields
 * (copyBuffers), so nothing keeps a view of that buffer. The snapshot keeps
 * get(): lmdb-js grows that shared buffer to twice the largest value read
 * through it and keeps it, and a snapshot can be megabytes (a hot SKU's holds);
 * an event is bounded by one request (GRPC_MESSAGE_BYTES_MAX). That buffer reports the record's size
 * as its `length` but is larger underneath (subarray() without an end would
 * run past the record), hence exact(). Measured on activation of 100,000
 * SKUs at random, the per-record Buffer was about a tenth of the CPU of an
 * activation and part of its garbage.
 */
export function recoverActor(stores: Pick<Stores, "meta" | "snapshots" | "events" | "wakeups">, actorId: ActorId): Recovered {
  const meta = decodeMeta(actorId, exact(stores.meta.getBinaryFast(actorId)));
  const seed = actorSeed(actorId);
  let snapshot: Snapshot | undefined;
  if (meta.snapshotSeq > 0) {
    const stored = stores.snapshots.get(actorId);
    if (stored === undefined) throw corruptError(actorId, `snapshot at seq ${meta.snapshotSeq} is missing`);
    const body = unseal(stored, seqSeed(seed, meta.snapshotSeq));
    if (body === undefined) throw corruptError(actorId, `snapshot at seq ${meta.snapshotSeq} fails its checksum`);
    snapshot = { seq: meta.snapshotSeq, state: decodeCopied(actorId, body) };
  }
  // One exact lookup per event, not a cursor walk: LMDB checks a page's type
  // when it searches from the root, but a cursor stepping to the next leaf
  // does not, and on a zeroed leaf it fails an assertion that aborts the
  // process. Recovery reads at most one snapshot interval of events, and
  // only on activation, so the extra B-tree descents are cheap.
  const recovered: unknown[] = [];
  for (let seq = meta.snapshotSeq + 1; seq <= meta.lastSeq; seq++) {
    const value = exact(stores.events.getBinaryFast([actorId, seq]));
    if (value === undefined) throw corruptError(actorId, `event ${seq} of ${meta.snapshotSeq + 1}..${meta.lastSeq} is missing`);
    const body = unseal(value, seqSeed(seed, seq));
    if (body === undefined) throw corruptError(actorId, `event ${seq} fails its checksum`);
    recovered.push(decodeCopied(actorId, body));
  }
  // The actor's wake-up entry, looked up exactly: if it sits on a damaged
  // page the timer's scan (lmdb_pages.ts) steps over, the actor's timers are
  // lost, so it fails like any other damage instead of holding stock forever.
  if (meta.wakeAtMs !== null) {
    const entry = exact(stores.wakeups.getBinaryFast([meta.wakeAtMs, actorId]));
    if (entry === undefined || !wakeupValid(actorId, meta.wakeAtMs, entry)) throw corruptError(actorId, `the wake-up entry at ${meta.wakeAtMs} is missing or damaged`);
  }
  return { snapshot, events: recovered, lastSeq: meta.lastSeq, wakeAtMs: meta.wakeAtMs };
}

/** "2, 3 and 4": the formats this code reads, for refusals. */
function formatList(): string {
  return `${JOURNAL_FORMATS_READ.slice(0, -1).join(", ")} and ${JOURNAL_FORMATS_READ[JOURNAL_FORMATS_READ.length - 1]}`;
}

/** The info keyspace's format record, naming the format this code writes. */
function formatRecord(): Buffer {
  const value = Buffer.alloc(CHECKSUM_BYTES + 4);
  value.writeUInt32LE(JOURNAL_FORMAT, CHECKSUM_BYTES);
  return sealInPlace(value, actorSeed(INFO_FORMAT));
}

/** The [wakeAtMs, actorId] of a wake-up key read from a page, or undefined if it is not one. */
function decodeWakeKey(key: Buffer): WakeKey | undefined {
  let decoded: unknown;
  try {
    decoded = bufferToKeyValue(key);
  } catch {
    return undefined;
  }
  if (!Array.isArray(decoded) || decoded.length !== 2) return undefined;
  const [wakeAtMs, actorId] = decoded as unknown[];
  return typeof wakeAtMs === "number" && typeof actorId === "string" ? [wakeAtMs, actorId] : undefined;
}

/** A view of exactly the record getBinaryFast returned (see recoverActor). */
function exact(fast: Buffer | undefined): Buffer | undefined {
  return fast === undefined ? undefined : fast.subarray(0, fast.length);
}

/** Exact lookups of every key an append writes or deletes; throws if one of them reaches a damaged page. */
function probeAppend(stores: Stores, pending: PendingAppend): void {
  const { actorId } = pending;
  const meta = decodeMeta(actorId, stores.meta.get(actorId));
  stores.events.get([actorId, pending.expectedLastSeq + 1]);
  stores.events.get([actorId, meta.snapshotSeq + 1]);
  stores.snapshots.get(actorId);
  if (meta.wakeAtMs !== null) stores.wakeups.get([meta.wakeAtMs, actorId]);
  if (typeof pending.wakeAtMs === "number") stores.wakeups.get([pending.wakeAtMs, actorId]);
  stores.audit.get([actorId, 0]);
  const firstAudit = pending.audit[0];
  if (firstAudit !== undefined) stores.audit.get([actorId, firstAudit.seq]);
}

/**
 * Iterates an lmdb-js range and always releases its cursor. lmdb-js's range
 * iterator throws an LMDB error from next() without releasing its hold on the
 * shared read transaction (for-of calls return() only when the loop body
 * throws), and a transaction still held cannot be reset: every later read
 * would fail with MDB_BAD_TXN.
 */
export function* released<T>(range: Iterable<T>): Generator<T, void, undefined> {
  const iterator = range[Symbol.iterator]();
  try {
    for (;;) {
      const step = iterator.next();
      if (step.done === true) return;
      yield step.value;
    }
  } finally {
    iterator.return?.();
  }
}

// ---- Encoding ------------------------------------------------------------------

function encodeAppend(request: AppendRequest): Omit<PendingAppend, "resolve" | "reject" | "spanContext" | "queuedMs"> {
  const { actorId, expectedLastSeq } = request;
  checkActorId(actorId);
  if (!(Number.isSafeInteger(expectedLastSeq) && expectedLastSeq >= 0)) {
    throw new QmError("INVALID_ARGUMENT", "expectedLastSeq must be an integer >= 0");
  }
  if (!Array.isArray(request.events)) throw new QmError("INVALID_ARGUMENT", "events must be an array");
  const lastSeq = expectedLastSeq + request.events.length;
  const seed = actorSeed(actorId);
  let bytes = 0;
  const events: Buffer[] = new Array<Buffer>(request.events.length);
  for (let i = 0; i < request.events.length; i++) {
    const sealed = seal(packValue(`events[${i}]`, request.events[i]), seqSeed(seed, expectedLastSeq + 1 + i));
    bytes += sealed.length;
    events[i] = sealed;
  }

  let snapshot: PendingAppend["snapshot"];
  if (request.snapshot !== undefined) {
    const { seq } = request.snapshot;
    if (!(Number.isSafeInteger(seq) && seq >= 1 && seq <= lastSeq)) {
      throw new QmError("INVALID_ARGUMENT", `snapshot.seq must be an integer in 1..${lastSeq}`);
    }
    const state = seal(packValue("snapshot.state", request.snapshot.state), seqSeed(seed, seq));
    bytes += state.length;
    snapshot = { seq, state };
  }

  const { wakeAtMs } = request;
  if (wakeAtMs !== undefined && wakeAtMs !== null && !(Number.isFinite(wakeAtMs) && wakeAtMs >= 0)) {
    throw new QmError("INVALID_ARGUMENT", "wakeAtMs must be null or a finite number >= 0");
  }

  const audit: EncodedAudit[] = [];
  if (request.audit !== undefined) {
    let previousSeq = 0;
    for (let i = 0; i < request.audit.length; i++) {
      const record = request.audit[i]!;
      if (!(Number.isSafeInteger(record.seq) && record.seq > previousSeq)) {
        throw new QmError("INVALID_ARGUMENT", `audit[${i}].seq must be an integer above the previous one and above 0`);
      }
      if (!Number.isFinite(record.atMs)) throw new QmError("INVALID_ARGUMENT", `audit[${i}].atMs must be a finite number`);
      const data = packValue(`audit[${i}].data`, record.data);
      const value = Buffer.allocUnsafe(CHECKSUM_BYTES + AUDIT_HEADER_BYTES + data.length);
      value.writeDoubleBE(record.atMs, CHECKSUM_BYTES);
      data.copy(value, CHECKSUM_BYTES + AUDIT_HEADER_BYTES);
      sealInPlace(value, seqSeed(seed, record.seq));
      bytes += value.length;
      audit.push({ seq: record.seq, atMs: record.atMs, value });
      previousSeq = record.seq;
    }
  }

  if (bytes > JOURNAL_APPEND_BYTES_MAX) {
    throw new QmError("LIMIT_EXCEEDED", `append to ${actorId} encodes to ${bytes} bytes, more than ${JOURNAL_APPEND_BYTES_MAX}`, {
      bytes: String(bytes),
      bytesMax: String(JOURNAL_APPEND_BYTES_MAX),
    });
  }
  return { actorId, expectedLastSeq, events, snapshot, wakeAtMs, audit, bytes };
}

function packValue(field: string, value: unknown): Buffer {
  try {
    return pack(value);
  } catch (error) {
    throw new QmError("INVALID_ARGUMENT", `${field} cannot be encoded: ${messageOf(error)}`);
  }
}

/** Decodes like unpack, but binary fields are copies: for bytes in a buffer that lmdb-js reuses for its next read. */
const copyingUnpackr = new Unpackr({ useRecords: false, copyBuffers: true });

function decodeCopied(actorId: ActorId, bytes: Buffer): unknown {
  try {
    return copyingUnpackr.unpack(bytes);
  } catch (error) {
    throw corruptError(actorId, `record cannot be decoded: ${messageOf(error)}`);
  }
}

function decodeValue(actorId: ActorId, bytes: Buffer): unknown {
  try {
    return unpack(bytes);
  } catch (error) {
    // The checksum matched, so this is a record we wrote and cannot read back: still lost data.
    throw corruptError(actorId, `record cannot be decoded: ${messageOf(error)}`);
  }
}

// ---- Validation ----------------------------------------------------------------

function checkActorId(actorId: unknown): asserts actorId is ActorId {
  if (typeof actorId !== "string" || actorId.length > ACTOR_ID_LENGTH_MAX || !ACTOR_ID_PATTERN.test(actorId)) {
    throw new QmError("INVALID_ARGUMENT", `actor id must be kind/key or kind/tenant/key of at most ${ACTOR_ID_LENGTH_MAX} characters [A-Za-z0-9._:-]`);
  }
}

function checkLimit(name: string, limit: number, max: number): void {
  if (!(Number.isSafeInteger(limit) && limit >= 1 && limit <= max)) {
    throw new QmError("INVALID_ARGUMENT", `${name} must be an integer in 1..${max}`);
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The errno-bearing error lmdb-js rejects error.commitError with, if the failure was a commit. Never rejects. */
async function commitCauseOf(error: unknown): Promise<unknown> {
  if (typeof error !== "object" || error === null || !("commitError" in error)) return undefined;
  const commitError: unknown = error.commitError;
  if (!(commitError instanceof Promise)) return undefined;
  const stopWaiting = new AbortController();
  const timeout = delay(JOURNAL_COMMIT_CAUSE_WAIT_MS, undefined, { ref: false, signal: stopWaiting.signal }).catch(() => undefined);
  try {
    return await Promise.race([commitError.then(() => undefined, (cause: unknown) => cause), timeout]);
  } finally {
    stopWaiting.abort();
  }
}

const EIO = 5;
const ENOSPC = 28;
const EDQUOT = 122;

/**
 * EIO, as lmdb-js reports it (the numeric code of error.commitError's cause)
 * or Node does: from the commit's fdatasync, or LMDB's own code for a short
 * page write. Either way the commit's fate on disk is not known in-process.
 */
function isIoError(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const code: unknown = "code" in error ? error.code : undefined;
  return code === EIO || code === "EIO";
}

/** ENOSPC or EDQUOT, as lmdb-js reports them (a numeric code) or Node does (a string code). */
function isDiskFull(error: unknown): boolean {
  if (typeof error !== "object" || error === null) return false;
  const code: unknown = "code" in error ? error.code : undefined;
  if (code === ENOSPC || code === EDQUOT || code === "ENOSPC" || code === "EDQUOT") return true;
  return /No space left on device|Disk quota exceeded|MDB_MAP_FULL/.test(messageOf(error));
}

/** LMDB errors that mean a damaged page (or a transaction a damaged page left unusable), not a full or failing disk. */
function isLmdbCorruption(error: unknown): boolean {
  return /MDB_CORRUPTED|MDB_PAGE_NOTFOUND|MDB_BAD_TXN|MDB_BAD_VALSIZE|MDB_INCOMPATIBLE|wrong type/.test(messageOf(error));
}
