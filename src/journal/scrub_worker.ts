// The child process of scrub.ts: walks one journal read-only and prints one
// JSON line per finding (ScrubLine). It is a separate process because a
// cursor stepping onto a zeroed leaf page fails an assertion inside LMDB that
// aborts the process; the parent notes which keyspace the walk died in and
// starts a new walk without it.
//
// Usage: node scrub_worker.js JOURNAL_DIR [KEYSPACE_TO_SKIP,...]

import type { Database } from "lmdb";
import { systemClock } from "../clock";
import { QmError } from "../errors";
import { SCRUB_CHUNK_RECORDS } from "../limits";
import type { ActorId } from "./journal";
import { type AuditKey, type EventKey, LmdbJournal, type Stores, type WakeKey, released } from "./lmdb_journal";
import { type ActorMeta, actorSeed, decodeMeta, seqSeed, unseal, wakeupValid } from "./record_codec";

export const SCRUB_KEYSPACES = ["meta", "events", "snapshots", "wakeups", "audit"] as const;
export type ScrubKeyspace = (typeof SCRUB_KEYSPACES)[number];

export type ScrubLine =
  | { readonly kind: "walk"; readonly keyspace: ScrubKeyspace }
  | { readonly kind: "walked"; readonly keyspace: ScrubKeyspace; readonly records: number }
  | { readonly kind: "damage"; readonly actorId: ActorId; readonly problem: string }
  | { readonly kind: "problem"; readonly problem: string }
  | { readonly kind: "done" };

