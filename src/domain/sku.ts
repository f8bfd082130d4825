// The SKU state machine: stock levels per location, reservations and the
// adjustment audit trail. Pure: no I/O, no timers; time is an argument.
//
// Each command is decided against the current state (decide* functions check
// every rule and return the events, or throw a QmError before any change);
// applySkuEvent folds an event into the state. The actor persists the events,
// so the state after recovery is exactly the fold of the journal.
//
// Quantities, per location:  available = on_hand - reserved - committed (shown >= 0)
//            per SKU:        available = on_hand - reserved - committed - safety_stock
// Invariant (asserted after every event):
//   reserved + committed <= on_hand + backorder allowance, at SKU level,
//   and every counter >= 0.

import { assert, illegalTransition, notFound, QmError, unknownEvent } from "../errors";
import {
  ADJUSTMENT_KEYS_PER_SKU_MAX,
  ATTRIBUTES_MAX,
  BACKORDER_UNITS_MAX,
  ENDED_RESERVATIONS_PER_SKU_MAX,
  LIVE_RESERVATIONS_PER_SKU_MAX,
  LOCATIONS_PER_SKU_MAX,
  ON_HAND_MAX,
  STALE_EXPIRIES_SLACK,
} from "../limits";
import { MinHeap } from "../util/min_heap";
import { forEachHold, holdCount, type ReservedColsEvent, type ReservedManyEvent } from "./hold_columns";

export type AdjustmentReason = "RECEIVED" | "CORRECTION" | "DAMAGED" | "CYCLE_COUNT" | "RETURNED";
export type ReservationStatus = "RESERVED" | "COMMITTED" | "RELEASED" | "EXPIRED" | "FULFILLED";

/** One attribute, as a key and value. */
export type Attribute = readonly [key: string, value: string];

export interface SkuDefinition {
  readonly title: string;
  readonly priceMinor: number;
  readonly currency: string;
  readonly safetyStock: number;
  readonly lowStockThreshold: number;
  readonly allowBackorder: boolean;
  /**
   * Sorted by key, each key once. Pairs rather than an object, in memory and in
   * the journal: an object key such as `__proto__` is special to JavaScript
   * (assigning it sets the prototype) and to msgpackr (it renames it on decode).
   */
  readonly attributes: readonly Attribute[];
}

/** Per-key attribute edits: the keys in `set` take these values, those in `remove` go, every other key stays. */
export interface AttributeEdits {
  readonly set: readonly Attribute[];
  readonly remove: readonly string[];
}

/**
 * What an UpsertSku changes: a field that is absent keeps its value (or its
 * default when the SKU is created). `attributes` as an array replaces them all.
 * A whole SkuDefinition is a patch that replaces everything.
 */
export interface SkuPatch {
  readonly title?: string;
  readonly priceMinor?: number;
  readonly currency?: string;
  readonly safetyStock?: number;
  readonly lowStockThreshold?: number;
  readonly allowBackorder?: boolean;
  readonly attributes?: readonly Attribute[] | AttributeEdits;
}

/**
 * Where a backorder SKU without any stock location holds its pre-orders when the
 * request names none: a reservation needs a location, and the first delivery may
 * be received here (or the caller names the location it will arrive at).
 */
export const BACKORDER_DEFAULT_LOCATION_ID = "default";

interface Level {
  onHand: number;
  reserved: number;
  committed: number;
}

interface ReservationRecord {
  readonly id: string;
  readonly locationId: string;
  readonly quantity: number;
  /** The TTL the first request asked for: a retry with another TTL is a different request. */
  readonly ttlMs: number;
  status: ReservationStatus;
  /** Set while RESERVED; null once committed or ended. */
  expiresAtMs: number | null;
  readonly createdAtMs: number;
  updatedAtMs: number;
  /**
   * Units shipped so far, per shipment id: makes fulfil and its undo idempotent.
   * No prototype, so that no shipment id is special; snapshots store it as entries.
   * Null until the first shipment: a hot SKU holds up to LIVE_RESERVATIONS_PER_SKU_MAX
   * records, and an empty dictionary object was 43% of each one's heap (184 of 429 bytes).
   */
  shipped: Record<string, number> | null;
  fulfilled: number;
}

interface AdjustmentOutcome {
  readonly locationId: string;
  readonly delta: number;
  readonly reason: AdjustmentReason;
  readonly level: LevelView;
}

export interface SkuState {
  readonly skuId: string;
  def: SkuDefinition | null;
  createdAtMs: number;
  updatedAtMs: number;
  /** Number of events applied: the journal sequence, so it grows with every change. */
  version: number;
  levels: Map<string, Level>;
  onHand: number;
  reserved: number;
  committed: number;
  /** RESERVED and COMMITTED reservations. */
  live: Map<string, ReservationRecord>;
  /**
   * Ended reservations, oldest first, kept so that a retried id gets the same
   * answer. This map and adjustmentKeys are created on their first entry: most
   * SKUs of a large catalogue never end a hold or see a keyed adjustment while
   * resident, and an empty Map is about 190 bytes of heap per actor.
   */
  ended: Map<string, ReservationRecord> | null;
  adjustmentSeq: number;
  /** Adjustment idempotency keys, oldest first; null until the first one. */
  adjustmentKeys: Map<string, AdjustmentOutcome> | null;
  /**
   * Expiry times of RESERVED reservations. Entries of holds that have moved on
   * are skipped lazily, and the heap is rebuilt once they outnumber the holds
   * still RESERVED, so its size follows live holds, not traffic.
   */
  expiries: MinHeap<string>;
  /** Live reservations in state RESERVED: what the expiry heap must hold. */
  reservedHolds: number;
}

