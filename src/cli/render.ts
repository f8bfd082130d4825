// Human-readable renderings of API responses. Scripts use --json instead, so
// this layout may change between releases; the JSON form is the contract.

import type {
  Adjustment,
  GetAvailabilityResponse,
  ListAdjustmentsResponse,
  Reservation,
  ReserveBatchRequest,
  ReserveBatchResponse,
  Sku,
  StockLevel,
} from "../gen/quartermaster/v1/inventory";
import type { LineItem, Order } from "../gen/quartermaster/v1/order";
import { ADJUSTMENT_REASONS, ORDER_STATES, RESERVATION_STATES, TRACKING_STATUSES } from "./args";
import { type Column, renderFields, renderTable } from "./table";

function time(date: Date | undefined): string | undefined {
  return date === undefined ? undefined : date.toISOString();
}

function text(value: string): string | undefined {
  return value === "" ? undefined : value;
}

function yesNo(value: boolean): string {
  return value ? "yes" : "no";
}

function lineItems(lines: readonly LineItem[]): string {
  return lines.length === 0 ? "-" : lines.map((l) => `${l.skuId}:${l.quantity}`).join(", ");
}

function section(title: string, body: string): string {
  return `\n${title}\n${body}`;
}

const LEVEL_COLUMNS: readonly Column[] = [
  { header: "LOCATION" },
  { header: "ON_HAND", align: "right" },
  { header: "RESERVED", align: "right" },
  { header: "COMMITTED", align: "right" },
  { header: "AVAILABLE", align: "right" },
];

function levelRow(level: StockLevel): string[] {
  return [level.locationId, String(level.onHand), String(level.reserved), String(level.committed), String(level.available)];
}

export function renderSku(sku: Sku): string {
  const attributes = Object.entries(sku.attributes)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
  const head = renderFields([
    ["sku", sku.skuId],
    ["title", text(sku.title)],
    // Minor units as given: the number of decimals depends on the currency (JPY has none), which qmctl does not know.
    ["price_minor", `${sku.priceMinor}${sku.currency === "" ? "" : ` ${sku.currency}`}`],
    ["safety_stock", String(sku.safetyStock)],
    ["low_stock_threshold", String(sku.lowStockThreshold)],
    ["backorder", yesNo(sku.allowBackorder)],
    ["attributes", text(attributes)],
    ["version", String(sku.version)],
    ["created_at", time(sku.createdAt)],
    ["updated_at", time(sku.updatedAt)],
    [
      "stock",
      `on_hand ${sku.onHand}, reserved ${sku.reserved}, committed ${sku.committed}, ` +
        `available ${sku.available}${sku.lowStock ? " (LOW STOCK)" : ""}`,
    ],
  ]);
  const levels = sku.levels.length === 0 ? "(no stock locations)" : renderTable(LEVEL_COLUMNS, sku.levels.map(levelRow));
  return `${head}\n${section("LEVELS", levels)}`;
}

export function renderStockLevel(level: StockLevel): string {
  return renderTable(LEVEL_COLUMNS, [levelRow(level)]);
}

export function renderAdjustments(response: ListAdjustmentsResponse): string {
  const table = renderTable(
    [
      { header: "SEQ", align: "right" },
      { header: "LOCATION" },
      { header: "DELTA", align: "right" },
      { header: "REASON" },
      { header: "ON_HAND_AFTER", align: "right" },
      { header: "KEY" },
      { header: "CREATED_AT" },
      { header: "BY" },
      { header: "NOTE" },
    ],
    response.adjustments.map((a: Adjustment) => [
      String(a.sequence),
      a.locationId,
      a.delta > 0 ? `+${a.delta}` : String(a.delta),
      ADJUSTMENT_REASONS.format(a.reason),
      String(a.onHandAfter),
      a.idempotencyKey,
      time(a.createdAt) ?? "",
      changedBy(a.subject, a.tenant),
      a.note,
    ]),
  );
  const more = response.nextPageToken === "" ? "" : `\n\nnext page: --page-token ${response.nextPageToken}`;
  return table + more;
}

export function renderAvailability(response: GetAvailabilityResponse): string {
  return renderTable(
    [
      { header: "SKU" },
      { header: "FOUND" },
      { header: "ON_HAND", align: "right" },
      { header: "RESERVED", align: "right" },
      { header: "COMMITTED", align: "right" },
      { header: "AVAILABLE", align: "right" },
      { header: "VERSION", align: "right" },
    ],
    response.items.map((item) =>
      item.found
        ? [
            item.skuId,
            "yes",
            String(item.onHand),
            String(item.reserved),
            String(item.committed),
            String(item.available),
            String(item.version),
          ]
        : [item.skuId, "no", "-", "-", "-", "-", "-"],
    ),
  );
}

export function renderReservation(r: Reservation): string {
  return renderFields([
    ["reservation", r.reservationId],
    ["sku", r.skuId],
    ["location", text(r.locationId)],
    ["quantity", String(r.quantity)],
    ["state", RESERVATION_STATES.format(r.state)],
    ["fulfilled", String(r.fulfilledQuantity)],
    ["expires_at", time(r.expiresAt)],
    ["created_at", time(r.createdAt)],
    ["updated_at", time(r.updatedAt)],
  ]);
}

