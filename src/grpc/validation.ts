// Every request is checked here, at the edge, before any actor sees it. Each
// function returns the normalised command or throws INVALID_ARGUMENT listing
// every violated field (google.rpc.BadRequest), so bad input changes nothing.

import type { AdjustCommand, AdjustmentReason as DomainReason, ReserveColumns, ReserveCommand, SkuPatch } from "../domain/sku";
import type { LineQuantity, PlaceCommand, ReturnCommand, ShipCommand, TrackCommand, TrackingStatus as DomainTracking } from "../domain/order";
import { type FieldViolation, invalidArgument } from "../errors";
import type { Duration } from "../gen/google/protobuf/duration";
import { ActorKind, type LocateKeyRequest } from "../gen/quartermaster/v1/cluster";
import {
  AdjustmentReason,
  type AdjustStockRequest,
  type GetAvailabilityRequest,
  type ListAdjustmentsRequest,
  type ReserveBatchRequest,
  type ReserveRequest,
  type UpsertSkuRequest,
} from "../gen/quartermaster/v1/inventory";
import {
  type CreateOrderRequest,
  type CreateShipmentRequest,
  type LineItem,
  type RecordTrackingEventRequest,
  type ReturnItemsRequest,
  TrackingStatus,
} from "../gen/quartermaster/v1/order";
import { ReserveBatchColumns } from "./reserve_batch_columns";
import {
  ATTRIBUTE_LENGTH_MAX,
  ATTRIBUTES_MAX,
  AVAILABILITY_SKUS_MAX,
  ID_LENGTH_MAX,
  ID_PATTERN,
  ORDER_LINES_MAX,
  PAGE_SIZE_DEFAULT,
  PAGE_SIZE_MAX,
  PAYMENT_TIMEOUT_MS_DEFAULT,
  QUANTITY_MAX,
  RESERVATION_TTL_MS_DEFAULT,
  RESERVE_BATCH_ITEMS_MAX,
  TEXT_LENGTH_MAX,
  TTL_MS_MAX,
  TTL_MS_MIN,
  UPDATE_MASK_PATHS_MAX,
} from "../limits";

/**
 * The protobuf decoder turns invalid UTF-8 into U+FFFD instead of failing, so
 * its presence is how a string field that was not valid UTF-8 shows here.
 * (Stored text is never allowed to carry it, which costs the rare title that
 * means to contain the character itself.)
 */
const REPLACEMENT_CHARACTER = "\uFFFD";

/** Collects violations for one request; `done()` throws if there were any. */
class Check {
  readonly violations: FieldViolation[] = [];

  fail(field: string, description: string): void {
    this.violations.push({ field, description });
  }

  /** `plain`: the caller already knows every character of value matches ID_PATTERN (ReserveBatchColumns.plainIds). */
  id(field: string, value: string, plain = false): string {
    if (value.length === 0) this.fail(field, "is required");
    else if (value.length > ID_LENGTH_MAX) this.fail(field, `must be at most ${ID_LENGTH_MAX} characters`);
    else if (!plain && !ID_PATTERN.test(value)) this.fail(field, "may contain only letters, digits and . _ : -");
    return value;
  }

  optionalId(field: string, value: string, plain = false): string {
    return value === "" ? "" : this.id(field, value, plain);
  }

  text(field: string, value: string, required = false, max = TEXT_LENGTH_MAX): string {
    if (required && value.trim().length === 0) this.fail(field, "is required");
    else if (value.length > max) this.fail(field, `must be at most ${max} characters`);
    else if (value.includes(REPLACEMENT_CHARACTER)) this.fail(field, "is not valid UTF-8");
    return value;
  }

  quantity(field: string, value: number): number {
    if (!Number.isInteger(value) || value < 1 || value > QUANTITY_MAX) this.fail(field, `must be between 1 and ${QUANTITY_MAX}`);
    return value;
  }

  nonNegative(field: string, value: number, max = QUANTITY_MAX): number {
    if (!Number.isInteger(value) || value < 0 || value > max) this.fail(field, `must be between 0 and ${max}`);
    return value;
  }