// ---- Events -----------------------------------------------------------------

export type SkuEvent =
  | { readonly t: "defined"; readonly def: SkuDefinition; readonly atMs: number }
  | {
      readonly t: "adjusted";
      readonly seq: number;
      readonly locationId: string;
      readonly delta: number;
      readonly reason: AdjustmentReason;
      readonly key: string;
      readonly atMs: number;
    }
  | {
      readonly t: "reserved";
      readonly id: string;
      readonly locationId: string;
      readonly quantity: number;
      readonly expiresAtMs: number;
      /** Absent in events written before it was recorded: then expiresAtMs - atMs, which is what it was. */
      readonly ttlMs?: number;
      readonly atMs: number;
    }
  /**
   * The holds one ReserveBatch message granted on this SKU, in request order, all at atMs: one
   * journal record instead of one per hold (packing, checksumming and storing a record per item
   * was a third of a batch item's CPU, bench/README.md "ReserveBatch on one hot SKU"). Applying it
   * is applying a "reserved" event per hold in order, and it counts one version per hold.
   * reservedCols (journal format 5, hold_columns.ts) carries them as columns; reservedMany
   * (format 4) as tuples, still written when an id does not fit the columns.
   */
  | ReservedManyEvent
  | ReservedColsEvent
  | { readonly t: "committed"; readonly id: string; readonly atMs: number }
  | { readonly t: "released"; readonly id: string; readonly atMs: number }
  | { readonly t: "expired"; readonly id: string; readonly atMs: number }
  | { readonly t: "fulfilled"; readonly id: string; readonly shipmentId: string; readonly quantity: number; readonly atMs: number }
  | { readonly t: "unfulfilled"; readonly id: string; readonly shipmentId: string; readonly atMs: number };

export type { HoldTuple } from "./hold_columns";

/** How many single changes an event stands for: what snapshot spacing counts, since a replay costs that much. */
export function skuEventWeight(e: SkuEvent): number {
  return e.t === "reservedMany" ? e.holds.length : e.t === "reservedCols" ? holdCount(e) : 1;
}

// ---- Views (what replies carry) ----------------------------------------------

export interface LevelView {
  readonly locationId: string;
  readonly onHand: number;
  readonly reserved: number;
  readonly committed: number;
  readonly available: number;
}

export interface SkuView {
  readonly skuId: string;
  readonly def: SkuDefinition;
  readonly levels: LevelView[];
  readonly onHand: number;
  readonly reserved: number;
  readonly committed: number;
  readonly available: number;
  readonly lowStock: boolean;
  readonly version: number;
  readonly createdAtMs: number;
  readonly updatedAtMs: number;
}

export interface AvailabilityView {
  readonly skuId: string;
  readonly found: boolean;
  readonly onHand: number;
  readonly reserved: number;
  readonly committed: number;
  readonly available: number;
  readonly version: number;
}

export interface ReservationView {
  readonly reservationId: string;
  readonly skuId: string;
  readonly locationId: string;
  readonly quantity: number;
  readonly state: ReservationStatus;
  readonly expiresAtMs: number | null;
  readonly createdAtMs: number;
  readonly updatedAtMs: number;
  readonly fulfilledQuantity: number;
}

// ---- Commands -----------------------------------------------------------------

export interface AdjustCommand {
  readonly locationId: string;
  readonly delta: number;
  readonly reason: AdjustmentReason;
  /** Empty: not idempotent. */
  readonly key: string;
}

export interface ReserveCommand {
  readonly id: string;
  readonly quantity: number;
  /** Empty: the location with the most available units. */
  readonly locationId: string;
  readonly ttlMs: number;
}

/**
 * The commands of a batch on one SKU as columns: command i's fields in
 * position i of each. A batch's items then make no object each on their way
 * to the actor (bench/README.md "ReserveBatch on one hot SKU").
 */
export interface ReserveColumns {
  readonly ids: readonly string[];
  readonly quantities: readonly number[];
  readonly locationIds: readonly string[];
  readonly ttlsMs: readonly number[];
}

// ---- State ----------------------------------------------------------------------

export function newSkuState(skuId: string): SkuState {
  return {
    skuId,
    def: null,
    createdAtMs: 0,
    updatedAtMs: 0,
    version: 0,
    levels: new Map(),
    onHand: 0,
    reserved: 0,
    committed: 0,
    live: new Map(),
    ended: null,
    adjustmentSeq: 0,
    adjustmentKeys: null,
    expiries: new MinHeap(),
    reservedHolds: 0,
  };
}

function backorderAllowance(state: SkuState): number {
  return state.def?.allowBackorder ? BACKORDER_UNITS_MAX : 0;
}

function levelAvailable(level: Level): number {
  return Math.max(0, level.onHand - level.reserved - level.committed);
}

/** Units that can still be reserved, allowing for safety stock and backorders; may be negative. */
function reservable(state: SkuState): number {
  const safety = state.def?.safetyStock ?? 0;
  return state.onHand + backorderAllowance(state) - state.reserved - state.committed - safety;
}

