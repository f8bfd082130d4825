// Revocations shared by a cluster, in etcd: every node watches the keys under
// /quartermaster/<cluster>/revoked/ (etcd_keys.ts), each holding one entry in
// the shape of QM_AUTH_CONFIG's `revoked` list, and the gate refuses what the
// file's list and these refuse together (auth_gate.ts). An operator revokes a
// credential on every node with one `etcdctl put`, and lifts it with `del`.
//
// Decisions (README, "TLS" and SECURITY.md say them to operators):
// - A malformed value (not JSON, not one entry, over REVOCATION_VALUE_BYTES_MAX,
//   a name over REVOCATION_KEY_NAME_LENGTH_MAX) is logged once, with its key,
//   and ignored: it never stops the node and never clears the other entries.
// - etcd out of reach: the last list read stays in force. A revocation must not
//   lapse because etcd is down, and one lifted meanwhile is lifted when etcd
//   answers again. A node cannot start without reading the list (nor without
//   etcd at all), so it never serves a moment with an empty one.
// - A lost watch is never trusted to resume. etcd3 resumes a watch after a
//   reconnection from the revision in the last response header it saw, which
//   can be past events it has not delivered yet, and a watch whose revision
//   was compacted meanwhile is cancelled for good. So after a disconnection or
//   a cancel the node reads the whole prefix at one revision and watches anew
//   from the next: deletions made while it was away are seen, and nothing is
//   applied twice or out of order. The same re-read runs every
//   REVOCATION_RESYNC_INTERVAL_MS, bounding how stale an unnoticed loss could
//   leave the list (cluster/etcd_mirror.ts does this for the cluster's view too).
// - Off the call path: events update a map; the united list is rebuilt once
//   per burst of events (setImmediate) and handed to the gate, whose per-call
//   check stays one map lookup.

import { type Etcd3, type IKeyValue, Range } from "etcd3";
import { EtcdMirror } from "../cluster/etcd_mirror";
import type { Logger } from "pino";
import { type Lifecycle, lifecycle } from "../lifecycle";
import { AUTH_REVOKED_MAX, REVOCATION_KEY_NAME_LENGTH_MAX, REVOCATION_READ_PAGE_KEYS, REVOCATION_RESYNC_INTERVAL_MS, REVOCATION_RETRY_MS, REVOCATION_VALUE_BYTES_MAX } from "../limits";
import { AuthConfigError, parseRevocationEntry, type RevocationEntry } from "./auth_config";

/** What the node knows of one key: its entry, or undefined for a malformed value (already logged at this revision). */
interface Known {
  readonly modRevision: string;
  readonly entry: RevocationEntry | undefined;
}

/** The gate's side: told the cluster's valid entries in key order whenever they change. */
export interface SharedRevocationsSink {
  setSharedRevocations(entries: readonly RevocationEntry[]): void;
}

export interface ClusterRevocationsOptions {
  readonly client: Etcd3;
  /** The revoked/ prefix of this cluster's keys (ClusterKeys.revokedPrefix). */
  readonly prefix: string;
  readonly sink: SharedRevocationsSink;
  readonly logger: Logger;
  /** Tests shorten the periodic re-read; production uses REVOCATION_RESYNC_INTERVAL_MS. */
  readonly resyncIntervalMs?: number;
}

export class ClusterRevocations {
  private readonly prefix: string;
  private readonly logger: Logger;
  /** Key name (after the prefix) → what it holds; at most AUTH_REVOKED_MAX keys. */
  private known = new Map<string, Known>();
  /** The prefix read at one revision, then watched (cluster/etcd_mirror.ts). */
  private readonly mirror: EtcdMirror;
  private applyScheduled = false;

  constructor(private readonly options: ClusterRevocationsOptions) {
    this.prefix = options.prefix;
    this.logger = options.logger;
    this.mirror = new EtcdMirror({
      client: options.client,
      prefix: options.prefix,
      logger: options.logger,
      what: "the cluster's revocations",
      read: () => this.readList(),
      onPut: (kv) => this.onPut(kv),
      onDelete: (kv) => this.onDelete(kv),
      retryMs: REVOCATION_RETRY_MS,
      resyncIntervalMs: options.resyncIntervalMs ?? REVOCATION_RESYNC_INTERVAL_MS,
    });
  }

  /** Reads the prefix and starts watching it; fails (and the node's start with it) if etcd cannot be read. */
  start(): Promise<void> {
    return this.mirror.start();
  }

  /** Idempotent. The gate keeps the last list. */
  stop(): Promise<void> {
    return this.mirror.stop();
  }

  /** Re-reads the prefix and watches anew; one at a time, and a request during one runs once more after it. */
  resync(why: string): void {
    this.mirror.resync(why);
  }

