// The data directory's identity: which journal belongs here.
//
// Deleting data.mdb, or the whole journal/ folder, used to start an empty node
// without a word, and every SKU and order was gone. LMDB cannot tell "new"
// from "lost": an absent file is simply created. So the directory keeps a
// small identity file next to the journal, written (atomically, fsynced) right
// after the journal is first created, and the same identity is stored inside
// the journal. At start:
//   identity file, no journal          -> refuse (the journal was lost), unless
//                                         the operator allows an empty start
//   identity file and journal disagree -> refuse (a journal from elsewhere)
//   journal, no identity file          -> rewrite the file from the journal
//   neither                            -> a new directory: create both
// The journal is created before the file, so a crash in between leaves the
// third case, which heals itself, never the first.
//
// Backups copy the whole data directory, identity file included; a restored
// copy therefore starts as the same identity. Two nodes started from one
// backup share an identity; telling them apart is the cluster's job.

import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { open, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import type { Clock } from "../clock";
import { QmError } from "../errors";

/** The identity file's name inside the data directory. */
export const IDENTITY_FILE = "IDENTITY.json";
/** Version of the identity file's own layout. */
export const IDENTITY_FORMAT = 1;

export interface DataDirIdentity {
  readonly format: number;
  /** Unique per journal ever created; what the file and the journal must agree on. */
  readonly identityId: string;
  readonly clusterId: string;
  readonly nodeId: string;
  readonly createdAtMs: number;
  /** The journal format (record_codec.ts JOURNAL_FORMAT) the journal was created with. */
  readonly journalFormat: number;
}

/** What identity checking needs of a journal; LmdbJournal implements it. */
export interface IdentityJournal {
  open(): Promise<void>;
  close(): Promise<void>;
  /** The identity stored in the journal, as written by storeIdentity, or undefined. */
  storedIdentity(): string | undefined;
  storeIdentity(identity: string): Promise<void>;
}

export interface IdentityLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface OpenWithIdentityOptions {
  readonly dataDir: string;
  /** The journal's data file; its absence is what "the journal is missing" means. */
  readonly journalFile: string;
  readonly journal: IdentityJournal;
  /** QM_ALLOW_EMPTY_JOURNAL: start empty although the identity file says a journal existed. */
  readonly allowEmpty: boolean;
  readonly journalFormat: number;
  readonly clock: Clock;
  readonly logger?: IdentityLogger;
  /** For a new identity; random when not given (a single node has no configured ids). */
  readonly clusterId?: string;
  readonly nodeId?: string;
}

/**
 * Opens the journal only if it is the one this data directory's identity
 * names; creates the identity for a new directory. On refusal the journal is
 * left closed and the error is FAILED_PRECONDITION with a message for the
 * operator.
 */
export async function openJournalWithIdentity(options: OpenWithIdentityOptions): Promise<DataDirIdentity> {
  const { dataDir, journalFile, journal, allowEmpty, logger } = options;
  const expected = await readIdentityFile(dataDir);
  const journalPresent = existsSync(journalFile);
  if (expected !== undefined && !journalPresent) {
    if (!allowEmpty) {
      throw new QmError(
        "FAILED_PRECONDITION",
        `journal ${journalFile} is missing, but ${join(dataDir, IDENTITY_FILE)} says journal ${expected.identityId} was created here ` +
          `${new Date(expected.createdAtMs).toISOString()}: restore the data directory from a backup, or set QM_ALLOW_EMPTY_JOURNAL=1 to start empty`,
        { reason: "JOURNAL_MISSING", dataDir, identityId: expected.identityId },
      );
    }
    logger?.warn({ dataDir, lostIdentityId: expected.identityId }, "journal missing: starting EMPTY because QM_ALLOW_EMPTY_JOURNAL is set");
  }
  await journal.open();
  try {
    const stored = parseIdentity(journal.storedIdentity(), `the identity stored in ${journalFile}`);
    if (stored === undefined) {
      if (expected !== undefined && journalPresent && !allowEmpty) {
        throw mismatch(dataDir, journalFile, expected.identityId, "none");
      }
      const created = newIdentity(options);
      // Journal first, file second: see the top of the file.
      await journal.storeIdentity(JSON.stringify(created));
      await writeIdentityFile(dataDir, created);
      logger?.info({ dataDir, identityId: created.identityId }, "new journal: identity created");
      return created;
    }
    if (expected === undefined) {
      await writeIdentityFile(dataDir, stored);
      logger?.warn({ dataDir, identityId: stored.identityId }, `${IDENTITY_FILE} was missing: rewritten from the journal`);
      return stored;
    }
    if (stored.identityId !== expected.identityId) throw mismatch(dataDir, journalFile, expected.identityId, stored.identityId);
    return stored;
  } catch (error) {
    await journal.close();
    throw error;
  }
}

function mismatch(dataDir: string, journalFile: string, expected: string, found: string): QmError {
  return new QmError(
    "FAILED_PRECONDITION",
    `journal ${journalFile} is not the one ${join(dataDir, IDENTITY_FILE)} names (expected ${expected}, found ${found}): ` +
      "put the right journal back or restore the whole data directory from one backup",
    { reason: "JOURNAL_MISMATCH", dataDir, expected, found },
  );
}

export function newIdentity(options: Pick<OpenWithIdentityOptions, "clock" | "journalFormat" | "clusterId" | "nodeId">): DataDirIdentity {
  return {
    format: IDENTITY_FORMAT,
    identityId: randomUUID(),
    clusterId: options.clusterId ?? randomUUID(),
    nodeId: options.nodeId ?? randomUUID(),
    createdAtMs: options.clock.nowMs(),
    journalFormat: options.journalFormat,
  };
}

/** The identity file of dataDir, or undefined if there is none. A malformed file is refused, not ignored. */
export async function readIdentityFile(dataDir: string): Promise<DataDirIdentity | undefined> {
  const file = join(dataDir, IDENTITY_FILE);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if (typeof error === "object" && error !== null && "code" in error && error.code === "ENOENT") return undefined;
    throw new QmError("UNAVAILABLE", `cannot read ${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
  return parseIdentity(text, file);
}

/** Writes the identity file atomically: a temporary file, fsync, rename, fsync of the directory. */
export async function writeIdentityFile(dataDir: string, identity: DataDirIdentity): Promise<void> {
  const file = join(dataDir, IDENTITY_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  const handle = await open(tmp, "w", 0o644);
  try {
    await handle.writeFile(`${JSON.stringify(identity, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, file);
  const dir = await open(dataDir, "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

function parseIdentity(text: string | undefined, where: string): DataDirIdentity | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new QmError("DATA_LOSS", `${where} is not valid JSON (if it is the file, delete it: the node rewrites it from the journal)`, {
      reason: "IDENTITY_CORRUPT",
    });
  }
  if (
    typeof value !== "object" ||
    value === null ||
    !("format" in value && value.format === IDENTITY_FORMAT) ||
    !("identityId" in value && typeof value.identityId === "string" && value.identityId !== "") ||
    !("clusterId" in value && typeof value.clusterId === "string") ||
    !("nodeId" in value && typeof value.nodeId === "string") ||
    !("createdAtMs" in value && typeof value.createdAtMs === "number") ||
    !("journalFormat" in value && typeof value.journalFormat === "number")
  ) {
    throw new QmError("DATA_LOSS", `${where} is not a format-${IDENTITY_FORMAT} identity (if it is the file, delete it: the node rewrites it from the journal)`, {
      reason: "IDENTITY_CORRUPT",
    });
  }
  return {
    format: value.format,
    identityId: value.identityId,
    clusterId: value.clusterId,
    nodeId: value.nodeId,
    createdAtMs: value.createdAtMs,
    journalFormat: value.journalFormat,
  };
}