export function skuAvailable(state: SkuState): number {
  const safety = state.def?.safetyStock ?? 0;
  return Math.max(0, state.onHand - state.reserved - state.committed - safety);
}

function requireDefined(state: SkuState): SkuDefinition {
  if (state.def === null) throw notFound("sku", state.skuId);
  return state.def;
}

function findReservation(state: SkuState, id: string): ReservationRecord | undefined {
  return state.live.get(id) ?? state.ended?.get(id);
}

function requireReservation(state: SkuState, id: string): ReservationRecord {
  const r = findReservation(state, id);
  if (r === undefined) throw notFound("reservation", id);
  return r;
}

// ---- Decisions ------------------------------------------------------------------

/** A patch applied to the current definition, or to the defaults when the SKU is new. */
export function decideDefine(state: SkuState, patch: SkuPatch, nowMs: number): SkuEvent[] {
  const def = mergeDefinition(state, patch);
  if (state.def !== null && sameDefinition(state.def, def)) return [];
  // Units held beyond on-hand stock are legal only while backorders are allowed:
  // turning them off then would break the invariant that applying the event asserts.
  const held = state.reserved + state.committed;
  if (!def.allowBackorder && held > state.onHand) {
    throw new QmError(
      "FAILED_PRECONDITION",
      `sku ${state.skuId} holds ${held} units with ${state.onHand} on hand: backorders cannot be turned off yet`,
      { reason: "STOCK_HELD", on_hand: String(state.onHand), held: String(held) },
    );
  }
  return [{ t: "defined", def, atMs: nowMs }];
}

function mergeDefinition(state: SkuState, patch: SkuPatch): SkuDefinition {
  const base = state.def;
  if (base === null) {
    // A SKU without a title or a currency cannot be shown or priced, so creating one needs both.
    const missing = (["title", "currency"] as const).filter((f) => patch[f] === undefined);
    if (missing.length > 0) {
      throw new QmError(
        "INVALID_ARGUMENT",
        `${missing[0] as string}: is required to create sku ${state.skuId}`,
        {},
        missing.map((field) => ({ field, description: `is required to create sku ${state.skuId}` })),
      );
    }
  }
  const attributes = mergeAttributes(base?.attributes ?? [], patch.attributes);
  if (attributes.length > ATTRIBUTES_MAX) {
    throw new QmError("INVALID_ARGUMENT", `attributes: at most ${ATTRIBUTES_MAX} entries`, {}, [
      { field: "attributes", description: `at most ${ATTRIBUTES_MAX} entries (${attributes.length} after this change)` },
    ]);
  }
  return {
    title: patch.title ?? base?.title ?? "",
    priceMinor: patch.priceMinor ?? base?.priceMinor ?? 0,
    currency: patch.currency ?? base?.currency ?? "",
    safetyStock: patch.safetyStock ?? base?.safetyStock ?? 0,
    lowStockThreshold: patch.lowStockThreshold ?? base?.lowStockThreshold ?? 0,
    allowBackorder: patch.allowBackorder ?? base?.allowBackorder ?? false,
    attributes,
  };
}

function mergeAttributes(current: readonly Attribute[], patch: SkuPatch["attributes"]): readonly Attribute[] {
  if (patch === undefined) return current;
  const map = new Map<string, string>(isAttributeList(patch) ? [] : current);
  if (isAttributeList(patch)) {
    for (const [k, v] of patch) map.set(k, v);
  } else {
    for (const k of patch.remove) map.delete(k);
    for (const [k, v] of patch.set) map.set(k, v);
  }
  return sortedAttributes(map);
}

function isAttributeList(a: readonly Attribute[] | AttributeEdits): a is readonly Attribute[] {
  return Array.isArray(a);
}