export function renderOrder(order: Order): string {
  const parts: string[] = [
    renderFields([
      ["order", order.orderId],
      ["customer", text(order.customerId)],
      ["state", ORDER_STATES.format(order.state)],
      ["payment_deadline", time(order.paymentDeadline)],
      ["payment_reference", text(order.paymentReference)],
      ["cancel_reason", text(order.cancelReason)],
      ["version", String(order.version)],
      ["created_at", time(order.createdAt)],
      ["updated_at", time(order.updatedAt)],
    ]),
  ];
  parts.push(
    section(
      "LINES",
      renderTable(
        [
          { header: "SKU" },
          { header: "QTY", align: "right" },
          { header: "SHIPPED", align: "right" },
          { header: "RETURNED", align: "right" },
          { header: "LOCATION" },
          { header: "RESERVATION" },
        ],
        order.lines.map((l) => [
          l.skuId,
          String(l.quantity),
          String(l.shippedQuantity),
          String(l.returnedQuantity),
          l.locationId,
          l.reservationId,
        ]),
      ),
    ),
  );
  const stalled = order.stalledStep;
  if (stalled !== undefined) {
    parts.push(
      section(
        stalled.parked ? "PARKED STEP (resumed by the next request that acts on the order)" : "STALLED STEP",
        renderFields([
          ["step", stalled.step],
          ["attempts", String(stalled.attempts)],
          ["reason", stalled.reason],
          ["message", text(stalled.message)],
          ["next_attempt_at", time(stalled.nextAttemptAt)],
        ]),
      ),
    );
  }
  if (order.rejectionReasons.length > 0) {
    parts.push(
      section(
        "REJECTED",
        renderTable(
          [{ header: "SKU" }, { header: "REASON" }, { header: "MESSAGE" }],
          order.rejectionReasons.map((r) => [r.skuId, r.reason, r.message]),
        ),
      ),
    );
  }
  for (const s of order.shipments) {
    const head = renderFields([
      ["shipment", s.shipmentId],
      ["carrier", text(s.carrier)],
      ["tracking", text(s.trackingNumber)],
      ["status", TRACKING_STATUSES.format(s.status)],
      ["lines", lineItems(s.lines)],
      ["created_at", time(s.createdAt)],
    ]);
    const events =
      s.events.length === 0
        ? "(no tracking events)"
        : renderTable(
            [{ header: "EVENT" }, { header: "STATUS" }, { header: "OCCURRED_AT" }, { header: "LOCATION" }, { header: "DESCRIPTION" }],
            s.events.map((e) => [
              e.eventId,
              TRACKING_STATUSES.format(e.status),
              time(e.occurredAt) ?? "",
              e.location,
              e.description,
            ]),
          );
    parts.push(`\n${head}\n${indent(events)}`);
  }
  if (order.returns.length > 0) {
    parts.push(
      section(
        "RETURNS",
        renderTable(
          [{ header: "RETURN" }, { header: "RESTOCK" }, { header: "LINES" }, { header: "CREATED_AT" }],
          order.returns.map((r) => [r.returnId, yesNo(r.restock), lineItems(r.lines), time(r.createdAt) ?? ""]),
        ),
      ),
    );
  }
  if (order.history.length > 0) {
    const omitted = order.historyOmitted > 0 ? ` (${order.historyOmitted} older changes not shown)` : "";
    parts.push(
      section(
        `HISTORY${omitted}`,
        renderTable(
          [{ header: "CHANGE" }, { header: "AT" }, { header: "BY" }],
          order.history.map((h) => [h.change, time(h.at) ?? "", changedBy(h.subject, h.tenant)]),
        ),
      ),
    );
  }
  return parts.join("\n");
}

/** Who made a change, as the audit recorded it; records from before the audit named nobody. */
function changedBy(subject: string, tenant: string): string {
  return subject === "" ? "unknown" : `${subject} (${tenant})`;
}

function indent(block: string): string {
  return block
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");
}

/** One row per item, in request order; a failed item shows what was asked and its reason and message in place of a state. */
export function renderReserveBatch(request: ReserveBatchRequest, response: ReserveBatchResponse): string {
  const rows = response.results.map((r, i) => {
    const o = r.outcome;
    if (o?.$case === "reservation") {
      const v = o.reservation;
      return [String(i), v.reservationId, v.skuId, v.locationId, String(v.quantity), RESERVATION_STATES.format(v.state)];
    }
    const asked = request.items[i];
    const e = o?.$case === "error" ? `${o.error.reason}: ${o.error.message}` : "(no outcome)";
    return [String(i), asked?.reservationId ?? "", asked?.skuId ?? "", asked?.locationId ?? "", String(asked?.quantity ?? ""), e];
  });
  const table = renderTable(
    [
      { header: "ITEM", align: "right" },
      { header: "RESERVATION" },
      { header: "SKU" },
      { header: "LOCATION" },
      { header: "QTY", align: "right" },
      { header: "STATE / ERROR" },
    ],
    rows,
  );
  return `${table}\n${response.succeeded} reserved, ${response.failed} failed`;
}