  enumValue<E extends number>(field: string, value: E, known: Readonly<Record<number, string>>): E {
    if (value === 0) this.fail(field, "is required (UNSPECIFIED is not a value)");
    else if (known[value] === undefined || value < 0) this.fail(field, `unknown value ${value}`);
    return value;
  }

  durationMs(field: string, value: Duration | undefined, fallbackMs: number): number {
    return value === undefined ? fallbackMs : this.durationPartsMs(field, value.seconds, value.nanos);
  }

  /** A Duration given as its two fields. */
  durationPartsMs(field: string, seconds: number, nanos: number): number {
    const ms = seconds * 1000 + Math.trunc(nanos / 1e6);
    if (!Number.isFinite(ms) || nanos < 0 || nanos > 999_999_999 || seconds < 0) {
      this.fail(field, "is not a valid duration");
    } else if (ms < TTL_MS_MIN || ms > TTL_MS_MAX) {
      this.fail(field, `must be between ${TTL_MS_MIN / 1000}s and ${TTL_MS_MAX / 1000}s`);
    }
    return ms;
  }

  done(): void {
    if (this.violations.length > 0) throw invalidArgument(this.violations);
  }
}

const ADJUSTMENT_REASONS: Readonly<Record<number, DomainReason>> = {
  [AdjustmentReason.ADJUSTMENT_REASON_RECEIVED]: "RECEIVED",
  [AdjustmentReason.ADJUSTMENT_REASON_CORRECTION]: "CORRECTION",
  [AdjustmentReason.ADJUSTMENT_REASON_DAMAGED]: "DAMAGED",
  [AdjustmentReason.ADJUSTMENT_REASON_CYCLE_COUNT]: "CYCLE_COUNT",
  [AdjustmentReason.ADJUSTMENT_REASON_RETURNED]: "RETURNED",
};

const TRACKING_STATUSES: Readonly<Record<number, DomainTracking>> = {
  [TrackingStatus.TRACKING_STATUS_IN_TRANSIT]: "IN_TRANSIT",
  [TrackingStatus.TRACKING_STATUS_OUT_FOR_DELIVERY]: "OUT_FOR_DELIVERY",
  [TrackingStatus.TRACKING_STATUS_DELIVERED]: "DELIVERED",
  [TrackingStatus.TRACKING_STATUS_EXCEPTION]: "EXCEPTION",
};

// ---- Inventory ------------------------------------------------------------------

export function validateSkuId(skuId: string): string {
  const c = new Check();
  c.id("sku_id", skuId);
  c.done();
  return skuId;
}

/** The definition fields an update_mask may name (AIP-134), by their proto names. */
const UPSERT_FIELDS = ["title", "price_minor", "currency", "safety_stock", "low_stock_threshold", "allow_backorder"] as const;
type UpsertField = (typeof UPSERT_FIELDS)[number];

/**
 * Which fields an UpsertSku changes: those its update_mask names, or without a
 * mask those set in the request. Only the fields that change are checked.
 */
export function validateUpsertSku(r: UpsertSkuRequest): { skuId: string; patch: SkuPatch } {
  const c = new Check();
  c.id("sku_id", r.skuId);
  const mask = upsertMask(c, r);
  const patch: { -readonly [K in keyof SkuPatch]: SkuPatch[K] } = {};
  if (mask.fields.has("title")) patch.title = c.text("title", r.title ?? "", true);
  if (mask.fields.has("price_minor")) patch.priceMinor = c.nonNegative("price_minor", r.priceMinor ?? 0, Number.MAX_SAFE_INTEGER);
  if (mask.fields.has("currency")) {
    patch.currency = r.currency ?? "";
    if (!/^[A-Z]{3}$/.test(patch.currency)) c.fail("currency", "must be an ISO 4217 code of three upper-case letters");
  }
  if (mask.fields.has("safety_stock")) patch.safetyStock = c.nonNegative("safety_stock", r.safetyStock ?? 0);
  if (mask.fields.has("low_stock_threshold")) patch.lowStockThreshold = c.nonNegative("low_stock_threshold", r.lowStockThreshold ?? 0);
  if (mask.fields.has("allow_backorder")) patch.allowBackorder = r.allowBackorder ?? false;
  // Object.keys, not `in` or indexing through the prototype: the request's map has no prototype (attribute_map.ts).
  const given = new Map(Object.entries(r.attributes));
  if (mask.allAttributes) {
    if (given.size > ATTRIBUTES_MAX) c.fail("attributes", `at most ${ATTRIBUTES_MAX} entries`);
    for (const [k, v] of given) checkAttribute(c, k, v);
    patch.attributes = [...given];
  } else if (mask.attributeKeys.size > 0) {
    const set: [string, string][] = [];
    const remove: string[] = [];
    for (const k of mask.attributeKeys) {
      const v = given.get(k);
      if (v === undefined) remove.push(k);
      else {
        checkAttribute(c, k, v);
        set.push([k, v]);
      }
    }
    patch.attributes = { set, remove };
  }
  c.done();
  return { skuId: r.skuId, patch };
}