function sortedAttributes(entries: Iterable<Attribute>): Attribute[] {
  return [...entries].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function sameDefinition(a: SkuDefinition, b: SkuDefinition): boolean {
  return (
    a.title === b.title &&
    a.priceMinor === b.priceMinor &&
    a.currency === b.currency &&
    a.safetyStock === b.safetyStock &&
    a.lowStockThreshold === b.lowStockThreshold &&
    a.allowBackorder === b.allowBackorder &&
    a.attributes.length === b.attributes.length &&
    a.attributes.every(([k, v], i) => b.attributes[i]?.[0] === k && b.attributes[i]?.[1] === v)
  );
}

/**
 * Definitions written before attributes became sorted pairs stored them as an
 * object; read them as pairs (a `__proto__` key was already lost when they were written).
 */
function normalisedDefinition(def: SkuDefinition): SkuDefinition {
  const attributes: unknown = def.attributes;
  if (Array.isArray(attributes)) return def;
  return { ...def, attributes: sortedAttributes(Object.entries(attributes as Record<string, string>)) };
}

/** Returns the events, or the earlier outcome of the same idempotency key (no events). */
export function decideAdjust(
  state: SkuState,
  cmd: AdjustCommand,
  nowMs: number,
): { events: SkuEvent[]; replay: LevelView | undefined } {
  requireDefined(state);
  if (cmd.key !== "") {
    const earlier = state.adjustmentKeys?.get(cmd.key);
    if (earlier !== undefined) {
      if (earlier.locationId !== cmd.locationId || earlier.delta !== cmd.delta || earlier.reason !== cmd.reason) {
        throw new QmError("ALREADY_EXISTS", `idempotency_key ${cmd.key} was used for a different adjustment`, {
          reason: "IDEMPOTENCY_KEY_REUSED",
        });
      }
      return { events: [], replay: earlier.level };
    }
  }
  const level = state.levels.get(cmd.locationId);
  if (level === undefined && state.levels.size >= LOCATIONS_PER_SKU_MAX) {
    throw new QmError("LIMIT_EXCEEDED", `sku ${state.skuId} already has ${LOCATIONS_PER_SKU_MAX} locations`);
  }
  const onHand = level?.onHand ?? 0;
  const held = (level?.reserved ?? 0) + (level?.committed ?? 0);
  const after = onHand + cmd.delta;
  if (after > ON_HAND_MAX) {
    throw new QmError("LIMIT_EXCEEDED", `on_hand at ${cmd.locationId} would exceed ${ON_HAND_MAX}`);
  }
  // Stock that is held for customers cannot be written off. A backorder SKU
  // may already hold more than it has, so there the rule is: never below zero,
  // and never further beyond the SKU-wide allowance. A receipt only adds, so held
  // stock never refuses it: a level may hold more than it has (left by a former backorder SKU).
  const floor = state.def?.allowBackorder ? 0 : held;
  const skuHeldBeyondAllowance = state.reserved + state.committed - backorderAllowance(state);
  if (cmd.delta < 0 && (after < floor || state.onHand + cmd.delta < skuHeldBeyondAllowance)) {
    throw new QmError(
      "FAILED_PRECONDITION",
      `on_hand at ${cmd.locationId} would drop to ${after}, below the ${held} units reserved or committed there`,
      { reason: "STOCK_HELD", on_hand: String(onHand), held: String(held) },
    );
  }
  return {
    events: [
      {
        t: "adjusted",
        seq: state.adjustmentSeq + 1,
        locationId: cmd.locationId,
        delta: cmd.delta,
        reason: cmd.reason,
        key: cmd.key,
        atMs: nowMs,
      },
    ],
    replay: undefined,
  };
}

/**
 * Returns the events, or none when the id is already known with the same
 * request (the retry gets the reservation as it is now).
 */
export function decideReserve(state: SkuState, cmd: ReserveCommand, nowMs: number): SkuEvent[] {
  const locationId = decideHold(state, cmd.id, cmd.quantity, cmd.locationId, cmd.ttlMs);
  if (locationId === null) return [];
  return [
    {
      t: "reserved",
      id: cmd.id,
      locationId,
      quantity: cmd.quantity,
      expiresAtMs: nowMs + cmd.ttlMs,
      ttlMs: cmd.ttlMs,
      atMs: nowMs,
    },
  ];
}

/**
 * decideReserve's rules for one command given as its fields: the location the
 * hold takes, or null when the id is already known with the same request.
 * Throws as decideReserve does. Fields rather than a command and an event: a
 * ReserveBatch decides up to RESERVE_BATCH_ITEMS_MAX of these in one turn, and
 * the objects per item were a share of its CPU (bench/README.md "ReserveBatch
 * on one hot SKU", fourth round). applyHold is its other half.
 */
export function decideHold(state: SkuState, id: string, quantity: number, locationIdAsked: string, ttlMs: number): string | null {
  const def = requireDefined(state);
  const existing = findReservation(state, id);
  if (existing !== undefined) {
    checkSameReservation(existing, id, quantity, locationIdAsked, ttlMs);
    return null;
  }
  if (state.live.size >= LIVE_RESERVATIONS_PER_SKU_MAX) {
    throw new QmError("LIMIT_EXCEEDED", `sku ${state.skuId} holds ${LIVE_RESERVATIONS_PER_SKU_MAX} live reservations`);
  }
  const skuRoom = reservable(state);
  // A backorder SKU takes pre-orders before its first delivery: at the named
  // location, or at the default one when it has none yet.
  const locationId =
    locationIdAsked !== "" ? locationIdAsked : (pickLocation(state) ?? (def.allowBackorder ? BACKORDER_DEFAULT_LOCATION_ID : undefined));
  const level = locationId === undefined ? undefined : state.levels.get(locationId);
  if (def.allowBackorder && level === undefined && state.levels.size >= LOCATIONS_PER_SKU_MAX) {
    throw new QmError("LIMIT_EXCEEDED", `sku ${state.skuId} already has ${LOCATIONS_PER_SKU_MAX} locations`);
  }
  // A backorder SKU's allowance is SKU-wide, so only the SKU total limits it.
  const levelRoom = def.allowBackorder
    ? Number.MAX_SAFE_INTEGER
    : level === undefined
      ? 0
      : level.onHand - level.reserved - level.committed;
  if (locationId === undefined || quantity > skuRoom || quantity > levelRoom) {
    const available = String(Math.max(0, Math.min(skuRoom, levelRoom)));
    throw new QmError(
      "INSUFFICIENT_STOCK",
      `sku ${state.skuId}: ${quantity} requested, ${available} available` + (locationIdAsked === "" ? "" : ` at ${locationIdAsked}`),
      { sku_id: state.skuId, requested: String(quantity), available },
    );
  }
  return locationId;
}

/**
 * A reused reservation id must carry the first request again. The TTL is compared
 * as requested, not as an expiry, since a retry computes its expiry from its own
 * time. Holds of an order (ids with "/", which clients cannot use) are re-asked
 * by a resumed saga with the time its order has left, so their TTL is not compared.
 */
function checkSameReservation(existing: ReservationRecord, id: string, quantity: number, locationId: string, ttlMs: number): void {
  const differs: string[] = [];
  if (existing.quantity !== quantity) differs.push("quantity");
  if (locationId !== "" && locationId !== existing.locationId) differs.push("location");
  if (!id.includes("/") && existing.ttlMs !== ttlMs) differs.push("ttl");
  if (differs.length > 0) {
    throw new QmError("ALREADY_EXISTS", `reservation ${id} exists with a different ${differs.join(" and ")}`, {
      reason: "IDEMPOTENCY_KEY_REUSED",
    });
  }
}

/** The location with the most free units (ties: the smallest id), for a request without one. A hold never spans locations. */
function pickLocation(state: SkuState): string | undefined {
  let best: string | undefined;
  let bestFree = -Infinity;
  for (const [id, level] of state.levels) {
    const free = level.onHand - level.reserved - level.committed;
    if (free > bestFree || (free === bestFree && best !== undefined && id < best)) {
      best = id;
      bestFree = free;
    }
  }
  return best;
}

export function decideCommit(state: SkuState, id: string, nowMs: number): SkuEvent[] {
  requireDefined(state);
  const r = requireReservation(state, id);
  if (r.status === "COMMITTED" || r.status === "FULFILLED") return [];
  if (r.status === "RESERVED") {
    // A hold past its expiry is gone even if the expiry turn has not run yet.
    if (r.expiresAtMs !== null && r.expiresAtMs <= nowMs) {
      return [{ t: "expired", id, atMs: nowMs }];
    }
    return [{ t: "committed", id, atMs: nowMs }];
  }
  throw illegalTransition("reservation", r.status, "commit");
}

export function decideRelease(state: SkuState, id: string, nowMs: number): SkuEvent[] {
  requireDefined(state);
  const r = requireReservation(state, id);
  if (r.status === "RELEASED" || r.status === "EXPIRED") return [];
  if (r.status === "FULFILLED" || r.fulfilled > 0) throw illegalTransition("reservation", r.status, "release (units shipped)");
  return [{ t: "released", id, atMs: nowMs }];
}

/** Ships units of a committed reservation: on_hand and committed both drop. */
export function decideFulfil(state: SkuState, id: string, shipmentId: string, quantity: number, nowMs: number): SkuEvent[] {
  requireDefined(state);
  const r = requireReservation(state, id);
  if (r.shipped?.[shipmentId] !== undefined) return [];
  if (r.status !== "COMMITTED") throw illegalTransition("reservation", r.status, "fulfil");
  if (quantity > r.quantity - r.fulfilled) {
    throw new QmError("FAILED_PRECONDITION", `reservation ${id}: ${quantity} to ship, ${r.quantity - r.fulfilled} left`);
  }
  const level = state.levels.get(r.locationId);
  if (level === undefined || level.onHand < quantity) {
    throw new QmError("INSUFFICIENT_STOCK", `sku ${state.skuId}: ${quantity} to ship, ${level?.onHand ?? 0} on hand at ${r.locationId}`, {
      sku_id: state.skuId,
      requested: String(quantity),
      available: String(level?.onHand ?? 0),
    });
  }
  return [{ t: "fulfilled", id, shipmentId, quantity, atMs: nowMs }];
}

/** Undoes one shipment's fulfilment: the compensation of a shipment that failed on another SKU. */
export function decideUnfulfil(state: SkuState, id: string, shipmentId: string, nowMs: number): SkuEvent[] {
  requireDefined(state);
  const r = requireReservation(state, id);
  if (r.shipped?.[shipmentId] === undefined) return [];
  return [{ t: "unfulfilled", id, shipmentId, atMs: nowMs }];
}

/** Expiry events for every hold whose time has come, earliest first, at most `max`. */
export function decideExpiries(state: SkuState, nowMs: number, max: number): SkuEvent[] {
  const heap = state.expiries;
  const first = heap.peekKey();
  if (first === undefined || first > nowMs) return []; // the common case: nothing due
  const events: SkuEvent[] = [];
  const seen = new Set<string>();
  while (events.length < max) {
    const at = heap.peekKey();
    if (at === undefined || at > nowMs) break;
    const id = heap.pop() as string;
    const r = state.live.get(id);
    if (r === undefined || r.status !== "RESERVED" || r.expiresAtMs !== at || seen.has(id)) continue;
    seen.add(id);
    events.push({ t: "expired", id, atMs: nowMs });
  }
  return events;
}

/** When the next hold expires, or null. Drops stale heap entries on the way. */
export function nextExpiryMs(state: SkuState): number | null {
  const heap = state.expiries;
  for (;;) {
    const at = heap.peekKey();
    if (at === undefined) return null;
    const r = state.live.get(heap.peekValue() as string);
    if (r !== undefined && r.status === "RESERVED" && r.expiresAtMs === at) return at;
    heap.pop();
  }
}

// ---- Applying events ----------------------------------------------------------

export function applySkuEvent(state: SkuState, e: SkuEvent): void {
  if (e.t === "reservedMany") {
    applyReservedMany(state, e);
    return;
  }
  if (e.t === "reservedCols") {
    applyReservedCols(state, e);
    return;
  }
  switch (e.t) {
    case "defined":
      applyDefined(state, e);
      break;
    case "adjusted":
      applyAdjusted(state, e);
      break;
    case "reserved":
    case "committed":
    case "released":
    case "expired":
      applyHoldEvent(state, e);
      break;
    case "fulfilled":
    case "unfulfilled":
      applyShipmentEvent(state, e);
      break;
    default:
      throw unknownEvent("sku", e);
  }
  state.version += 1;
  state.updatedAtMs = e.atMs;
  assertSkuInvariants(state);
}

type EventOf<T extends SkuEvent["t"]> = Extract<SkuEvent, { readonly t: T }>;

/** Exactly as a "reserved" event per hold, in order, would leave the state (version included). */
function applyReservedMany(state: SkuState, e: EventOf<"reservedMany">): void {
  for (const [id, locationId, quantity, ttlMs] of e.holds) {
    addHold(state, id, locationId, quantity, ttlMs, e.atMs + ttlMs, e.atMs);
    state.version += 1;
  }
  state.updatedAtMs = e.atMs;
  assertSkuInvariants(state);
}

/** As applyReservedMany: the same holds in the same order. */
function applyReservedCols(state: SkuState, e: ReservedColsEvent): void {
  const atMs = e.atMs;
  forEachHold(e, (id, locationId, quantity, ttlMs) => {
    addHold(state, id, locationId, quantity, ttlMs, atMs + ttlMs, atMs);
    state.version += 1;
  });
  state.updatedAtMs = atMs;
  assertSkuInvariants(state);
}

/**
 * Applies the hold decideHold granted, as applying its "reserved" event would
 * (version, time and invariants included), without making the event: the
 * caller journals the holds it applied (a reservedMany event).
 */
export function applyHold(state: SkuState, id: string, locationId: string, quantity: number, ttlMs: number, atMs: number): void {
  addHold(state, id, locationId, quantity, ttlMs, atMs + ttlMs, atMs);
  state.version += 1;
  state.updatedAtMs = atMs;
  assertSkuInvariants(state);
}

function addHold(state: SkuState, id: string, locationId: string, quantity: number, ttlMs: number, expiresAtMs: number, atMs: number): void {
  const r: ReservationRecord = {
    id,
    locationId,
    quantity,
    ttlMs,
    status: "RESERVED",
    expiresAtMs,
    createdAtMs: atMs,
    updatedAtMs: atMs,
    shipped: null,
    fulfilled: 0,
  };
  state.live.set(id, r);
  state.expiries.push(expiresAtMs, id);
  state.reservedHolds += 1;
  // A backorder SKU may hold pre-orders at a location that has received nothing yet.
  levelOrNew(state, locationId).reserved += quantity;
  state.reserved += quantity;
}

function applyDefined(state: SkuState, e: EventOf<"defined">): void {
  if (state.def === null) state.createdAtMs = e.atMs;
  state.def = normalisedDefinition(e.def);
}

function applyAdjusted(state: SkuState, e: EventOf<"adjusted">): void {
  const level = levelOrNew(state, e.locationId);
  level.onHand += e.delta;
  state.onHand += e.delta;
  state.adjustmentSeq = e.seq;
  if (e.key !== "") {
    const outcome = { locationId: e.locationId, delta: e.delta, reason: e.reason, level: levelView(e.locationId, level) };
    remember((state.adjustmentKeys ??= new Map()), e.key, outcome, ADJUSTMENT_KEYS_PER_SKU_MAX);
  }
}

/** A hold's life: reserved, then committed, released or expired. */
function applyHoldEvent(state: SkuState, e: EventOf<"reserved" | "committed" | "released" | "expired">): void {
  if (e.t === "reserved") {
    addHold(state, e.id, e.locationId, e.quantity, e.ttlMs ?? e.expiresAtMs - e.atMs, e.expiresAtMs, e.atMs);
    return;
  }
  const r = liveReservation(state, e.id);
  const level = levelOf(state, r.locationId);
  if (e.t === "committed") {
    assert(r.status === "RESERVED", `commit of ${r.status} reservation ${e.id}`);
    level.reserved -= r.quantity;
    level.committed += r.quantity;
    state.reserved -= r.quantity;
    state.committed += r.quantity;
  } else if (r.status === "RESERVED") {
    level.reserved -= r.quantity;
    state.reserved -= r.quantity;
  } else {
    const open = r.quantity - r.fulfilled;
    level.committed -= open;
    state.committed -= open;
  }
  if (r.status === "RESERVED") leaveReserved(state);
  r.status = e.t === "committed" ? "COMMITTED" : e.t === "released" ? "RELEASED" : "EXPIRED";
  r.expiresAtMs = null;
  r.updatedAtMs = e.atMs;
  if (e.t !== "committed") endReservation(state, r);
}

/** Units of a committed hold leave with a shipment, or come back when the shipment is undone. */
function applyShipmentEvent(state: SkuState, e: EventOf<"fulfilled" | "unfulfilled">): void {
  const r = state.live.get(e.id) ?? state.ended?.get(e.id);
  assert(r !== undefined, `${e.t} of unknown reservation ${e.id}`);
  assert(e.t === "unfulfilled" || state.live.has(e.id), `fulfil of reservation ${e.id} that is not live`);
  const level = levelOf(state, r.locationId);
  const quantity = e.t === "fulfilled" ? e.quantity : -(r.shipped?.[e.shipmentId] ?? 0);
  if (e.t === "fulfilled") (r.shipped ??= Object.create(null) as Record<string, number>)[e.shipmentId] = e.quantity;
  else if (r.shipped !== null) {
    delete r.shipped[e.shipmentId];
    // As a snapshot restores it: no shipment left is null.
    if (Object.keys(r.shipped).length === 0) r.shipped = null;
  }
  r.fulfilled += quantity;
  r.updatedAtMs = e.atMs;
  level.onHand -= quantity;
  level.committed -= quantity;
  state.onHand -= quantity;
  state.committed -= quantity;
  if (e.t === "fulfilled" && r.fulfilled === r.quantity) {
    r.status = "FULFILLED";
    endReservation(state, r);
  } else if (e.t === "unfulfilled" && r.status === "FULFILLED") {
    r.status = "COMMITTED";
    state.ended?.delete(r.id);
    state.live.set(r.id, r);
  }
}

/**
 * A hold left RESERVED, so its heap entry is stale. Once stale entries outnumber
 * the RESERVED holds (plus a slack), the heap is rebuilt from them: O(live) work
 * at most once per that many ended holds, so the heap stays within
 * 2 x RESERVED holds + slack, whatever the traffic.
 */
function leaveReserved(state: SkuState): void {
  state.reservedHolds -= 1;
  if (state.expiries.size > 2 * state.reservedHolds + STALE_EXPIRIES_SLACK) rebuildExpiries(state);
}

function rebuildExpiries(state: SkuState): void {
  state.expiries.clear();
  for (const r of state.live.values()) {
    if (r.status === "RESERVED" && r.expiresAtMs !== null) state.expiries.push(r.expiresAtMs, r.id);
  }
}

function endReservation(state: SkuState, r: ReservationRecord): void {
  state.live.delete(r.id);
  remember((state.ended ??= new Map()), r.id, r, ENDED_RESERVATIONS_PER_SKU_MAX);
}

/** Inserts into an insertion-ordered map used as a bounded FIFO. */
function remember<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > max) {
    const oldest = map.keys().next();
    if (!oldest.done) map.delete(oldest.value);
  }
}

