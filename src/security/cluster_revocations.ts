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
//   leave the list.
// - Off the call path: events update a map; the united list is rebuilt once
//   per burst of events (setImmediate) and handed to the gate, whose per-call
//   check stays one map lookup.

import { type Etcd3, type IKeyValue, Range, type Watcher } from "etcd3";
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
  private watcher: Watcher | undefined;
  private resyncing: Promise<void> | undefined;
  private resyncAgain = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private periodicTimer: NodeJS.Timeout | undefined;
  private applyScheduled = false;
  /** Failed re-reads in a row: only the first of an outage is logged. */
  private failures = 0;
  private stopped = false;

  constructor(private readonly options: ClusterRevocationsOptions) {
    this.prefix = options.prefix;
    this.logger = options.logger;
  }

  /** Reads the prefix and starts watching it; fails (and the node's start with it) if etcd cannot be read. */
  async start(): Promise<void> {
    await this.readAndWatch();
    const periodMs = this.options.resyncIntervalMs ?? REVOCATION_RESYNC_INTERVAL_MS;
    this.periodicTimer = setInterval(() => this.resync("periodic"), periodMs);
    this.periodicTimer.unref();
  }

  /** Idempotent. The gate keeps the last list. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.periodicTimer);
    clearTimeout(this.retryTimer);
    const watcher = this.detachWatcher();
    if (watcher !== undefined) await cancelWithin(watcher, REVOCATION_RETRY_MS);
  }

  /** Re-reads the prefix and watches anew; one at a time, and a request during one runs once more after it. */
  resync(why: string): void {
    if (this.stopped) return;
    if (this.resyncing !== undefined) {
      this.resyncAgain = true;
      return;
    }
    this.logger.debug({ why }, "re-reading the cluster's revocations");
    this.resyncing = (async () => {
      try {
        do {
          this.resyncAgain = false;
          await this.readAndWatch();
        } while (this.resyncAgain && !this.stopped);
        if (this.failures > 0) this.logger.info({ failures: this.failures }, "the cluster's revocations are read from etcd again");
        this.failures = 0;
      } catch (error) {
        if (this.failures++ === 0) {
          this.logger.warn({ err: error, retryMs: REVOCATION_RETRY_MS }, "cannot read the cluster's revocations from etcd: the last list read stays in force; retrying");
        }
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => this.resync("retry"), REVOCATION_RETRY_MS);
        this.retryTimer.unref();
      } finally {
        this.resyncing = undefined;
      }
    })();
  }

  /**
   * Drops the current watch, reads every key at one revision, applies them as the whole list, and watches from the
   * next revision: no event is lost between the read and the watch, and none is applied twice.
   */
  private async readAndWatch(): Promise<void> {
    const old = this.detachWatcher();
    if (old !== undefined) void cancelWithin(old, REVOCATION_RETRY_MS);
    const { kvs, revision } = await this.readAll();
    const next = new Map<string, Known>();
    for (const kv of kvs) {
      const name = kv.key.subarray(Buffer.byteLength(this.prefix)).toString("utf8");
      next.set(name, this.read(name, kv, this.known.get(name)));
    }
    const changed = !sameKeys(this.known, next);
    this.known = next;
    if (changed) this.scheduleApply();
    if (this.stopped) return;
    this.watch(revision + 1n);
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

  private watch(fromRevision: bigint): void {
    // watcher() attaches at once and connects when it can; create() would wait for the connection.
    const watcher = this.options.client.watch().prefix(this.prefix).startRevision(fromRevision.toString()).watcher();
    let disconnected = false;
    watcher.on("put", (kv: IKeyValue) => this.onPut(kv));
    watcher.on("delete", (kv: IKeyValue) => this.onDelete(kv));
    watcher.on("disconnected", () => {
      disconnected = true;
    });
    watcher.on("connected", () => {
      // See the header: a resumed watch may have skipped events.
      if (disconnected) this.resync("watch reconnected");
    });
    // etcd3 emits 'error' only when etcd cancelled the watch (a compacted start revision): it is dead.
    watcher.on("error", (error: Error) => {
      if (this.watcher !== watcher) return;
      this.logger.warn({ err: error }, "etcd cancelled the watch of the cluster's revocations: re-reading them");
      this.watcher = undefined;
      this.resync("watch cancelled");
    });
    this.watcher = watcher;
  }

  private detachWatcher(): Watcher | undefined {
    const watcher = this.watcher;
    this.watcher = undefined;
    if (watcher !== undefined) {
      watcher.removeAllListeners();
      // An emitter without an 'error' listener throws: a late cancel of the dropped watch must not.
      watcher.on("error", () => undefined);
    }
    return watcher;
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

/** Cancels a watch, waiting at most `ms` for etcd to confirm (it may be out of reach). */
async function cancelWithin(watcher: Watcher, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([watcher.cancel().catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