interface UpsertMask {
  readonly fields: ReadonlySet<UpsertField>;
  /** The whole map is replaced by the request's. */
  readonly allAttributes: boolean;
  /** Keys set from the request's map, or removed when it lacks them. */
  readonly attributeKeys: ReadonlySet<string>;
}

function upsertMask(c: Check, r: UpsertSkuRequest): UpsertMask {
  const paths = r.updateMask ?? [];
  if (paths.length === 0) {
    // No mask: what the request sets. The scalars are proto3 `optional`, so presence is on the wire.
    const present: Record<UpsertField, unknown> = {
      title: r.title,
      price_minor: r.priceMinor,
      currency: r.currency,
      safety_stock: r.safetyStock,
      low_stock_threshold: r.lowStockThreshold,
      allow_backorder: r.allowBackorder,
    };
    return {
      fields: new Set(UPSERT_FIELDS.filter((f) => present[f] !== undefined)),
      allAttributes: Object.keys(r.attributes).length > 0,
      attributeKeys: new Set(),
    };
  }
  if (paths.includes("*")) {
    if (paths.length > 1) c.fail("update_mask", `"*" must be the only path`);
    return { fields: new Set(UPSERT_FIELDS), allAttributes: true, attributeKeys: new Set() };
  }
  const fields = new Set<UpsertField>();
  const attributeKeys = new Set<string>();
  let allAttributes = false;
  if (paths.length > UPDATE_MASK_PATHS_MAX) {
    c.fail("update_mask", `at most ${UPDATE_MASK_PATHS_MAX} paths`);
    return { fields, allAttributes, attributeKeys };
  }
  for (const path of paths) {
    if ((UPSERT_FIELDS as readonly string[]).includes(path)) fields.add(path as UpsertField);
    else if (path === "attributes") allAttributes = true;
    else if (path.startsWith("attributes.") && path.length > "attributes.".length) attributeKeys.add(mapKey(path.slice("attributes.".length)));
    else c.fail("update_mask", `unknown path "${path.slice(0, ID_LENGTH_MAX)}"; known: ${[...UPSERT_FIELDS, "attributes", "attributes.<key>", "*"].join(", ")}`);
  }
  return { fields, allAttributes, attributeKeys: allAttributes ? new Set() : attributeKeys };
}

/** A map key in a field mask path; AIP-161 quotes keys that are not plain identifiers in backticks. */
function mapKey(text: string): string {
  return text.length >= 2 && text.startsWith("`") && text.endsWith("`") ? text.slice(1, -1).replace(/``/g, "`") : text;
}

function checkAttribute(c: Check, k: string, v: string): void {
  if (k.length === 0 || k.length > ATTRIBUTE_LENGTH_MAX) c.fail(`attributes[${k}]`, `key must be 1-${ATTRIBUTE_LENGTH_MAX} characters`);
  if (v.length > ATTRIBUTE_LENGTH_MAX) c.fail(`attributes[${k}]`, `value must be at most ${ATTRIBUTE_LENGTH_MAX} characters`);
  if (k.includes(REPLACEMENT_CHARACTER) || v.includes(REPLACEMENT_CHARACTER)) c.fail(`attributes[${k}]`, "is not valid UTF-8");
}