  /** Reads every key at one revision and makes them the whole list; returns that revision. */
  private async readList(): Promise<bigint> {
    const { kvs, revision } = await this.readAll();
    const next = new Map<string, Known>();
    for (const kv of kvs) {
      const name = kv.key.subarray(Buffer.byteLength(this.prefix)).toString("utf8");
      next.set(name, this.read(name, kv, this.known.get(name)));
    }
    const changed = !sameKeys(this.known, next);
    this.known = next;
    if (changed) this.scheduleApply();
    return revision;
  }

  /** Every key under the prefix at one revision, page by page; at most AUTH_REVOKED_MAX of them. */
  private async readAll(): Promise<{ kvs: IKeyValue[]; revision: bigint }> {
    const whole = Range.prefix(this.prefix);
    const first = await this.options.client.getAll().inRange(whole).limit(REVOCATION_READ_PAGE_KEYS).exec();
    const revision = BigInt(first.header.revision);
    const kvs = [...first.kvs];
    let more = first.more;
    while (more && kvs.length < AUTH_REVOKED_MAX) {
      const last = kvs[kvs.length - 1];
      if (last === undefined) break;
      const page = await this.options.client
        .getAll()
        .inRange(new Range(Buffer.concat([last.key, Buffer.from([0])]), whole.end))
        .limit(Math.min(REVOCATION_READ_PAGE_KEYS, AUTH_REVOKED_MAX - kvs.length))
        .revision(revision.toString())
        .exec();
      kvs.push(...page.kvs);
      more = page.more;
    }
    if (more) {
      this.logger.error({ prefix: this.prefix, max: AUTH_REVOKED_MAX }, "more keys under the cluster's revoked/ prefix than revocations allowed: the keys past the limit (in key order) are ignored");
    }
    return { kvs, revision };
  }

  private onPut(kv: IKeyValue): void {
    const name = kv.key.subarray(Buffer.byteLength(this.prefix)).toString("utf8");
    const before = this.known.get(name);
    if (before === undefined && this.known.size >= AUTH_REVOKED_MAX) {
      this.logger.error({ key: kv.key.toString("utf8"), max: AUTH_REVOKED_MAX }, "a revocation in etcd past the limit of entries: ignored; remove expired ones");
      return;
    }
    this.known.set(name, this.read(name, kv, before));
    this.scheduleApply();
  }

  private onDelete(kv: IKeyValue): void {
    const name = kv.key.subarray(Buffer.byteLength(this.prefix)).toString("utf8");
    if (this.known.delete(name)) this.scheduleApply();
  }

  /** Parses one key's value; a malformed one is logged unless it was already, at the same revision. */
  private read(name: string, kv: IKeyValue, before: Known | undefined): Known {
    const modRevision = kv.mod_revision;
    if (before !== undefined && before.modRevision === modRevision) return before;
    let entry: RevocationEntry | undefined;
    let problem: string | undefined;
    if (name.length === 0 || name.length > REVOCATION_KEY_NAME_LENGTH_MAX) {
      problem = `the name after revoked/ must be 1-${REVOCATION_KEY_NAME_LENGTH_MAX} characters`;
    } else if (kv.value.length > REVOCATION_VALUE_BYTES_MAX) {
      problem = `the value has ${kv.value.length} bytes; at most ${REVOCATION_VALUE_BYTES_MAX}`;
    } else {
      try {
        entry = parseRevocationEntry(kv.value.toString("utf8"));
      } catch (error) {
        problem = error instanceof AuthConfigError ? error.message : String(error);
      }
    }
    if (problem !== undefined) {
      this.logger.error(
        { key: kv.key.toString("utf8"), modRevision, error: problem },
        'ignored a malformed revocation in etcd (the others stay in force): expected {"jti":"..."} or {"subject":"...","issued_before":"<RFC 3339>"}',
      );
    }
    return { modRevision, entry };
  }

  /** One rebuild per burst of events: a put of many keys at once costs one pass, not one per key. */
  private scheduleApply(): void {
    if (this.applyScheduled) return;
    this.applyScheduled = true;
    setImmediate(() => {
      this.applyScheduled = false;
      this.apply();
    });
  }

  private apply(): void {
    const names = [...this.known.keys()].sort();
    const entries: RevocationEntry[] = [];
    let malformed = 0;
    for (const name of names) {
      const entry = this.known.get(name)?.entry;
      if (entry === undefined) malformed++;
      else entries.push(entry);
    }
    this.options.sink.setSharedRevocations(entries);
    const tokenIds = entries.filter((e) => e.kind === "jti").length;
    this.logger.info({ prefix: this.prefix, tokenIds, subjects: entries.length - tokenIds, malformed }, "the cluster's revocations in etcd applied");
  }
}

/** The node's part: started before the listener, so no call is admitted before the cluster's list is read. */
export function clusterRevocationsPart(revocations: ClusterRevocations): Lifecycle {
  return lifecycle("cluster-revocations", () => revocations.start(), () => revocations.stop());
}

function sameKeys(a: ReadonlyMap<string, Known>, b: ReadonlyMap<string, Known>): boolean {
  if (a.size !== b.size) return false;
  for (const [name, known] of a) if (b.get(name)?.modRevision !== known.modRevision) return false;
  return true;
}