function emit(line: ScrubLine): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function damage(actorId: ActorId, problem: string): void {
  emit({ kind: "damage", actorId, problem });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

interface Walked<K> {
  readonly key: K;
  /** What is wrong with the record by itself (its checksum), if anything. */
  readonly problem: string | undefined;
}

/**
 * Walks one keyspace in chunks: a cursor pass reads up to
 * SCRUB_CHUNK_RECORDS records and is closed before `check` looks anything
 * up, because a failed lookup resets the read transaction the cursor would
 * still be using.
 */
async function walk<K extends ActorId | EventKey | WakeKey | AuditKey>(
  journal: LmdbJournal,
  keyspace: ScrubKeyspace,
  db: Database<Buffer, K>,
  verify: (key: K, value: Buffer) => string | undefined,
  check: (chunk: readonly Walked<K>[]) => Promise<void>,
): Promise<void> {
  emit({ kind: "walk", keyspace });
  let records = 0;
  let after: K | undefined;
  for (;;) {
    const chunk: Walked<K>[] = [];
    let failure: unknown;
    try {
      const range = after === undefined ? db.getRange({ limit: SCRUB_CHUNK_RECORDS }) : db.getRange({ start: after, exclusiveStart: true, limit: SCRUB_CHUNK_RECORDS });
      for (const { key, value } of released(range)) chunk.push({ key, problem: verify(key, value) });
    } catch (error) {
      journal.resetReadTransaction();
      failure = error;
    }
    records += chunk.length;
    await check(chunk);
    if (failure !== undefined) {
      emit({ kind: "problem", problem: `the ${keyspace} keyspace cannot be walked past record ${records}: ${messageOf(failure)}` });
      break;
    }
    const last = chunk[chunk.length - 1];
    if (last === undefined || chunk.length < SCRUB_CHUNK_RECORDS) break;
    after = last.key;
  }
  emit({ kind: "walked", keyspace, records });
}

/** The actor's meta, or undefined after reporting why it cannot be read. Caches the last actor: walks are in actor order. */
class MetaReader {
  private lastActor: ActorId | undefined;
  private lastMeta: ActorMeta | undefined;

  constructor(
    private readonly stores: Stores,
    private readonly journal: LmdbJournal,
  ) {}

  read(actorId: ActorId): ActorMeta | undefined {
    if (actorId === this.lastActor) return this.lastMeta;
    this.lastActor = actorId;
    this.lastMeta = undefined;
    try {
      const stored = this.stores.meta.get(actorId);
      if (stored === undefined) {
        damage(actorId, "records without a meta record");
        return undefined;
      }
      this.lastMeta = decodeMeta(actorId, stored);
    } catch (error) {
      this.journal.resetReadTransaction();
      damage(actorId, messageOf(error));
    }
    return this.lastMeta;
  }
}

async function main(): Promise<void> {
  const [journalDir, skipArg] = process.argv.slice(2);
  if (journalDir === undefined) throw new Error("usage: scrub_worker JOURNAL_DIR [SKIP,...]");
  const skip = new Set((skipArg ?? "").split(",").filter((name) => name !== ""));
  const journal = new LmdbJournal({ path: journalDir, auditRetention: { maxAgeMs: Number.MAX_SAFE_INTEGER, maxPerActor: 0 }, clock: systemClock, readOnly: true });
  try {
    await journal.open();
  } catch (error) {
    emit({ kind: "problem", problem: error instanceof QmError ? error.message : `cannot open the journal: ${messageOf(error)}` });
    emit({ kind: "done" });
    return;
  }
  const stores = journal.keyspaces();
  const metas = new MetaReader(stores, journal);
  const report = (chunk: readonly Walked<ActorId | EventKey | WakeKey | AuditKey>[], actorOf: (key: never) => ActorId): void => {
    for (const { key, problem } of chunk) if (problem !== undefined) damage(actorOf(key as never), problem);
  };

  if (!skip.has("meta")) {
    await walk(journal, "meta", stores.meta, (actorId, value) => problemOf(() => decodeMeta(actorId, value)), async (chunk) => {
      report(chunk, (actorId: ActorId) => actorId);
      for (const { key, problem } of chunk) if (problem === undefined) await checkActor(journal, stores, key);
    });
  }
  if (!skip.has("events")) {
    await walk(
      journal,
      "events",
      stores.events,
      ([actorId, seq], value) => (unseal(value, seqSeed(actorSeed(actorId), seq)) === undefined ? `event ${seq} fails its checksum` : undefined),
      async (chunk) => {
        report(chunk, (key: EventKey) => key[0]);
        for (const { key: [actorId, seq] } of chunk) {
          const meta = metas.read(actorId);
          if (meta !== undefined && (seq <= meta.snapshotSeq || seq > meta.lastSeq)) {
            damage(actorId, `event ${seq} lies outside ${meta.snapshotSeq + 1}..${meta.lastSeq}`);
          }
        }
      },
    );
  }
  if (!skip.has("snapshots")) {
    await walk(journal, "snapshots", stores.snapshots, () => undefined, async (chunk) => {
      for (const { key: actorId } of chunk) {
        const meta = metas.read(actorId);
        if (meta !== undefined && meta.snapshotSeq === 0) damage(actorId, "a snapshot is stored but the meta record names none");
        // Its checksum (seeded with meta.snapshotSeq) was checked by recover in the meta walk.
      }
    });
  }
  if (!skip.has("wakeups")) {
    await walk(
      journal,
      "wakeups",
      stores.wakeups,
      ([wakeAtMs, actorId], value) => (wakeupValid(actorId, wakeAtMs, value) ? undefined : `wake-up entry at ${wakeAtMs} fails its checksum`),
      async (chunk) => {
        report(chunk, (key: WakeKey) => key[1]);
        for (const { key: [wakeAtMs, actorId] } of chunk) {
          const meta = metas.read(actorId);
          if (meta !== undefined && meta.wakeAtMs !== wakeAtMs) damage(actorId, `wake-up entry at ${wakeAtMs} but the meta record says ${meta.wakeAtMs}`);
        }
      },
    );
  }
  if (!skip.has("audit")) {
    let actor: ActorId | undefined;
    let count = 0;
    let firstChecked: ActorId | undefined;
    const finishActor = (): void => {
      if (actor === undefined) return;
      const meta = metas.read(actor);
      if (meta !== undefined && meta.auditCount !== count) damage(actor, `${count} audit records stored, the meta record counts ${meta.auditCount}`);
    };
    await walk(
      journal,
      "audit",
      stores.audit,
      ([actorId, seq], value) => {
        const body = unseal(value, seqSeed(actorSeed(actorId), seq));
        if (body === undefined) return `audit record ${seq} fails its checksum`;
        if (actorId === firstChecked) return undefined;
        // The walk is in key order, so this is the actor's lowest-seq record, whose time the meta record keeps (format 3).
        firstChecked = actorId;
        const oldest = metas.read(actorId)?.auditOldestAtMs ?? null;
        const atMs = body.length >= 8 ? body.readDoubleBE(0) : Number.NaN;
        return oldest === null || oldest === atMs ? undefined : `the first audit record ${seq} is at ${atMs}, the meta record says ${oldest}`;
      },
      async (chunk) => {
        report(chunk, (key: AuditKey) => key[0]);
        for (const { key: [actorId, seq] } of chunk) {
          if (actorId !== actor) {
            finishActor();
            actor = actorId;
            count = 0;
          }
          count++;
          const meta = metas.read(actorId);
          if (meta !== undefined && seq > meta.auditLastSeq) damage(actorId, `audit record ${seq} is after the meta record's last ${meta.auditLastSeq}`);
        }
      },
    );
    finishActor();
  }
  emit({ kind: "done" });
  await journal.close();
}

function problemOf(check: () => unknown): string | undefined {
  try {
    check();
    return undefined;
  } catch (error) {
    return messageOf(error);
  }
}

/** Everything recover would read, plus the actor's wake-up entry; each lookup exact. */
async function checkActor(journal: LmdbJournal, stores: Stores, actorId: ActorId): Promise<void> {
  try {
    const recovered = await journal.recover(actorId);
    if (recovered.wakeAtMs !== null) {
      const entry = stores.wakeups.get([recovered.wakeAtMs, actorId]);
      if (entry === undefined) damage(actorId, `the wake-up entry at ${recovered.wakeAtMs} is missing`);
    }
  } catch (error) {
    // recover has reset the read transaction if LMDB failed.
    damage(actorId, messageOf(error));
  }
}

// scrub.ts imports the protocol types from here; only the child runs the walk.
if (require.main === module) {
  main().then(
    () => undefined,
    (error: unknown) => {
      process.stderr.write(`scrub worker: ${messageOf(error)}\n`);
      process.exitCode = 3;
    },
  );
}
