// The SKU actor: one per SKU, the only writer of that SKU's stock. It turns
// messages into domain decisions (src/domain/sku.ts), emits the events, and
// replies with views once the turn is durable.

import { illegalTransition, notFound, QmError, type QmErrorData, unknownOp } from "../../errors";
import type { AuditRecord } from "../../journal/journal";
import {
  type AdjustCommand,
  type AdjustmentReason,
  applyHold,
  applySkuEvent,
  decideAdjust,
  decideCommit,
  decideDefine,
  decideExpiries,
  decideFulfil,
  decideHold,
  decideRelease,
  decideReserve,
  decideUnfulfil,
  type LevelView,
  newSkuState,
  nextExpiryMs,
  type ReservationView,
  type ReserveColumns,
  type ReserveCommand,
  type SkuPatch,
  type SkuEvent,
  skuEventWeight,
  skuFromSnapshot,
  type SkuSnapshot,
  type SkuState,
  skuToSnapshot,
  skuWeight,
  viewAvailability,
  viewLevel,
  viewReservation,
  viewSku,
} from "../../domain/sku";
import type { ExpiryObserver, ReservationObserver, ReservationOutcome } from "../../observability/observer";
import type { ActorBehavior, TurnContext } from "../runtime/behavior";
import { HoldColumns } from "../../domain/hold_columns";
import { tenantActorId } from "../../security/tenancy";

export const SKU_KIND = "sku";

/** The SKU's actor id in its tenant: `sku/ID` in the default tenant, `sku/TENANT/ID` in another. */
export function skuActorId(skuId: string, tenant: string): string {
  return tenantActorId(SKU_KIND, tenant, skuId);
}

/** Expiries handled per turn; the rest wait for the next turn, which the wake-up time brings at once. */
const EXPIRIES_PER_TURN_MAX = 10_000;

export type SkuMessage =
  | { readonly op: "define"; readonly patch: SkuPatch }
  | { readonly op: "get" }
  | { readonly op: "availability" }
  | { readonly op: "adjust"; readonly cmd: AdjustCommand; readonly note: string }
  | { readonly op: "listAdjustments"; readonly afterSeq: number; readonly limit: number }
  | { readonly op: "reserve"; readonly cmd: ReserveCommand }
  | { readonly op: "reserveBatch"; readonly cmds: readonly ReserveCommand[] }
  | { readonly op: "reserveMany"; readonly cols: ReserveColumns }
  | { readonly op: "getReservation"; readonly id: string }
  | { readonly op: "commit"; readonly id: string }
  | { readonly op: "release"; readonly id: string }
  | { readonly op: "fulfil"; readonly id: string; readonly shipmentId: string; readonly quantity: number }
  | { readonly op: "unfulfil"; readonly id: string; readonly shipmentId: string };

/**
 * One item of a batch: the reservation, or why it failed as plain data (the
 * reply may cross a process boundary, where an Error would lose its class).
 */
export type ReserveBatchOutcome = { readonly ok: true; readonly view: ReservationView } | { readonly ok: false; readonly error: QmErrorData };

/**
 * The answer to "reserveMany": the same outcomes as "reserveBatch" gives, but
 * a hold granted by this message is not an object of its own. Its fields are
 * the command's (id, quantity, ttl), the SKU's id, `atMs` and its location in
 * `locations`, which is usually one string shared by every item. Why: a view
 * and an outcome per item lived for the whole call (tens of ms), so they
 * survived scavenges; per-item objects were the largest part of a batch
 * item's CPU (bench/README.md "ReserveBatch on one hot SKU").
 */
export interface ReserveManyReply {
  /** When every hold this message granted was made (created, updated; expiry = atMs + its ttl). */
  readonly atMs: number;
  /** Per item: the location of the hold this message granted, or null when `others` answers it. */
  readonly locations: readonly (string | null)[];
  /** Per item: the outcome of an item that was not granted now (a known id's reservation, or an error), else null. */
  readonly others: readonly (ReserveBatchOutcome | null)[];
}

/** One entry of the adjustment audit log, as the journal keeps it. */
export interface AdjustmentRecord {
  readonly locationId: string;
  readonly delta: number;
  readonly reason: AdjustmentReason;
  readonly note: string;
  readonly key: string;
  readonly onHandAfter: number;
  /**
   * Who made the change: the caller's subject and tenant, or the system.
   * Absent in records written before the audit named anyone.
   */
  readonly subject?: string;
  readonly tenant?: string;
}

export interface AdjustmentPage {
  readonly records: readonly AuditRecord[];
  /** 0 when there are no more. */
  readonly nextAfterSeq: number;
}