export function validateAdjustStock(r: AdjustStockRequest): { skuId: string; cmd: AdjustCommand; note: string } {
  const c = new Check();
  c.id("sku_id", r.skuId);
  c.id("location_id", r.locationId);
  if (!Number.isInteger(r.delta) || r.delta === 0 || Math.abs(r.delta) > QUANTITY_MAX) {
    c.fail("delta", `must be a non-zero integer between -${QUANTITY_MAX} and ${QUANTITY_MAX}`);
  }
  c.enumValue("reason", r.reason, ADJUSTMENT_REASONS);
  const reason = ADJUSTMENT_REASONS[r.reason];
  // The reason says which way stock moves; a contradiction is a caller's bug.
  if ((reason === "RECEIVED" || reason === "RETURNED") && r.delta < 0) c.fail("delta", `must be positive for ${reason}`);
  if (reason === "DAMAGED" && r.delta > 0) c.fail("delta", "must be negative for DAMAGED");
  c.text("note", r.note);
  c.optionalId("idempotency_key", r.idempotencyKey);
  c.done();
  return {
    skuId: r.skuId,
    cmd: { locationId: r.locationId, delta: r.delta, reason: reason as DomainReason, key: r.idempotencyKey },
    note: r.note,
  };
}

export function validateListAdjustments(r: ListAdjustmentsRequest): { skuId: string; afterSeq: number; limit: number } {
  const c = new Check();
  c.id("sku_id", r.skuId);
  if (!Number.isInteger(r.pageSize) || r.pageSize < 0 || r.pageSize > PAGE_SIZE_MAX) c.fail("page_size", `must be between 0 and ${PAGE_SIZE_MAX}`);
  let afterSeq = 0;
  if (r.pageToken !== "") {
    afterSeq = decodePageToken(r.pageToken);
    if (afterSeq <= 0) c.fail("page_token", "is not a token this service issued");
  }
  c.done();
  return { skuId: r.skuId, afterSeq, limit: r.pageSize === 0 ? PAGE_SIZE_DEFAULT : r.pageSize };
}

/** Page tokens are opaque to callers; inside, the sequence of the last record served. */
export function encodePageToken(afterSeq: number): string {
  return afterSeq === 0 ? "" : Buffer.from(`adj:${afterSeq}`).toString("base64url");
}

function decodePageToken(token: string): number {
  const m = /^adj:([1-9][0-9]{0,15})$/.exec(Buffer.from(token, "base64url").toString());
  const seq = m ? Number(m[1]) : -1;
  // Base64 decoding skips characters it does not know and padding, so only the
  // exact text encodePageToken gives is a token this service issued; and no
  // sequence beyond 2^53 was ever issued (it would not survive as a number).
  return Number.isSafeInteger(seq) && seq > 0 && encodePageToken(seq) === token ? seq : -1;
}

export function validateGetAvailability(r: GetAvailabilityRequest): string[] {
  const c = new Check();
  if (r.skuIds.length === 0) c.fail("sku_ids", "at least one sku_id is required");
  if (r.skuIds.length > AVAILABILITY_SKUS_MAX) c.fail("sku_ids", `at most ${AVAILABILITY_SKUS_MAX} per call`);
  else r.skuIds.forEach((id, i) => c.id(`sku_ids[${i}]`, id));
  c.done();
  return r.skuIds;
}

export interface ValidReserve {
  readonly skuId: string;
  readonly cmd: ReserveCommand;
}

/** One reservation's checks; `prefix` names where it sits in the request ("" or "items[3]."). */
function reserveItem(c: Check, r: ReserveRequest): ValidReserve {
  c.id("reservation_id", r.reservationId);
  c.id("sku_id", r.skuId);
  c.quantity("quantity", r.quantity);
  c.optionalId("location_id", r.locationId);
  const ttlMs = c.durationMs("ttl", r.ttl, RESERVATION_TTL_MS_DEFAULT);
  return { skuId: r.skuId, cmd: { id: r.reservationId, quantity: r.quantity, locationId: r.locationId, ttlMs } };
}

/**
 * Checks the items of a list with the list's Check, naming a field
 * `list[i].field` only when it fails: a batch of 1,000 valid items builds no
 * field names (it built five strings per item before).
 */