function liveReservation(state: SkuState, id: string): ReservationRecord {
  const r = state.live.get(id);
  assert(r !== undefined, `event for reservation ${id} that is not live`);
  return r;
}

function levelOrNew(state: SkuState, locationId: string): Level {
  let level = state.levels.get(locationId);
  if (level === undefined) {
    level = { onHand: 0, reserved: 0, committed: 0 };
    state.levels.set(locationId, level);
  }
  return level;
}

function levelOf(state: SkuState, locationId: string): Level {
  const level = state.levels.get(locationId);
  assert(level !== undefined, `event for unknown location ${locationId}`);
  return level;
}

function assertSkuInvariants(state: SkuState): void {
  assert(state.reserved >= 0 && state.committed >= 0, `sku ${state.skuId}: negative reserved or committed`);
  assert(
    state.reserved + state.committed <= state.onHand + backorderAllowance(state),
    `sku ${state.skuId}: reserved ${state.reserved} + committed ${state.committed} exceed on_hand ${state.onHand}`,
  );
}

// ---- Views ------------------------------------------------------------------------

function levelView(locationId: string, level: Level): LevelView {
  return {
    locationId,
    onHand: level.onHand,
    reserved: level.reserved,
    committed: level.committed,
    available: levelAvailable(level),
  };
}