type Ctx = TurnContext<SkuState>;

/** The SKU behavior, reporting the holds it expires and each reservation's outcome (the node counts and logs them). */
export function observedSkuBehavior(observer: ExpiryObserver & ReservationObserver): ActorBehavior<SkuState, SkuMessage> {
  return { ...skuBehavior, onTurnStart: (ctx) => expireDue(ctx, observer), handle: (ctx, m) => handleSku(ctx, m, observer) };
}

function expireDue(ctx: Ctx, observer: ExpiryObserver | undefined): void {
  // Holds past their time are released before anything reads or reserves,
  // so no answer ever counts an expired hold.
  const expired = decideExpiries(ctx.state, ctx.nowMs, EXPIRIES_PER_TURN_MAX);
  if (expired.length > 0) observer?.reservationsExpired(ctx.key, expired.length);
  emitAll(ctx, expired);
}

function emitAll(ctx: Ctx, events: readonly SkuEvent[]): void {
  for (const e of events) ctx.emit(e);
}

export const skuBehavior: ActorBehavior<SkuState, SkuMessage> = {
  kind: SKU_KIND,
  initialState: newSkuState,
  applyEvent: (state, event) => applySkuEvent(state, event as SkuEvent),
  toSnapshot: skuToSnapshot,
  fromSnapshot: (key, snapshot) => skuFromSnapshot(key, snapshot as SkuSnapshot),
  snapshotWeight: skuWeight,
  eventWeight: (event) => skuEventWeight(event as SkuEvent),
  wakeAtMs: nextExpiryMs,
  notFound: (key) => notFound("sku", key),

  onTurnStart(ctx) {
    expireDue(ctx, undefined);
  },

  handle: (ctx, m) => handleSku(ctx, m, undefined),
};

function handleSku(ctx: Ctx, m: SkuMessage, observer: ReservationObserver | undefined): unknown {
  const state = ctx.state;
  switch (m.op) {
    case "define":
      emitAll(ctx, decideDefine(state, m.patch, ctx.nowMs));
      return viewSku(state);
    case "get":
      return viewSku(state);
    case "availability":
      return viewAvailability(state);
    case "adjust":
      return adjust(ctx, m.cmd, m.note);
    case "listAdjustments":
      return listAdjustments(ctx, m.afterSeq, m.limit);
    case "reserve":
      emitAll(ctx, decideObserved(ctx, m.cmd, observer));
      return viewReservation(state, m.cmd.id);
    case "reserveBatch":
      return reserveBatch(ctx, m.cmds, observer);
    case "reserveMany":
      return reserveMany(ctx, m.cols, observer);
    case "getReservation":
      return viewReservation(state, m.id);
    case "commit": {
      emitAll(ctx, decideCommit(state, m.id, ctx.nowMs));
      const view = viewReservation(state, m.id);
      // The hold had lapsed: the expiry is recorded, and the commit fails.
      if (view.state === "EXPIRED") return illegalTransition("reservation", view.state, "commit");
      return view;
    }
    case "release":
      emitAll(ctx, decideRelease(state, m.id, ctx.nowMs));
      return viewReservation(state, m.id);
    case "fulfil":
      emitAll(ctx, decideFulfil(state, m.id, m.shipmentId, m.quantity, ctx.nowMs));
      return viewReservation(state, m.id);
    case "unfulfil":
      emitAll(ctx, decideUnfulfil(state, m.id, m.shipmentId, ctx.nowMs));
      return viewReservation(state, m.id);
    default:
      throw unknownOp("sku", m);
  }
}

/** decideReserve, with its outcome reported: every way a reservation is asked for (Reserve, a batch item, an order's saga) passes here. */
function decideObserved(ctx: Ctx, cmd: ReserveCommand, observer: ReservationObserver | undefined): SkuEvent[] {
  if (observer === undefined) return decideReserve(ctx.state, cmd, ctx.nowMs);
  let events: SkuEvent[];
  try {
    events = decideReserve(ctx.state, cmd, ctx.nowMs);
  } catch (error) {
    observer.reservation(refusalOutcome(error));
    throw error;
  }
  // No event for a known id: the same reservation asked again (an idempotent retry).
  observer.reservation(events.length === 0 ? "replayed" : "reserved");
  return events;
}

function refusalOutcome(error: unknown): ReservationOutcome {
  return error instanceof QmError && error.code === "INSUFFICIENT_STOCK" ? "insufficient_stock" : "rejected";
}

