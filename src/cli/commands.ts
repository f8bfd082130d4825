// The API commands of qmctl: every inventory and order RPC, its flags, and how
// its flags become one request. Building a request is pure and separate from
// calling, so that the unit tests check the requests a command line produces
// without a server. registry.ts lists these with the commands of other files.

import {
  AdjustStockRequest,
  CommitReservationRequest,
  GetAvailabilityRequest,
  GetReservationRequest,
  GetSkuRequest,
  ListAdjustmentsRequest,
  ReleaseReservationRequest,
  type Reservation,
  ReserveRequest,
  UpsertSkuRequest,
} from "../gen/quartermaster/v1/inventory";
import {
  CancelOrderRequest,
  ConfirmPaymentRequest,
  CreateOrderRequest,
  CreateShipmentRequest,
  GetOrderRequest,
  type Order,
  RecordTrackingEventRequest,
  ReturnItemsRequest,
} from "../gen/quartermaster/v1/order";
import { PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX } from "../limits";
import {
  ADJUSTMENT_REASONS,
  TRACKING_STATUSES,
  durationFromMs,
  parseDurationMs,
  parseKeyValue,
  UsageError,
  parseLine,
  parseTime,
} from "./args";
import { type CommandSpec, type Flags, type OptionSpec, type PreparedCall, prepare } from "./command_spec";
import type { Connection } from "./connection";
import { availabilityJson, listAdjustmentsJson, orderJson, reservationJson, skuJson, stockLevelJson } from "./json";
import { renderAdjustments, renderAvailability, renderOrder, renderReservation, renderSku, renderStockLevel } from "./render";
import { buildReserveBatch } from "./reserve_batch";
import { type CallOpts, call } from "./rpc";

function lines(flags: Flags, name: string): { skuId: string; quantity: number }[] {
  return flags.list(name).map((l) => parseLine(l, `--${name}`));
}

const RESERVATION_ID_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  sku: { type: "string", value: "SKU", required: true, help: "SKU id" },
  id: { type: "string", value: "ID", required: true, help: "reservation id" },
};