export function viewLevel(state: SkuState, locationId: string): LevelView {
  const level = state.levels.get(locationId) ?? { onHand: 0, reserved: 0, committed: 0 };
  return levelView(locationId, level);
}

export function viewSku(state: SkuState): SkuView {
  const def = requireDefined(state);
  const levels: LevelView[] = [];
  for (const [id, level] of state.levels) levels.push(levelView(id, level));
  levels.sort((a, b) => (a.locationId < b.locationId ? -1 : a.locationId > b.locationId ? 1 : 0));
  const available = skuAvailable(state);
  return {
    skuId: state.skuId,
    def,
    levels,
    onHand: state.onHand,
    reserved: state.reserved,
    committed: state.committed,
    available,
    lowStock: available <= def.lowStockThreshold,
    version: state.version,
    createdAtMs: state.createdAtMs,
    updatedAtMs: state.updatedAtMs,
  };
}

export function viewAvailability(state: SkuState): AvailabilityView {
  if (state.def === null) {
    return { skuId: state.skuId, found: false, onHand: 0, reserved: 0, committed: 0, available: 0, version: 0 };
  }
  return {
    skuId: state.skuId,
    found: true,
    onHand: state.onHand,
    reserved: state.reserved,
    committed: state.committed,
    available: skuAvailable(state),
    version: state.version,
  };
}