/** The previous release's message (a cluster node of it may still send it): reserveMany's decisions, answered as outcomes. */
function reserveBatch(ctx: Ctx, cmds: readonly ReserveCommand[], observer: ReservationObserver | undefined): ReserveBatchOutcome[] {
  const cols: ReserveColumns = { ids: cmds.map((c) => c.id), quantities: cmds.map((c) => c.quantity), locationIds: cmds.map((c) => c.locationId), ttlsMs: cmds.map((c) => c.ttlMs) };
  const reply = reserveMany(ctx, cols, observer);
  return cmds.map((cmd, i): ReserveBatchOutcome => {
    const locationId = reply.locations[i];
    if (locationId === null || locationId === undefined) return reply.others[i] as ReserveBatchOutcome;
    const view: ReservationView = {
      reservationId: cmd.id,
      skuId: ctx.state.skuId,
      locationId,
      quantity: cmd.quantity,
      state: "RESERVED",
      expiresAtMs: reply.atMs + cmd.ttlMs,
      createdAtMs: reply.atMs,
      updatedAtMs: reply.atMs,
      fulfilledQuantity: 0,
    };
    return { ok: true, view };
  });
}

/**
 * Decides every item in this one turn, so they share one append and one sync.
 * decideHold throws before anything is applied, so a failed item leaves no trace and
 * the items after it are decided on the same state as if it had not been sent.
 * Each granted hold is applied at once (later items see it) and the turn
 * writes them all as one event (reservedCols, hold_columns.ts); the reply is made of the
 * commands and the turn's time, not by looking each hold up again in a map of
 * up to LIVE_RESERVATIONS_PER_SKU_MAX.
 */
function reserveMany(ctx: Ctx, cols: ReserveColumns, observer: ReservationObserver | undefined): ReserveManyReply {
  const state = ctx.state;
  const n = cols.ids.length;
  if (cols.quantities.length !== n || cols.locationIds.length !== n || cols.ttlsMs.length !== n) throw new Error(`reserveMany columns of unequal lengths`);
  const locations: (string | null)[] = new Array<string | null>(n).fill(null);
  const others: (ReserveBatchOutcome | null)[] = new Array<ReserveBatchOutcome | null>(n).fill(null);
  const holds = new HoldColumns();
  const { ids, quantities, locationIds, ttlsMs } = cols;
  const atMs = ctx.nowMs;
  try {
    for (let i = 0; i < n; i++) {
      // The fields one by one, not a command, events and an event per item (decideObserved's way): fewer objects per item.
      const id = ids[i] as string;
      const quantity = quantities[i] as number;
      const ttlMs = ttlsMs[i] as number;
      let locationId: string | null;
      try {
        locationId = decideHold(state, id, quantity, locationIds[i] as string, ttlMs);
      } catch (error) {
        observer?.reservation(refusalOutcome(error));
        if (!(error instanceof QmError)) throw error;
        others[i] = { ok: false, error: error.toJSON() };
        continue;
      }
      if (locationId === null) {
        observer?.reservation("replayed");
        others[i] = { ok: true, view: viewReservation(state, id) };
        continue;
      }
      observer?.reservation("reserved");
      applyHold(state, id, locationId, quantity, ttlMs, atMs);
      holds.add(id, locationId, quantity, ttlMs);
      locations[i] = locationId;
    }
  } finally {
    // Queued even when something threw: the holds are in the state, so the
    // turn must see this message as half done and rebuild from the journal.
    if (holds.size > 0) ctx.emitApplied(holds.event(atMs) satisfies SkuEvent);
  }
  return { atMs: ctx.nowMs, locations, others };
}

function adjust(ctx: Ctx, cmd: AdjustCommand, note: string): LevelView {
  const { events, replay } = decideAdjust(ctx.state, cmd, ctx.nowMs);
  if (replay !== undefined) return replay;
  emitAll(ctx, events);
  const level = viewLevel(ctx.state, cmd.locationId);
  const record: AdjustmentRecord = {
    locationId: cmd.locationId,
    delta: cmd.delta,
    reason: cmd.reason,
    note,
    key: cmd.key,
    onHandAfter: level.onHand,
    subject: ctx.who.subject,
    tenant: ctx.who.tenant,
  };
  ctx.audit({ seq: ctx.state.adjustmentSeq, atMs: ctx.nowMs, data: record });
  return level;
}

async function listAdjustments(ctx: Ctx, afterSeq: number, limit: number): Promise<AdjustmentPage> {
  viewSku(ctx.state); // NOT_FOUND for an unknown SKU
  const records = await ctx.readAudit(afterSeq, limit + 1);
  const more = records.length > limit;
  const page = more ? records.slice(0, limit) : records;
  const last = page[page.length - 1];
  return { records: page, nextAfterSeq: more && last !== undefined ? last.seq : 0 };
}