export const API_COMMANDS: readonly CommandSpec[] = [
  {
    name: "sku upsert",
    // Sends an update_mask of exactly the flags given: whatever is left out keeps its value.
    summary: "create a SKU (needs --title and --currency) or change the fields whose flags are given; stock is untouched",
    args: ["<sku-id>"],
    options: {
      title: { type: "string", value: "TEXT", help: "title" },
      "price-minor": { type: "string", value: "N", help: "price in the currency's minor unit (cents)" },
      currency: { type: "string", value: "CODE", help: "ISO 4217 code, e.g. USD" },
      "safety-stock": { type: "string", value: "N", help: "units held back from availability" },
      "low-stock-threshold": { type: "string", value: "N", help: "low_stock is set when available <= N" },
      backorder: { type: "boolean", help: "allow reserving beyond on-hand stock" },
      "no-backorder": { type: "boolean", help: "stop allowing backorders" },
      attr: { type: "string", multiple: true, value: "KEY=VALUE", help: "set one attribute (the others stay)" },
    },
    build(f) {
      if (f.boolean("backorder") && f.boolean("no-backorder")) throw new UsageError("--backorder and --no-backorder exclude each other");
      const attributes = f.list("attr").map((a) => parseKeyValue(a, "--attr"));
      const backorder = f.boolean("backorder") ? true : f.boolean("no-backorder") ? false : undefined;
      const fields = {
        title: f.string("title"),
        price_minor: f.integer("price-minor"),
        // ISO 4217 codes are upper case; `eur` can only mean EUR.
        currency: f.string("currency")?.toUpperCase(),
        safety_stock: f.integer("safety-stock"),
        low_stock_threshold: f.integer("low-stock-threshold"),
        allow_backorder: backorder,
      };
      const request: UpsertSkuRequest = {
        skuId: f.positional(0),
        title: fields.title,
        priceMinor: fields.price_minor,
        currency: fields.currency,
        safetyStock: fields.safety_stock,
        lowStockThreshold: fields.low_stock_threshold,
        allowBackorder: fields.allow_backorder,
        attributes: Object.fromEntries(attributes),
        // AIP-161 quotes a map key in backticks, so any key is a path.
        updateMask: [
          ...Object.entries(fields).flatMap(([path, value]) => (value === undefined ? [] : [path])),
          ...attributes.map(([k]) => `attributes.\`${k.replace(/`/g, "``")}\``),
        ],
      };
      return prepare("InventoryService/UpsertSku", request, (c, r, o) => call(c.inventory, "upsertSku", r, o), skuJson, renderSku);
    },
  },
  {
    name: "sku get",
    summary: "show a SKU's definition and stock levels per location",
    args: ["<sku-id>"],
    options: {},
    build(f) {
      const request: GetSkuRequest = { skuId: f.positional(0) };
      return prepare("InventoryService/GetSku", request, (c, r, o) => call(c.inventory, "getSku", r, o), skuJson, renderSku);
    },
  },
  {
    name: "sku adjust",
    summary: "change on-hand stock at one location",
    args: ["<sku-id>"],
    options: {
      location: { type: "string", value: "LOC", required: true, help: "location id" },
      delta: { type: "string", value: "N", required: true, help: "signed change to on_hand, e.g. 100 or -3" },
      reason: { type: "string", value: "REASON", required: true, help: ADJUSTMENT_REASONS.names().join("|") },
      key: { type: "string", value: "KEY", help: "idempotency key: a retry with the same key changes nothing" },
      note: { type: "string", value: "TEXT", help: "free-text note for the audit log" },
    },
    build(f) {
      const request: AdjustStockRequest = {
        skuId: f.positional(0),
        locationId: f.required("location"),
        delta: f.requiredInteger("delta"),
        reason: ADJUSTMENT_REASONS.parse(f.required("reason"), "--reason"),
        note: f.string("note") ?? "",
        idempotencyKey: f.string("key") ?? "",
      };
      return prepare(
        "InventoryService/AdjustStock",
        request,
        (c, r, o) => call(c.inventory, "adjustStock", r, o),
        stockLevelJson,
        renderStockLevel,
      );
    },
  },
  {
    name: "adjustments",
    summary: "list a SKU's stock adjustments, oldest first",
    args: ["<sku-id>"],
    options: {
      "page-size": { type: "string", value: "N", help: `0-${PAGE_SIZE_MAX}; 0 or absent: the server default, ${PAGE_SIZE_DEFAULT}` },
      "page-token": { type: "string", value: "TOKEN", help: "next_page_token of the previous page" },
    },
    build(f) {
      const request: ListAdjustmentsRequest = {
        skuId: f.positional(0),
        pageSize: f.integer("page-size") ?? 0,
        pageToken: f.string("page-token") ?? "",
      };
      return prepare(
        "InventoryService/ListAdjustments",
        request,
        (c, r, o) => call(c.inventory, "listAdjustments", r, o),
        listAdjustmentsJson,
        renderAdjustments,
      );
    },
  },
  {
    name: "availability",
    summary: "stock totals of one or more SKUs",
    args: ["<sku-id>..."],
    options: {},
    build(f) {
      const request: GetAvailabilityRequest = { skuIds: [...f.positionals] };
      return prepare(
        "InventoryService/GetAvailability",
        request,
        (c, r, o) => call(c.inventory, "getAvailability", r, o),
        availabilityJson,
        renderAvailability,
      );
    },
  },
  {
    name: "reserve",
    summary: "hold units of a SKU until the TTL passes (idempotent on --sku and --id); --batch FILE sends many in one ReserveBatch call",
    args: [],
    // Not marked required, since --batch replaces them; build() requires them without it.
    synopsis: "(--sku SKU --id ID --qty N | --batch FILE)",
    options: {
      sku: { type: "string", value: "SKU", help: "SKU id (required without --batch)" },
      id: { type: "string", value: "ID", help: "reservation id (required without --batch)" },
      qty: { type: "string", value: "N", help: "units to hold (required without --batch)" },
      location: { type: "string", value: "LOC", help: "location (default: the one with the most available units)" },
      ttl: { type: "string", value: "DURATION", help: "how long the hold lasts, e.g. 15m (server default 15m)" },
      batch: {
        type: "string",
        value: "FILE",
        help: 'JSON lines, one reservation each: {"reservationId":..,"skuId":..,"quantity":..,"locationId":..,"ttl":"15m"}; up to 1000; each succeeds or fails on its own',
      },
    },
    build(f) {
      const batch = f.string("batch");
      if (batch !== undefined) {
        const single = ["sku", "id", "qty", "location", "ttl"].filter((n) => f.has(n));
        if (single.length > 0) throw new UsageError(`--batch takes every item from its file; drop --${single.join(", --")}`);
        return buildReserveBatch(batch);
      }
      const ttl = f.string("ttl");
      const request: ReserveRequest = {
        reservationId: f.required("id"),
        skuId: f.required("sku"),
        quantity: f.requiredInteger("qty"),
        locationId: f.string("location") ?? "",
        ttl: ttl === undefined ? undefined : durationFromMs(parseDurationMs(ttl, "--ttl")),
      };
      return reservationCall("InventoryService/Reserve", request, (c, r, o) => call(c.inventory, "reserve", r, o));
    },
  },
  reservationIdCommand("reservation get", "show a reservation", "InventoryService/GetReservation", (c, r, o) => call(c.inventory, "getReservation", r, o)),
  reservationIdCommand("commit", "turn a hold into a commitment that no longer expires", "InventoryService/CommitReservation", (c, r, o) =>
    call(c.inventory, "commitReservation", r, o),
  ),
  reservationIdCommand("release", "return a held or committed reservation's units to available stock", "InventoryService/ReleaseReservation", (c, r, o) =>
    call(c.inventory, "releaseReservation", r, o),
  ),
  {
    name: "order create",
    summary: "create an order, reserving every line (all or nothing)",
    args: ["<order-id>"],
    options: {
      customer: { type: "string", value: "ID", required: true, help: "customer id" },
      line: { type: "string", multiple: true, value: "SKU:QTY", required: true, help: "order line" },
      "payment-timeout": { type: "string", value: "DURATION", help: "time to pay before the order expires (server default 30m)" },
    },
    build(f) {
      const timeout = f.string("payment-timeout");
      const request: CreateOrderRequest = {
        orderId: f.positional(0),
        customerId: f.required("customer"),
        lines: lines(f, "line"),
        paymentTimeout: timeout === undefined ? undefined : durationFromMs(parseDurationMs(timeout, "--payment-timeout")),
      };
      return orderCall("OrderService/CreateOrder", request, (c, r, o) => call(c.order, "createOrder", r, o));
    },
  },
  {
    name: "order get",
    summary: "show an order with its lines, shipments and returns",
    args: ["<order-id>"],
    options: {},
    build(f) {
      const request: GetOrderRequest = { orderId: f.positional(0) };
      return orderCall("OrderService/GetOrder", request, (c, r, o) => call(c.order, "getOrder", r, o));
    },
  },
  {
    name: "order pay",
    summary: "confirm payment, committing the order's reservations",
    args: ["<order-id>"],
    options: { reference: { type: "string", value: "REF", required: true, help: "payment reference, e.g. the payment provider's id" } },
    build(f) {
      const request: ConfirmPaymentRequest = { orderId: f.positional(0), paymentReference: f.required("reference") };
      return orderCall("OrderService/ConfirmPayment", request, (c, r, o) => call(c.order, "confirmPayment", r, o));
    },
  },
  {
    name: "order cancel",
    summary: "cancel an order before anything has shipped",
    args: ["<order-id>"],
    options: { reason: { type: "string", value: "TEXT", help: "why" } },
    build(f) {
      const request: CancelOrderRequest = { orderId: f.positional(0), reason: f.string("reason") ?? "" };
      return orderCall("OrderService/CancelOrder", request, (c, r, o) => call(c.order, "cancelOrder", r, o));
    },
  },
  {
    name: "order ship",
    summary: "ship some or all of the remaining units",
    args: ["<order-id>"],
    options: {
      shipment: { type: "string", value: "ID", required: true, help: "shipment id" },
      carrier: { type: "string", value: "NAME", required: true, help: "carrier, e.g. ups" },
      tracking: { type: "string", value: "NUMBER", help: "carrier's tracking number" },
      line: { type: "string", multiple: true, value: "SKU:QTY", help: "units to ship (default: everything not yet shipped)" },
    },
    build(f) {
      const request: CreateShipmentRequest = {
        orderId: f.positional(0),
        shipmentId: f.required("shipment"),
        lines: lines(f, "line"),
        carrier: f.required("carrier"),
        trackingNumber: f.string("tracking") ?? "",
      };
      return orderCall("OrderService/CreateShipment", request, (c, r, o) => call(c.order, "createShipment", r, o));
    },
  },
  {
    name: "order track",
    summary: "record a carrier tracking event for a shipment",
    args: ["<order-id>"],
    options: {
      shipment: { type: "string", value: "ID", required: true, help: "shipment id" },
      event: { type: "string", value: "ID", required: true, help: "event id (events are deduplicated by it)" },
      status: { type: "string", value: "STATUS", required: true, help: TRACKING_STATUSES.names().join("|") },
      location: { type: "string", value: "TEXT", help: "where the parcel is" },
      description: { type: "string", value: "TEXT", help: "carrier's description" },
      "occurred-at": { type: "string", value: "ISO-TIME", help: "when it happened (default: now)" },
    },
    build(f) {
      const occurredAt = f.string("occurred-at");
      const request: RecordTrackingEventRequest = {
        orderId: f.positional(0),
        shipmentId: f.required("shipment"),
        eventId: f.required("event"),
        status: TRACKING_STATUSES.parse(f.required("status"), "--status"),
        location: f.string("location") ?? "",
        description: f.string("description") ?? "",
        occurredAt: occurredAt === undefined ? new Date() : parseTime(occurredAt, "--occurred-at"),
      };
      return orderCall("OrderService/RecordTrackingEvent", request, (c, r, o) => call(c.order, "recordTrackingEvent", r, o));
    },
  },
  {
    name: "order return",
    summary: "take shipped units back, optionally restocking them",
    args: ["<order-id>"],
    options: {
      return: { type: "string", value: "ID", required: true, help: "return id" },
      line: { type: "string", multiple: true, value: "SKU:QTY", required: true, help: "units returned" },
      restock: { type: "boolean", help: "put the units back on hand where they shipped from" },
    },
    build(f) {
      const request: ReturnItemsRequest = {
        orderId: f.positional(0),
        returnId: f.required("return"),
        lines: lines(f, "line"),
        restock: f.boolean("restock"),
      };
      return orderCall("OrderService/ReturnItems", request, (c, r, o) => call(c.order, "returnItems", r, o));
    },
  },
];

function reservationCall<Req>(
  method: string,
  request: Req,
  invoke: (connection: Connection, request: Req, opts: CallOpts) => Promise<Reservation>,
): PreparedCall {
  return prepare(method, request, invoke, reservationJson, renderReservation);
}

/** The commands that name one reservation by --sku and --id and answer with it: their requests are the same shape. */
function reservationIdCommand(
  name: string,
  summary: string,
  method: string,
  invoke: (connection: Connection, request: GetReservationRequest & CommitReservationRequest & ReleaseReservationRequest, opts: CallOpts) => Promise<Reservation>,
): CommandSpec {
  return {
    name,
    summary,
    args: [],
    options: RESERVATION_ID_OPTIONS,
    build(f) {
      return reservationCall(method, { reservationId: f.required("id"), skuId: f.required("sku") }, invoke);
    },
  };
}

function orderCall<Req>(
  method: string,
  request: Req,
  invoke: (connection: Connection, request: Req, opts: CallOpts) => Promise<Order>,
): PreparedCall {
  return prepare(method, request, invoke, orderJson, renderOrder);
}