class ItemCheck extends Check {
  index = 0;

  constructor(
    private readonly list: Check,
    private readonly listField: string,
  ) {
    super();
  }

  override fail(field: string, description: string): void {
    this.list.fail(`${this.listField}[${this.index}].${field}`, description);
  }
}

export function validateReserve(r: ReserveRequest): ValidReserve {
  const c = new Check();
  const valid = reserveItem(c, r);
  c.done();
  return valid;
}

/** A valid ReserveBatch: item i's SKU and its command's fields, in position i of each column. */
export interface ValidReserveBatch extends ReserveColumns {
  readonly skuIds: readonly string[];
}

/**
 * Every item as Reserve checks it; one bad item rejects the whole batch, so
 * nothing changes. The answer is columns, read from the fast reader's columns
 * when it produced them (no object per item on the way).
 */
export function validateReserveBatch(r: ReserveBatchRequest): ValidReserveBatch {
  const columns = r instanceof ReserveBatchColumns ? r : undefined;
  const n = columns?.length ?? r.items.length;
  const c = new Check();
  if (n === 0) c.fail("items", "at least one item is required");
  if (n > RESERVE_BATCH_ITEMS_MAX) {
    c.fail("items", `at most ${RESERVE_BATCH_ITEMS_MAX} items`);
    c.done();
  }
  const item = new ItemCheck(c, "items");
  // The reader's columns are taken as they are (nothing changes them after decoding), not copied.
  const valid =
    columns !== undefined
      ? { skuIds: columns.skuIds, ids: columns.reservationIds, quantities: columns.quantities, locationIds: columns.locationIds, ttlsMs: new Array<number>(n) }
      : { skuIds: new Array<string>(n), ids: new Array<string>(n), quantities: new Array<number>(n), locationIds: new Array<string>(n), ttlsMs: new Array<number>(n) };
  const plain = columns?.plainIds === true;
  for (let i = 0; i < n; i++) {
    item.index = i;
    if (columns === undefined) {
      const request = r.items[i] as ReserveRequest;
      valid.ids[i] = request.reservationId;
      valid.skuIds[i] = request.skuId;
      valid.quantities[i] = request.quantity;
      valid.locationIds[i] = request.locationId;
    }
    // In the order reserveItem checks them, so violations are listed as Reserve lists them.
    item.id("reservation_id", valid.ids[i] as string, plain);
    item.id("sku_id", valid.skuIds[i] as string, plain);
    item.quantity("quantity", valid.quantities[i] as number);
    item.optionalId("location_id", valid.locationIds[i] as string, plain);
    if (columns === undefined) valid.ttlsMs[i] = item.durationMs("ttl", (r.items[i] as ReserveRequest).ttl, RESERVATION_TTL_MS_DEFAULT);
    else if (columns.ttlSet[i] === true) valid.ttlsMs[i] = item.durationPartsMs("ttl", columns.ttlSeconds[i] as number, columns.ttlNanos[i] as number);
    else valid.ttlsMs[i] = RESERVATION_TTL_MS_DEFAULT;
  }
  c.done();
  return valid;
}

export function validateReservationRef(r: { reservationId: string; skuId: string }): { skuId: string; id: string } {
  const c = new Check();
  c.id("reservation_id", r.reservationId);
  c.id("sku_id", r.skuId);
  c.done();
  return { skuId: r.skuId, id: r.reservationId };
}

// ---- Orders ----------------------------------------------------------------------

function lines(c: Check, field: string, items: readonly LineItem[], allowEmpty: boolean): LineQuantity[] {
  if (!allowEmpty && items.length === 0) c.fail(field, "at least one line is required");
  if (items.length > ORDER_LINES_MAX) {
    c.fail(field, `at most ${ORDER_LINES_MAX} lines`);
    return [];
  }
  const seen = new Set<string>();
  items.forEach((l, i) => {
    c.id(`${field}[${i}].sku_id`, l.skuId);
    c.quantity(`${field}[${i}].quantity`, l.quantity);
    if (seen.has(l.skuId)) c.fail(`${field}[${i}].sku_id`, `${l.skuId} appears on more than one line`);
    seen.add(l.skuId);
  });
  return items.map((l) => ({ skuId: l.skuId, quantity: l.quantity }));
}

