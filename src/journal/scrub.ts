// Offline verification of a whole data directory: `qmctl scrub`.
//
// Checks, in order: the identity file against the journal, the data file's
// structure (lmdb_file_check.ts), then every record of every keyspace against
// its checksum and the per-actor consistency (meta record, events
// snapshotSeq+1..lastSeq, snapshot, wake-up entry, audit count). Returns
// every damaged actor it can name, and the problems it cannot pin on one.
//
// The record walk runs in a child process (scrub_worker.ts): LMDB aborts the
// process when a cursor steps onto a zeroed leaf page. When the child dies,
// the keyspace it was walking is reported and a new child walks the rest.
// Actors behind such a page are still found through their records in the
// other keyspaces, whose checks look the meta record up exactly.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { QmError } from "../errors";
import { SCRUB_DAMAGED_ACTORS_MAX } from "../limits";
import { acquireDataDirLock } from "./data_dir_lock";
import { IDENTITY_FILE, readIdentityFile } from "./identity";
import type { ActorId } from "./journal";
import { checkLmdbFile } from "./lmdb_file_check";
import { LMDB_DATA_FILE } from "./lmdb_journal";
import { SCRUB_KEYSPACES, type ScrubKeyspace, type ScrubLine } from "./scrub_worker";

export interface DamagedActor {
  readonly actorId: ActorId;
  readonly problems: readonly string[];
}

export interface ScrubReport {
  readonly dataDir: string;
  /** True when nothing is wrong. */
  readonly clean: boolean;
  /** Damage not tied to one actor: a missing or damaged file, a keyspace that cannot be walked. */
  readonly problems: readonly string[];
  /** Damaged actors, sorted by id; at most SCRUB_DAMAGED_ACTORS_MAX. */
  readonly damaged: readonly DamagedActor[];
  /** Damaged actors beyond SCRUB_DAMAGED_ACTORS_MAX, counted only. */
  readonly damagedNotListed: number;
  /** Records walked per keyspace. */
  readonly records: Readonly<Record<string, number>>;
}

/** Distinct problems kept per actor; the first few say what is wrong. */
const PROBLEMS_PER_ACTOR_MAX = 8;

/**
 * Verifies a stopped node's data directory. Fails with FAILED_PRECONDITION
 * if a process holds the directory, NOT_FOUND if it does not exist.
 */
export async function scrubDataDir(dataDir: string): Promise<ScrubReport> {
  if (!existsSync(dataDir)) throw new QmError("NOT_FOUND", `data directory ${dataDir} does not exist`, { dataDir });
  const lock = await acquireDataDirLock(dataDir);
  try {
    return await scrubLocked(dataDir);
  } finally {
    await lock.release();
  }
}

/**
 * scrubDataDir for a caller that already holds the directory's lock (restore
 * scrubs what it wrote without letting go of it, so no node can start on the
 * directory in between).
 */
export async function scrubLocked(dataDir: string): Promise<ScrubReport> {
  const collector = new Collector(dataDir);
  const journalDir = join(dataDir, "journal");
  const file = join(journalDir, LMDB_DATA_FILE);
  let identityPresent = false;
  try {
    identityPresent = (await readIdentityFile(dataDir)) !== undefined;
  } catch (error) {
    collector.problem(error instanceof Error ? error.message : String(error));
  }
  if (!existsSync(file)) {
    collector.problem(identityPresent ? `journal ${file} is missing, but ${IDENTITY_FILE} says one was created here` : `no journal at ${file}`);
    return collector.report();
  }
  if (!identityPresent) collector.problem(`${join(dataDir, IDENTITY_FILE)} is missing (the node rewrites it from the journal at start)`);
  const check = await checkLmdbFile(file);
  if (!check.ok) {
    collector.problem(`journal file ${file} is damaged: ${check.problem}`);
    return collector.report();
  }
  const skip = new Set<ScrubKeyspace>();
  // Each pass either finishes or loses one more keyspace, so this ends.
  for (let pass = 0; pass <= SCRUB_KEYSPACES.length; pass++) {
    const outcome = await runWorker(journalDir, [...skip], collector);
    if (outcome.finished) break;
    const crashed = outcome.walking;
    if (crashed === undefined || skip.has(crashed)) {
      collector.problem(`the scrub worker failed outside a keyspace walk: ${outcome.failure}`);
      break;
    }
    collector.problem(`LMDB aborted while walking the ${crashed} keyspace (${outcome.failure}): a damaged page; records past it were not walked`);
    for (const done of outcome.walked) skip.add(done);
    skip.add(crashed);
  }
  return collector.report();
}

interface WorkerOutcome {
  readonly finished: boolean;
  readonly walking: ScrubKeyspace | undefined;
  readonly walked: readonly ScrubKeyspace[];
  readonly failure: string;
}

function runWorker(journalDir: string, skip: readonly ScrubKeyspace[], collector: Collector): Promise<WorkerOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(__dirname, "scrub_worker.js"), journalDir, skip.join(",")], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let walking: ScrubKeyspace | undefined;
    const walked: ScrubKeyspace[] = [];
    let finished = false;
    let stderr = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (text: string) => {
      // Only the tail says why it died (LMDB's assertion message).
      stderr = (stderr + text).slice(-2000);
    });
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (text) => {
      const line = JSON.parse(text) as ScrubLine;
      switch (line.kind) {
        case "walk":
          walking = line.keyspace;
          break;
        case "walked":
          walking = undefined;
          walked.push(line.keyspace);
          collector.records[line.keyspace] = line.records;
          break;
        case "damage":
          collector.damage(line.actorId, line.problem);
          break;
        case "problem":
          collector.problem(line.problem);
          break;
        case "done":
          finished = true;
          break;
      }
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const lastLine = stderr.trim().split("\n").filter((l) => !l.includes("index points to a 00 page")).pop() ?? "";
      const failure = signal !== null ? `killed by ${signal}${lastLine === "" ? "" : `: ${lastLine}`}` : `exit code ${code}${lastLine === "" ? "" : `: ${lastLine}`}`;
      resolve({ finished: finished && code === 0, walking, walked, failure });
    });
  });
}

class Collector {
  readonly records: Record<string, number> = {};
  private readonly problems = new Set<string>();
  /** Bounded by SCRUB_DAMAGED_ACTORS_MAX; beyond it actors are counted in `overflow`. */
  private readonly damaged = new Map<ActorId, Set<string>>();
  private readonly overflow = new Set<ActorId>();

  constructor(private readonly dataDir: string) {}

  problem(text: string): void {
    this.problems.add(text);
  }

  damage(actorId: ActorId, problem: string): void {
    let problems = this.damaged.get(actorId);
    if (problems === undefined) {
      if (this.damaged.size >= SCRUB_DAMAGED_ACTORS_MAX) {
        // Counting distinct overflow actors needs their ids; keep no more than the listed ones.
        if (this.overflow.size < SCRUB_DAMAGED_ACTORS_MAX) this.overflow.add(actorId);
        return;
      }
      problems = new Set();
      this.damaged.set(actorId, problems);
    }
    if (problems.size < PROBLEMS_PER_ACTOR_MAX) problems.add(problem);
  }

  report(): ScrubReport {
    const damaged = [...this.damaged.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([actorId, problems]) => ({ actorId, problems: [...problems] }));
    const problems = [...this.problems];
    return {
      dataDir: this.dataDir,
      clean: problems.length === 0 && damaged.length === 0,
      problems,
      damaged,
      damagedNotListed: this.overflow.size,
      records: { ...this.records },
    };
  }
}
