// Closed-loop reserve load against a test cluster, recording the outcome of
// every call by its reservation id, so a failure test can check afterwards
// that every acknowledged reservation is there, every refused one is not, and
// only calls whose outcome the client never learned are undecided.

import type { ServiceError } from "@grpc/grpc-js";
import { status as GrpcStatus } from "@grpc/grpc-js";
import type { TestCluster } from "./cluster";
import { call, decodeStatusDetails } from "./server_process";

/** ok: acknowledged. refused: the service said it did nothing. unknown: the client never learned. */
export type OutcomeKind = "ok" | "refused" | "unknown";

export interface CallRecord {
  readonly id: string;
  readonly sku: string;
  readonly via: string;
  readonly startedMs: number;
  endedMs: number;
  kind: OutcomeKind | "pending";
  /** gRPC code name and ErrorInfo reason, "ok" when acknowledged. */
  label: string;
}

/**
 * Errors that say the reservation was not applied: the stock check refused
 * it, no owner was reachable before the deadline (every attempt got NOT_OWNER,
 * which an actor answers without looking at the message), this node's lease
 * lapsed or NATS is disconnected (both checked before any attempt), a
 * breaker refused, or the journal's
 * compare-and-set refused the write. Everything else (a deadline, a broken
 * connection) leaves the outcome unknown.
 */
const REFUSALS = new Set([
  "FAILED_PRECONDITION:INSUFFICIENT_STOCK",
  "UNAVAILABLE:NO_OWNER",
  "UNAVAILABLE:NO_LEASE",
  "UNAVAILABLE:NATS_DISCONNECTED",
  "UNAVAILABLE:BREAKER_OPEN",
  "ABORTED:FENCED",
]);

export function labelOf(error: unknown): string {
  const e = error as ServiceError;
  const reason = decodeStatusDetails(e).errorInfo?.reason ?? "";
  return `${GrpcStatus[e.code] ?? String(e.code)}:${reason}`;
}

export class ReserveLoad {
  readonly calls: CallRecord[] = [];
  private running = false;
  private workers: Promise<void>[] = [];
  private next = 0;

  constructor(
    private readonly cluster: TestCluster,
    private readonly options: {
      readonly prefix: string;
      readonly skus: readonly string[];
      /** The nodes to call through; read before every call, so a test can change it. */
      readonly via: () => readonly string[];
      readonly workers: number;
      readonly deadlineMs: number;
    },
  ) {}

  start(): void {
    this.running = true;
    this.workers = Array.from({ length: this.options.workers }, () => this.work());
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
  }

  count(kind: OutcomeKind | "pending", since = 0): number {
    return this.calls.filter((c) => c.kind === kind && c.startedMs >= since).length;
  }

  /** Outcome labels and how often each occurred. */
  labels(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const c of this.calls) counts[c.label] = (counts[c.label] ?? 0) + 1;
    return counts;
  }

  private async work(): Promise<void> {
    while (this.running) {
      const n = this.next++;
      const via = this.options.via();
      const node = via[n % via.length];
      if (node === undefined) throw new Error("no node to call through");
      const sku = this.options.skus[n % this.options.skus.length]!;
      const record: CallRecord = { id: `${this.options.prefix}-${n}`, sku, via: node, startedMs: Date.now(), endedMs: 0, kind: "pending", label: "" };
      this.calls.push(record);
      try {
        await call(this.cluster.clients(node).inventory, "reserve", { skuId: sku, reservationId: record.id, quantity: 1, locationId: "", ttl: undefined }, { deadlineMs: this.options.deadlineMs });
        record.kind = "ok";
        record.label = "ok";
      } catch (error) {
        record.label = labelOf(error);
        record.kind = REFUSALS.has(record.label) ? "refused" : "unknown";
      }
      record.endedMs = Date.now();
    }
  }
}

/**
 * Looks up every call's reservation through `via` and returns the ids that
 * contradict their outcome: acknowledged but absent, or refused but present.
 * Also returns how many reservations exist per SKU.
 */
export async function checkOutcomes(cluster: TestCluster, calls: readonly CallRecord[], via: string): Promise<{ contradictions: string[]; present: Map<string, number> }> {
  const contradictions: string[] = [];
  const present = new Map<string, number>();
  const batch = 64;
  for (let i = 0; i < calls.length; i += batch) {
    await Promise.all(
      calls.slice(i, i + batch).map(async (c) => {
        const exists = await call(cluster.clients(via).inventory, "getReservation", { reservationId: c.id, skuId: c.sku }, { deadlineMs: 10_000 }).then(
          () => true,
          (error: unknown) => {
            if ((error as ServiceError).code === GrpcStatus.NOT_FOUND) return false;
            throw error;
          },
        );
        if (exists) present.set(c.sku, (present.get(c.sku) ?? 0) + 1);
        if (c.kind === "ok" && !exists) contradictions.push(`${c.id} acknowledged but absent`);
        if (c.kind === "refused" && exists) contradictions.push(`${c.id} refused (${c.label}) but present`);
      }),
    );
  }
  return { contradictions, present };
}

/** Polls `probe` until it returns true, failing with `what` at the deadline. */
export async function until(what: string, deadlineMs: number, probe: () => Promise<boolean> | boolean, intervalMs = 50): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await probe()) return Date.now() - started;
    if (Date.now() - started > deadlineMs) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * checkOutcomes once no late call lands any more: a call the client gave up
 * on may still be applied afterwards (it sat in a paused node's socket, whose
 * server counts the gRPC timeout from when it reads the call). Repeats until
 * each SKU's reserved units equal its present reservations with no change
 * across the check, or the deadline passes.
 */
export async function settledOutcomes(
  cluster: TestCluster,
  calls: readonly CallRecord[],
  via: string,
  deadlineMs = 20_000,
): Promise<{ contradictions: string[]; present: Map<string, number>; reserved: Map<string, number>; onHand: Map<string, number> }> {
  const skus = [...new Set(calls.map((c) => c.sku))];
  const read = async (): Promise<{ reserved: Map<string, number>; onHand: Map<string, number> }> => {
    const reserved = new Map<string, number>();
    const onHand = new Map<string, number>();
    for (const sku of skus) {
      const s = await call(cluster.clients(via).inventory, "getSku", { skuId: sku }, { deadlineMs: 10_000 });
      reserved.set(sku, s.reserved);
      onHand.set(sku, s.onHand);
    }
    return { reserved, onHand };
  };
  const end = Date.now() + deadlineMs;
  for (;;) {
    const before = await read();
    const checked = await checkOutcomes(cluster, calls, via);
    const after = await read();
    const stable = skus.every((sku) => before.reserved.get(sku) === after.reserved.get(sku) && after.reserved.get(sku) === (checked.present.get(sku) ?? 0));
    if (stable || Date.now() > end) return { ...checked, ...after };
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