export function validateOrderId(orderId: string): string {
  const c = new Check();
  c.id("order_id", orderId);
  c.done();
  return orderId;
}

export function validateCreateOrder(r: CreateOrderRequest, reservationGraceMs: number): { orderId: string; cmd: PlaceCommand } {
  const c = new Check();
  c.id("order_id", r.orderId);
  c.id("customer_id", r.customerId);
  const ls = lines(c, "lines", r.lines, false);
  const paymentTimeoutMs = c.durationMs("payment_timeout", r.paymentTimeout, PAYMENT_TIMEOUT_MS_DEFAULT);
  c.done();
  return { orderId: r.orderId, cmd: { customerId: r.customerId, lines: ls, paymentTimeoutMs, reservationGraceMs } };
}

export function validateConfirmPayment(r: { orderId: string; paymentReference: string }): { orderId: string; paymentReference: string } {
  const c = new Check();
  c.id("order_id", r.orderId);
  c.id("payment_reference", r.paymentReference);
  c.done();
  return r;
}

export function validateCancelOrder(r: { orderId: string; reason: string }): { orderId: string; reason: string } {
  const c = new Check();
  c.id("order_id", r.orderId);
  c.text("reason", r.reason);
  c.done();
  return r;
}

export function validateCreateShipment(r: CreateShipmentRequest): { orderId: string; cmd: ShipCommand } {
  const c = new Check();
  c.id("order_id", r.orderId);
  c.id("shipment_id", r.shipmentId);
  const ls = lines(c, "lines", r.lines, true);
  c.text("carrier", r.carrier, true, ID_LENGTH_MAX);
  c.text("tracking_number", r.trackingNumber, false, ID_LENGTH_MAX);
  c.done();
  return { orderId: r.orderId, cmd: { shipmentId: r.shipmentId, carrier: r.carrier, trackingNumber: r.trackingNumber, lines: ls } };
}

export function validateRecordTrackingEvent(r: RecordTrackingEventRequest): { orderId: string; cmd: TrackCommand } {
  const c = new Check();
  c.id("order_id", r.orderId);
  c.id("shipment_id", r.shipmentId);
  c.id("event_id", r.eventId);
  c.enumValue("status", r.status, TRACKING_STATUSES);
  c.text("location", r.location);
  c.text("description", r.description);
  const occurredAtMs = r.occurredAt?.getTime() ?? Number.NaN;
  if (r.occurredAt === undefined) c.fail("occurred_at", "is required");
  else if (!Number.isFinite(occurredAtMs)) c.fail("occurred_at", "is not a valid time");
  c.done();
  return {
    orderId: r.orderId,
    cmd: {
      shipmentId: r.shipmentId,
      eventId: r.eventId,
      status: TRACKING_STATUSES[r.status] as DomainTracking,
      location: r.location,
      description: r.description,
      occurredAtMs,
    },
  };
}

export function validateReturnItems(r: ReturnItemsRequest): { orderId: string; cmd: ReturnCommand } {
  const c = new Check();
  c.id("order_id", r.orderId);
  c.id("return_id", r.returnId);
  const ls = lines(c, "lines", r.lines, false);
  c.done();
  return { orderId: r.orderId, cmd: { returnId: r.returnId, lines: ls, restock: r.restock } };
}

// ---- Cluster ----------------------------------------------------------------------

const ACTOR_KINDS: Readonly<Record<number, "sku" | "order">> = {
  [ActorKind.ACTOR_KIND_SKU]: "sku",
  [ActorKind.ACTOR_KIND_ORDER]: "order",
};

export function validateLocateKey(r: LocateKeyRequest): { kind: "sku" | "order"; id: string } {
  const c = new Check();
  const kind = c.enumValue("kind", r.kind, ACTOR_KINDS);
  c.id("id", r.id);
  c.done();
  return { kind: ACTOR_KINDS[kind] as "sku" | "order", id: r.id };
}

export function validateNodeId(nodeId: string): string {
  const c = new Check();
  c.id("node_id", nodeId);
  c.done();
  return nodeId;
}