export function viewReservation(state: SkuState, id: string): ReservationView {
  // An unknown SKU is what is not found, not its reservation.
  requireDefined(state);
  const r = requireReservation(state, id);
  return {
    reservationId: r.id,
    skuId: state.skuId,
    locationId: r.locationId,
    quantity: r.quantity,
    state: r.status,
    expiresAtMs: r.expiresAtMs,
    createdAtMs: r.createdAtMs,
    updatedAtMs: r.updatedAtMs,
    fulfilledQuantity: r.fulfilled,
  };
}

// ---- Snapshots ---------------------------------------------------------------------

/** The plain form a snapshot stores; Maps become entry arrays, the heap is rebuilt. */
/**
 * A reservation as a snapshot stores it: a tuple, `shipped` as entries (which msgpack keeps
 * exactly). A hot SKU's snapshot carries up to LIVE_RESERVATIONS_PER_SKU_MAX of them, and as
 * objects with named fields (the form written before, still read) each cost 4x the CPU to pack
 * and 2.3x the bytes: 100,000 holds took 0.6-0.9 s of the event loop and 16 MB (bench/README.md).
 */
type ReservationTuple = readonly [
  id: string,
  locationId: string,
  quantity: number,
  ttlMs: number,
  status: ReservationStatus,
  expiresAtMs: number | null,
  createdAtMs: number,
  updatedAtMs: number,
  fulfilled: number,
  shipped: [string, number][],
];

/** The object form of earlier snapshots; older ones still had `shipped` as an object and no TTL. */
type ObjectReservation = Omit<ReservationRecord, "shipped" | "ttlMs"> & {
  readonly ttlMs?: number;
  readonly shipped: [string, number][] | Record<string, number>;
};

type SnapshotReservation = ReservationTuple | ObjectReservation;

export interface SkuSnapshot {
  readonly def: SkuDefinition | null;
  readonly createdAtMs: number;
  readonly updatedAtMs: number;
  readonly version: number;
  readonly levels: [string, Level][];
  readonly live: SnapshotReservation[];
  readonly ended: SnapshotReservation[];
  readonly adjustmentSeq: number;
  readonly adjustmentKeys: [string, AdjustmentOutcome][];
}

export function skuToSnapshot(state: SkuState): SkuSnapshot {
  return {
    def: state.def,
    createdAtMs: state.createdAtMs,
    updatedAtMs: state.updatedAtMs,
    version: state.version,
    // Copies, not the live objects: the journal may serialise the snapshot
    // after later turns have changed the levels (pipelined appends), and a
    // snapshot whose levels run ahead of its sequence counts those turns'
    // units twice when its events are replayed on it.
    levels: [...state.levels].map(([id, level]) => [id, { ...level }]),
    live: [...state.live.values()].map(snapshotReservation),
    ended: state.ended === null ? [] : [...state.ended.values()].map(snapshotReservation),
    adjustmentSeq: state.adjustmentSeq,
    adjustmentKeys: state.adjustmentKeys === null ? [] : [...state.adjustmentKeys],
  };
}

function snapshotReservation(r: ReservationRecord): ReservationTuple {
  const shipped = r.shipped === null ? [] : Object.entries(r.shipped);
  return [r.id, r.locationId, r.quantity, r.ttlMs, r.status, r.expiresAtMs, r.createdAtMs, r.updatedAtMs, r.fulfilled, shipped];
}

export function skuFromSnapshot(skuId: string, s: SkuSnapshot): SkuState {
  const state = newSkuState(skuId);
  state.def = s.def === null ? null : normalisedDefinition(s.def);
  state.createdAtMs = s.createdAtMs;
  state.updatedAtMs = s.updatedAtMs;
  state.version = s.version;
  for (const [id, level] of s.levels) {
    state.levels.set(id, { onHand: level.onHand, reserved: level.reserved, committed: level.committed });
    state.onHand += level.onHand;
    state.reserved += level.reserved;
    state.committed += level.committed;
  }
  for (const snapshotted of s.live) {
    const r = restoredReservation(snapshotted);
    state.live.set(r.id, r);
    if (r.status === "RESERVED" && r.expiresAtMs !== null) {
      state.expiries.push(r.expiresAtMs, r.id);
      state.reservedHolds += 1;
    }
  }
  if (s.ended.length > 0) {
    state.ended = new Map(
      s.ended.map((snapshotted) => {
        const r = restoredReservation(snapshotted);
        return [r.id, r];
      }),
    );
  }
  state.adjustmentSeq = s.adjustmentSeq;
  if (s.adjustmentKeys.length > 0) state.adjustmentKeys = new Map(s.adjustmentKeys);
  assertSkuInvariants(state);
  return state;
}

/**
 * Snapshots written before these forms stored `shipped` as an object and no TTL;
 * for a hold that is still RESERVED the TTL is what its expiry says.
 */
function restoredReservation(r: SnapshotReservation): ReservationRecord {
  if (isReservationTuple(r)) {
    const [id, locationId, quantity, ttlMs, status, expiresAtMs, createdAtMs, updatedAtMs, fulfilled, pairs] = r;
    return { id, locationId, quantity, ttlMs, status, expiresAtMs, createdAtMs, updatedAtMs, shipped: shippedFrom(pairs), fulfilled };
  }
  const ttlMs = r.ttlMs ?? (r.expiresAtMs === null ? 0 : r.expiresAtMs - r.createdAtMs);
  const pairs = Array.isArray(r.shipped) ? r.shipped : Object.entries(r.shipped);
  return { ...r, ttlMs, shipped: shippedFrom(pairs) };
}

function isReservationTuple(r: SnapshotReservation): r is ReservationTuple {
  return Array.isArray(r);
}

function shippedFrom(pairs: readonly (readonly [string, number])[]): Record<string, number> | null {
  let shipped: Record<string, number> | null = null;
  for (const [k, v] of pairs) (shipped ??= Object.create(null) as Record<string, number>)[k] = v;
  return shipped;
}

/** How much a snapshot of this state costs to write, in events' worth. */
export function skuWeight(state: SkuState): number {
  return state.live.size + (state.ended?.size ?? 0) + (state.adjustmentKeys?.size ?? 0);
}
