// Bad input against one real server: every rule in src/grpc/validation.ts, and
// requests whose bytes do not decode at all. Each rejection must be
// INVALID_ARGUMENT with a google.rpc.BadRequest naming exactly the offending
// fields, and must change nothing: the SKUs, reservations and orders the
// request touches read back the same afterwards.

import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { Client, credentials, Metadata, type ServiceError, status as GrpcStatus } from "@grpc/grpc-js";
import { expect } from "chai";
import type { Duration } from "../../src/gen/google/protobuf/duration";
import {
  type AdjustStockRequest,
  AdjustmentReason,
  type CommitReservationRequest,
  type ReserveRequest,
  type UpsertSkuRequest,
} from "../../src/gen/quartermaster/v1/inventory";
import {
  type CreateOrderRequest,
  type CreateShipmentRequest,
  type LineItem,
  OrderState,
  type RecordTrackingEventRequest,
  type ReturnItemsRequest,
  TrackingStatus,
} from "../../src/gen/quartermaster/v1/order";
import { call, type Clients, createClients, decodeStatusDetails, type ServerProcess, startServer } from "../support/server_process";

// Limits restated from the spec rather than imported from src/limits.ts, so
// that a limit changed by mistake there fails here.
const ID_MAX = 128;
const QUANTITY_MAX = 1_000_000_000;
const LINES_MAX = 200;
const AVAILABILITY_SKUS_MAX = 1000;
const TEXT_MAX = 1024;
const ATTRIBUTES_MAX = 64;
const ATTRIBUTE_LENGTH_MAX = 256;
const UPDATE_MASK_PATHS_MAX = 71;
const PAGE_SIZE_MAX = 500;
const TTL_SECONDS_MAX = 30 * 24 * 3600;

// Fixtures, created in before(): every case aims an otherwise valid request at them.
const SKU = "val-sku"; // 101 on hand at wh-1 after two adjustments; holds reservation RES
const SKU2 = "val-sku-2"; // the SKU of the fixture orders' lines
const RAW_SKU = "val-raw"; // target of the undecodable requests
const RES = "val-res";
const AWAITING = "val-awaiting"; // an order AWAITING_PAYMENT
const SHIPPING = "val-shipping"; // an order PARTIALLY_SHIPPED, with shipment SHIPMENT
const SHIPMENT = "val-shp-1";
const ABSENT_ORDER = "val-never-created";
const ABSENT_RES = "val-never-reserved";
const ABSENT_SKU = "val-never-defined";

const NOT_FOUND = "NOT_FOUND";

/** One piece of state a case reads before and after: it must not differ. */
interface Watch {
  label: string;
  read(): Promise<unknown>;
  /** The fixture assumption: this thing does not exist before the call (and so must not after). */
  absent?: boolean;
}

interface Case {
  /** The behaviour, as the it() title. */
  name: string;
  send(): Promise<unknown>;
  /** Exactly the field paths the BadRequest must list, in any order. */
  fields: string[];
  watch: Watch[];
}

/** ms since the epoch of a Timestamp beyond what a JS Date holds (±8.64e15 ms). */
const TIMESTAMP_SECONDS_BEYOND_DATE = 10_000_000_000_000;

describe("Request validation (integration)", function () {
  let server: ServerProcess;
  let c: Clients;
  let raw: Client;
  /** A page token the server issued for SKU's audit log. */
  let issuedToken = "";

  // ---- reading state back -------------------------------------------------------

  async function orNotFound(p: Promise<unknown>): Promise<unknown> {
    try {
      return await p;
    } catch (error) {
      if ((error as ServiceError).code === GrpcStatus.NOT_FOUND) return NOT_FOUND;
      throw error;
    }
  }

  function sku(skuId: string, absent = false): Watch {
    return {
      label: `sku ${skuId}`,
      absent,
      read: async () => {
        const s = await orNotFound(call(c.inventory, "getSku", { skuId }));
        if (s === NOT_FOUND) return NOT_FOUND;
        const log = await call(c.inventory, "listAdjustments", { skuId, pageSize: PAGE_SIZE_MAX, pageToken: "" });
        return { sku: s, adjustments: log.adjustments };
      },
    };
  }

  function order(orderId: string, absent = false): Watch {
    return { label: `order ${orderId}`, absent, read: () => orNotFound(call(c.order, "getOrder", { orderId })) };
  }

  function reservation(skuId: string, reservationId: string, absent = false): Watch {
    return {
      label: `reservation ${skuId}/${reservationId}`,
      absent,
      read: () => orNotFound(call(c.inventory, "getReservation", { skuId, reservationId })),
    };
  }

  async function expectInvalid(promise: Promise<unknown>): Promise<ServiceError> {
    try {
      await promise;
    } catch (error) {
      const e = error as ServiceError;
      expect(e.code, `${GrpcStatus[e.code]}: ${e.details}`).to.equal(GrpcStatus.INVALID_ARGUMENT);
      return e;
    }
    throw new Error("expected INVALID_ARGUMENT, the call succeeded");
  }

  async function runCase(k: Case): Promise<void> {
    const before = await Promise.all(k.watch.map((w) => w.read()));
    k.watch.forEach((w, i) => {
      if (w.absent) expect(before[i], `${w.label} before the call`).to.equal(NOT_FOUND);
      else expect(before[i], `${w.label} before the call`).to.not.equal(NOT_FOUND);
    });
    const e = await expectInvalid(k.send());
    const details = decodeStatusDetails(e);
    expect(details.errorInfo?.reason).to.equal("INVALID_ARGUMENT");
    expect(details.errorInfo?.domain).to.equal("quartermaster.v1");
    const fields = (details.badRequest?.fieldViolations ?? []).map((v) => v.field);
    expect([...fields].sort(), e.details).to.deep.equal([...k.fields].sort());
    for (const v of details.badRequest?.fieldViolations ?? []) expect(v.description, v.field).to.not.equal("");
    const after = await Promise.all(k.watch.map((w) => w.read()));
    k.watch.forEach((w, i) => expect(after[i], `${w.label} after the rejected call`).to.deep.equal(before[i]));
  }

  function cases(list: Case[]): void {
    for (const k of list) it(k.name, () => runCase(k));
  }

  // ---- raw calls: bytes the generated client cannot produce ---------------------

  function rawCall(method: string, bytes: Uint8Array): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      raw.makeUnaryRequest(
        method,
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from(bytes),
        new Metadata(),
        { deadline: new Date(Date.now() + 10_000) },
        (err: ServiceError | null, value?: Buffer) => {
          if (err !== null) reject(err);
          else resolve(value ?? Buffer.alloc(0));
        },
      );
    });
  }

  const RESERVE = "/quartermaster.v1.InventoryService/Reserve";

  // ---- valid requests, to be spoiled one field at a time -------------------------

  const upsert = (o: Partial<UpsertSkuRequest> = {}): UpsertSkuRequest => ({
    skuId: SKU,
    title: "renamed by a rejected call",
    priceMinor: 999,
    currency: "EUR",
    safetyStock: 1,
    lowStockThreshold: 2,
    allowBackorder: true,
    attributes: { colour: "red" },
    updateMask: undefined,
    ...o,
  });
  const adjust = (o: Partial<AdjustStockRequest> = {}): AdjustStockRequest => ({
    skuId: SKU,
    locationId: "wh-1",
    delta: 5,
    reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED,
    note: "",
    idempotencyKey: "",
    ...o,
  });
  const reserve = (o: Partial<ReserveRequest> = {}): ReserveRequest => ({
    reservationId: ABSENT_RES,
    skuId: SKU,
    quantity: 1,
    locationId: "",
    ttl: undefined,
    ...o,
  });
  const createOrder = (o: Partial<CreateOrderRequest> = {}): CreateOrderRequest => ({
    orderId: ABSENT_ORDER,
    customerId: "cust-1",
    lines: [{ skuId: SKU2, quantity: 1 }],
    paymentTimeout: undefined,
    ...o,
  });
  const shipment = (o: Partial<CreateShipmentRequest> = {}): CreateShipmentRequest => ({
    orderId: SHIPPING,
    shipmentId: "val-shp-2",
    lines: [{ skuId: SKU2, quantity: 1 }],
    carrier: "DHL",
    trackingNumber: "",
    ...o,
  });
  const track = (o: Partial<RecordTrackingEventRequest> = {}): RecordTrackingEventRequest => ({
    orderId: SHIPPING,
    shipmentId: SHIPMENT,
    eventId: "ev-1",
    status: TrackingStatus.TRACKING_STATUS_IN_TRANSIT,
    location: "Leipzig",
    description: "",
    occurredAt: new Date(Date.UTC(2025, 0, 2)),
    ...o,
  });
  const returnItems = (o: Partial<ReturnItemsRequest> = {}): ReturnItemsRequest => ({
    orderId: SHIPPING,
    returnId: "ret-1",
    lines: [{ skuId: SKU2, quantity: 1 }],
    restock: true,
    ...o,
  });
  const ref = (o: Partial<CommitReservationRequest> = {}): CommitReservationRequest => ({ reservationId: RES, skuId: SKU, ...o });

  const distinctLines = (n: number, quantity = 1): LineItem[] => Array.from({ length: n }, (_, i) => ({ skuId: `line-sku-${i}`, quantity }));

  before(async () => {
    server = await startServer();
    c = createClients(server.addr);
    raw = new Client(server.addr, credentials.createInsecure());
    for (const skuId of [SKU, SKU2, RAW_SKU]) {
      await call(c.inventory, "upsertSku", {
        skuId,
        title: `Item ${skuId}`,
        priceMinor: 1299,
        currency: "EUR",
        safetyStock: 0,
        lowStockThreshold: 5,
        allowBackorder: false,
        attributes: { colour: "blue" },
        updateMask: undefined,
      });
      await call(c.inventory, "adjustStock", adjust({ skuId, delta: 100, note: "initial" }));
    }
    await call(c.inventory, "adjustStock", adjust({ delta: 1, note: "second" }));
    const page = await call(c.inventory, "listAdjustments", { skuId: SKU, pageSize: 1, pageToken: "" });
    issuedToken = page.nextPageToken;
    expect(issuedToken).to.not.equal("");
    await call(c.inventory, "reserve", reserve({ reservationId: RES, quantity: 5 }));

    const awaiting = await call(c.order, "createOrder", createOrder({ orderId: AWAITING }));
    expect(awaiting.state).to.equal(OrderState.ORDER_STATE_AWAITING_PAYMENT);
    await call(c.order, "createOrder", createOrder({ orderId: SHIPPING, lines: [{ skuId: SKU2, quantity: 4 }] }));
    await call(c.order, "confirmPayment", { orderId: SHIPPING, paymentReference: "pay-1" });
    const shipped = await call(c.order, "createShipment", shipment({ shipmentId: SHIPMENT }));
    expect(shipped.state).to.equal(OrderState.ORDER_STATE_PARTIALLY_SHIPPED);
  });

  after(async () => {
    raw?.close();
    c?.close();
    await server?.stop();
  });

  // ---- identifiers: 1-128 characters of [A-Za-z0-9._:-] --------------------------

  describe("identifiers", () => {
    interface IdField {
      rpc: string;
      field: string;
      /** Empty means "not given" for optional ids, which is valid. */
      optional?: boolean;
      send(id: string): Promise<unknown>;
      watch: Watch[];
    }
    const variants: { what: string; id: string; required?: boolean }[] = [
      { what: "empty", id: "", required: true },
      { what: `${ID_MAX + 1} characters long`, id: "a".repeat(ID_MAX + 1) },
      { what: "containing a space", id: "wh 1" },
      { what: "containing a slash", id: "wh/1" },
      { what: "containing a non-ASCII letter", id: "lager-ü" },
      { what: "ending in a newline", id: "wh-1\n" },
    ];
    const fields: IdField[] = [
      { rpc: "UpsertSku", field: "sku_id", send: (id) => call(c.inventory, "upsertSku", upsert({ skuId: id })), watch: [sku(SKU)] },
      { rpc: "GetSku", field: "sku_id", send: (id) => call(c.inventory, "getSku", { skuId: id }), watch: [sku(SKU)] },
      { rpc: "AdjustStock", field: "sku_id", send: (id) => call(c.inventory, "adjustStock", adjust({ skuId: id })), watch: [sku(SKU)] },
      { rpc: "AdjustStock", field: "location_id", send: (id) => call(c.inventory, "adjustStock", adjust({ locationId: id })), watch: [sku(SKU)] },
      {
        rpc: "AdjustStock",
        field: "idempotency_key",
        optional: true,
        send: (id) => call(c.inventory, "adjustStock", adjust({ idempotencyKey: id })),
        watch: [sku(SKU)],
      },
      {
        rpc: "ListAdjustments",
        field: "sku_id",
        send: (id) => call(c.inventory, "listAdjustments", { skuId: id, pageSize: 0, pageToken: "" }),
        watch: [sku(SKU)],
      },
      { rpc: "GetAvailability", field: "sku_ids[1]", send: (id) => call(c.inventory, "getAvailability", { skuIds: [SKU, id] }), watch: [sku(SKU)] },
      {
        rpc: "Reserve",
        field: "reservation_id",
        send: (id) => call(c.inventory, "reserve", reserve({ reservationId: id })),
        watch: [sku(SKU)],
      },
      {
        rpc: "Reserve",
        field: "sku_id",
        send: (id) => call(c.inventory, "reserve", reserve({ skuId: id })),
        watch: [sku(SKU), reservation(SKU, ABSENT_RES, true)],
      },
      {
        rpc: "Reserve",
        field: "location_id",
        optional: true,
        send: (id) => call(c.inventory, "reserve", reserve({ locationId: id })),
        watch: [sku(SKU), reservation(SKU, ABSENT_RES, true)],
      },
      ...(["getReservation", "commitReservation", "releaseReservation"] as const).flatMap((method): IdField[] => {
        const rpc = method[0]?.toUpperCase() + method.slice(1);
        return [
          { rpc, field: "reservation_id", send: (id) => call(c.inventory, method, ref({ reservationId: id })), watch: [sku(SKU), reservation(SKU, RES)] },
          { rpc, field: "sku_id", send: (id) => call(c.inventory, method, ref({ skuId: id })), watch: [sku(SKU), reservation(SKU, RES)] },
        ];
      }),
      { rpc: "CreateOrder", field: "order_id", send: (id) => call(c.order, "createOrder", createOrder({ orderId: id })), watch: [sku(SKU2)] },
      {
        rpc: "CreateOrder",
        field: "customer_id",
        send: (id) => call(c.order, "createOrder", createOrder({ customerId: id })),
        watch: [order(ABSENT_ORDER, true), sku(SKU2)],
      },
      {
        rpc: "CreateOrder",
        field: "lines[1].sku_id",
        send: (id) => call(c.order, "createOrder", createOrder({ lines: [{ skuId: SKU2, quantity: 1 }, { skuId: id, quantity: 1 }] })),
        watch: [order(ABSENT_ORDER, true), sku(SKU2)],
      },
      { rpc: "GetOrder", field: "order_id", send: (id) => call(c.order, "getOrder", { orderId: id }), watch: [order(AWAITING)] },
      {
        rpc: "ConfirmPayment",
        field: "order_id",
        send: (id) => call(c.order, "confirmPayment", { orderId: id, paymentReference: "pay-2" }),
        watch: [order(AWAITING), sku(SKU2)],
      },
      {
        rpc: "ConfirmPayment",
        field: "payment_reference",
        send: (id) => call(c.order, "confirmPayment", { orderId: AWAITING, paymentReference: id }),
        watch: [order(AWAITING), sku(SKU2)],
      },
      {
        rpc: "CancelOrder",
        field: "order_id",
        send: (id) => call(c.order, "cancelOrder", { orderId: id, reason: "changed mind" }),
        watch: [order(AWAITING), sku(SKU2)],
      },
      {
        rpc: "CreateShipment",
        field: "order_id",
        send: (id) => call(c.order, "createShipment", shipment({ orderId: id })),
        watch: [order(SHIPPING), sku(SKU2)],
      },
      {
        rpc: "CreateShipment",
        field: "shipment_id",
        send: (id) => call(c.order, "createShipment", shipment({ shipmentId: id })),
        watch: [order(SHIPPING), sku(SKU2)],
      },
      {
        rpc: "CreateShipment",
        field: "lines[0].sku_id",
        send: (id) => call(c.order, "createShipment", shipment({ lines: [{ skuId: id, quantity: 1 }] })),
        watch: [order(SHIPPING), sku(SKU2)],
      },
      {
        rpc: "RecordTrackingEvent",
        field: "order_id",
        send: (id) => call(c.order, "recordTrackingEvent", track({ orderId: id })),
        watch: [order(SHIPPING)],
      },
      {
        rpc: "RecordTrackingEvent",
        field: "shipment_id",
        send: (id) => call(c.order, "recordTrackingEvent", track({ shipmentId: id })),
        watch: [order(SHIPPING)],
      },
      {
        rpc: "RecordTrackingEvent",
        field: "event_id",
        send: (id) => call(c.order, "recordTrackingEvent", track({ eventId: id })),
        watch: [order(SHIPPING)],
      },
      {
        rpc: "ReturnItems",
        field: "order_id",
        send: (id) => call(c.order, "returnItems", returnItems({ orderId: id })),
        watch: [order(SHIPPING), sku(SKU2)],
      },
      {
        rpc: "ReturnItems",
        field: "return_id",
        send: (id) => call(c.order, "returnItems", returnItems({ returnId: id })),
        watch: [order(SHIPPING), sku(SKU2)],
      },
      {
        rpc: "ReturnItems",
        field: "lines[0].sku_id",
        send: (id) => call(c.order, "returnItems", returnItems({ lines: [{ skuId: id, quantity: 1 }] })),
        watch: [order(SHIPPING), sku(SKU2)],
      },
    ];
    for (const f of fields) {
      for (const v of variants) {
        if (f.optional && v.required) continue;
        cases([
          {
            name: `rejects ${f.rpc} whose ${f.field} is ${v.what}, naming ${f.field}, and changes nothing`,
            send: () => f.send(v.id),
            fields: [f.field],
            watch: f.watch,
          },
        ]);
      }
    }
  });

  // ---- quantities: 1..1,000,000,000 -----------------------------------------------

  describe("quantities", () => {
    const bad: { what: string; q: number }[] = [
      { what: "0", q: 0 },
      { what: "-1", q: -1 },
      { what: "1,000,000,001", q: QUANTITY_MAX + 1 },
      { what: "2^53 - 1", q: Number.MAX_SAFE_INTEGER },
    ];
    for (const { what, q } of bad) {
      cases([
        {
          name: `rejects Reserve of ${what} units, naming quantity, and reserves nothing`,
          send: () => call(c.inventory, "reserve", reserve({ quantity: q })),
          fields: ["quantity"],
          watch: [sku(SKU), reservation(SKU, ABSENT_RES, true)],
        },
        {
          name: `rejects CreateOrder whose fourth line asks for ${what} units, naming lines[3].quantity, and creates no order`,
          send: () =>
            call(c.order, "createOrder", createOrder({ lines: [...distinctLines(3), { skuId: SKU2, quantity: q }] })),
          fields: ["lines[3].quantity"],
          watch: [order(ABSENT_ORDER, true), sku(SKU2)],
        },
        {
          name: `rejects CreateShipment of ${what} units, naming lines[0].quantity, and ships nothing`,
          send: () => call(c.order, "createShipment", shipment({ lines: [{ skuId: SKU2, quantity: q }] })),
          fields: ["lines[0].quantity"],
          watch: [order(SHIPPING), sku(SKU2)],
        },
        {
          name: `rejects ReturnItems of ${what} units, naming lines[0].quantity, and returns nothing`,
          send: () => call(c.order, "returnItems", returnItems({ lines: [{ skuId: SKU2, quantity: q }] })),
          fields: ["lines[0].quantity"],
          watch: [order(SHIPPING), sku(SKU2)],
        },
      ]);
    }
  });

  // ---- lines: 1..200 per order, each SKU once -------------------------------------

  describe("order lines", () => {
    cases([
      {
        name: "rejects CreateOrder with no lines, naming lines, and creates no order",
        send: () => call(c.order, "createOrder", createOrder({ lines: [] })),
        fields: ["lines"],
        watch: [order(ABSENT_ORDER, true)],
      },
      {
        name: `rejects CreateOrder with ${LINES_MAX + 1} lines, naming lines, and creates no order`,
        send: () => call(c.order, "createOrder", createOrder({ lines: [{ skuId: SKU2, quantity: 1 }, ...distinctLines(LINES_MAX)] })),
        fields: ["lines"],
        watch: [order(ABSENT_ORDER, true), sku(SKU2)],
      },
      {
        name: "rejects CreateOrder with the same SKU on two lines, naming the second line's sku_id, and reserves nothing",
        send: () =>
          call(c.order, "createOrder", createOrder({ lines: [{ skuId: SKU2, quantity: 1 }, { skuId: SKU, quantity: 1 }, { skuId: SKU2, quantity: 2 }] })),
        fields: ["lines[2].sku_id"],
        watch: [order(ABSENT_ORDER, true), sku(SKU), sku(SKU2)],
      },
      {
        name: `rejects CreateShipment with ${LINES_MAX + 1} lines, naming lines, and ships nothing`,
        send: () => call(c.order, "createShipment", shipment({ lines: [{ skuId: SKU2, quantity: 1 }, ...distinctLines(LINES_MAX)] })),
        fields: ["lines"],
        watch: [order(SHIPPING), sku(SKU2)],
      },
      {
        name: "rejects CreateShipment with the same SKU on two lines, naming lines[1].sku_id, and ships nothing",
        send: () => call(c.order, "createShipment", shipment({ lines: [{ skuId: SKU2, quantity: 1 }, { skuId: SKU2, quantity: 1 }] })),
        fields: ["lines[1].sku_id"],
        watch: [order(SHIPPING), sku(SKU2)],
      },
      {
        name: "rejects ReturnItems with no lines, naming lines, and returns nothing",
        send: () => call(c.order, "returnItems", returnItems({ lines: [] })),
        fields: ["lines"],
        watch: [order(SHIPPING), sku(SKU2)],
      },
      {
        name: `rejects ReturnItems with ${LINES_MAX + 1} lines, naming lines, and returns nothing`,
        send: () => call(c.order, "returnItems", returnItems({ lines: [{ skuId: SKU2, quantity: 1 }, ...distinctLines(LINES_MAX)] })),
        fields: ["lines"],
        watch: [order(SHIPPING), sku(SKU2)],
      },
      {
        name: "rejects ReturnItems with the same SKU on two lines, naming lines[1].sku_id, and returns nothing",
        send: () => call(c.order, "returnItems", returnItems({ lines: [{ skuId: SKU2, quantity: 1 }, { skuId: SKU2, quantity: 1 }] })),
        fields: ["lines[1].sku_id"],
        watch: [order(SHIPPING), sku(SKU2)],
      },
    ]);
  });

  // ---- GetAvailability: 1..1000 SKUs ----------------------------------------------

  describe("availability", () => {
    cases([
      {
        name: "rejects GetAvailability with no sku_ids, naming sku_ids",
        send: () => call(c.inventory, "getAvailability", { skuIds: [] }),
        fields: ["sku_ids"],
        watch: [sku(SKU)],
      },
      {
        name: `rejects GetAvailability with ${AVAILABILITY_SKUS_MAX + 1} sku_ids, naming sku_ids`,
        send: () => call(c.inventory, "getAvailability", { skuIds: Array.from({ length: AVAILABILITY_SKUS_MAX + 1 }, (_, i) => `av-${i}`) }),
        fields: ["sku_ids"],
        watch: [sku(SKU)],
      },
    ]);
  });

  // ---- enums: known values only, UNSPECIFIED is not a value -----------------------

  describe("enums", () => {
    const reasons: { what: string; reason: number }[] = [
      { what: "UNSPECIFIED (0)", reason: AdjustmentReason.ADJUSTMENT_REASON_UNSPECIFIED },
      { what: "the unknown value 99", reason: 99 },
      { what: "the negative value -1", reason: -1 },
    ];
    const statuses: { what: string; status: number }[] = [
      { what: "UNSPECIFIED (0)", status: TrackingStatus.TRACKING_STATUS_UNSPECIFIED },
      { what: "the unknown value 42", status: 42 },
      { what: "the negative value -1", status: -1 },
    ];
    cases([
      ...reasons.map(
        ({ what, reason }): Case => ({
          name: `rejects AdjustStock whose reason is ${what}, naming reason, and leaves on_hand and version unchanged`,
          send: () => call(c.inventory, "adjustStock", adjust({ reason: reason as AdjustmentReason })),
          fields: ["reason"],
          watch: [sku(SKU)],
        }),
      ),
      ...statuses.map(
        ({ what, status }): Case => ({
          name: `rejects RecordTrackingEvent whose status is ${what}, naming status, and records no event`,
          send: () => call(c.order, "recordTrackingEvent", track({ status: status as TrackingStatus })),
          fields: ["status"],
          watch: [order(SHIPPING)],
        }),
      ),
    ]);
  });

  // ---- SKU definitions --------------------------------------------------------------

  describe("UpsertSku", () => {
    const tooManyAttributes = Object.fromEntries(Array.from({ length: ATTRIBUTES_MAX + 1 }, (_, i) => [`k${i}`, "v"]));
    const longKey = "k".repeat(ATTRIBUTE_LENGTH_MAX + 1);
    cases([
      {
        name: "rejects a new SKU without a title, naming title, and does not create it",
        send: () => call(c.inventory, "upsertSku", upsert({ skuId: ABSENT_SKU, title: "" })),
        fields: ["title"],
        watch: [sku(ABSENT_SKU, true)],
      },
      {
        name: "rejects a title of only spaces, naming title, and leaves the SKU unchanged",
        send: () => call(c.inventory, "upsertSku", upsert({ title: "   " })),
        fields: ["title"],
        watch: [sku(SKU)],
      },
      {
        name: `rejects a title of ${TEXT_MAX + 1} characters, naming title, and leaves the SKU unchanged`,
        send: () => call(c.inventory, "upsertSku", upsert({ title: "t".repeat(TEXT_MAX + 1) })),
        fields: ["title"],
        watch: [sku(SKU)],
      },
      ...["", "eur", "EU", "EURO", "E1R", "ÉUR", " EUR"].map(
        (currency): Case => ({
          name: `rejects currency ${JSON.stringify(currency)}, naming currency, and leaves the SKU unchanged`,
          send: () => call(c.inventory, "upsertSku", upsert({ currency })),
          fields: ["currency"],
          watch: [sku(SKU)],
        }),
      ),
      {
        name: "rejects a negative price_minor, naming price_minor, and leaves the SKU unchanged",
        send: () => call(c.inventory, "upsertSku", upsert({ priceMinor: -1 })),
        fields: ["price_minor"],
        watch: [sku(SKU)],
      },
      ...(["safetyStock", "lowStockThreshold"] as const).flatMap((key): Case[] => {
        const field = key === "safetyStock" ? "safety_stock" : "low_stock_threshold";
        return [
          {
            name: `rejects a negative ${field}, naming ${field}, and leaves the SKU unchanged`,
            send: () => call(c.inventory, "upsertSku", upsert({ [key]: -1 })),
            fields: [field],
            watch: [sku(SKU)],
          },
          {
            name: `rejects a ${field} of 1,000,000,001, naming ${field}, and leaves the SKU unchanged`,
            send: () => call(c.inventory, "upsertSku", upsert({ [key]: QUANTITY_MAX + 1 })),
            fields: [field],
            watch: [sku(SKU)],
          },
        ];
      }),
      {
        name: `rejects ${ATTRIBUTES_MAX + 1} attributes, naming attributes, and leaves the SKU unchanged`,
        send: () => call(c.inventory, "upsertSku", upsert({ attributes: tooManyAttributes })),
        fields: ["attributes"],
        watch: [sku(SKU)],
      },
      {
        name: `rejects an attribute key of ${ATTRIBUTE_LENGTH_MAX + 1} characters, naming attributes[key], and leaves the SKU unchanged`,
        send: () => call(c.inventory, "upsertSku", upsert({ attributes: { [longKey]: "v" } })),
        fields: [`attributes[${longKey}]`],
        watch: [sku(SKU)],
      },
      {
        name: "rejects an empty attribute key, naming attributes[], and leaves the SKU unchanged",
        send: () => call(c.inventory, "upsertSku", upsert({ attributes: { "": "v" } })),
        fields: ["attributes[]"],
        watch: [sku(SKU)],
      },
      {
        name: `rejects an attribute value of ${ATTRIBUTE_LENGTH_MAX + 1} characters, naming attributes[colour], and leaves the SKU unchanged`,
        send: () => call(c.inventory, "upsertSku", upsert({ attributes: { colour: "v".repeat(ATTRIBUTE_LENGTH_MAX + 1) } })),
        fields: ["attributes[colour]"],
        watch: [sku(SKU)],
      },
      {
        name: 'rejects an update_mask path "colour", naming update_mask, and leaves the SKU unchanged',
        send: () => call(c.inventory, "upsertSku", upsert({ updateMask: ["title", "colour"] })),
        fields: ["update_mask"],
        watch: [sku(SKU)],
      },
      {
        name: 'rejects an update_mask naming sku_id (the identity, not a field to change), naming update_mask, and leaves the SKU unchanged',
        send: () => call(c.inventory, "upsertSku", upsert({ updateMask: ["sku_id"] })),
        fields: ["update_mask"],
        watch: [sku(SKU)],
      },
      {
        name: `rejects an update_mask of ${UPDATE_MASK_PATHS_MAX + 1} paths, naming update_mask once, and leaves the SKU unchanged`,
        send: () =>
          call(c.inventory, "upsertSku", upsert({ updateMask: Array.from({ length: UPDATE_MASK_PATHS_MAX + 1 }, (_, i) => `attributes.k${i}`) })),
        fields: ["update_mask"],
        watch: [sku(SKU)],
      },
      {
        name: 'rejects "*" together with another path, naming update_mask, and leaves the SKU unchanged',
        send: () => call(c.inventory, "upsertSku", upsert({ updateMask: ["*", "title"] })),
        fields: ["update_mask"],
        watch: [sku(SKU)],
      },
      {
        name: "rejects a masked title that is not set (it would become empty), naming title, and leaves the SKU unchanged",
        send: () => call(c.inventory, "upsertSku", upsert({ title: undefined, updateMask: ["title"] })),
        fields: ["title"],
        watch: [sku(SKU)],
      },
      {
        name: "rejects a new SKU without a currency (field left unset), naming currency, and does not create it",
        send: () => call(c.inventory, "upsertSku", upsert({ skuId: ABSENT_SKU, currency: undefined })),
        fields: ["currency"],
        watch: [sku(ABSENT_SKU, true)],
      },
    ]);
  });

  // ---- stock adjustments ------------------------------------------------------------

  describe("AdjustStock", () => {
    const R = AdjustmentReason;
    cases([
      {
        name: "rejects a delta of 0, naming delta, and leaves on_hand and version unchanged",
        send: () => call(c.inventory, "adjustStock", adjust({ delta: 0, reason: R.ADJUSTMENT_REASON_CORRECTION })),
        fields: ["delta"],
        watch: [sku(SKU)],
      },
      {
        name: "rejects a delta of +1,000,000,001, naming delta, and leaves on_hand and version unchanged",
        send: () => call(c.inventory, "adjustStock", adjust({ delta: QUANTITY_MAX + 1, reason: R.ADJUSTMENT_REASON_CORRECTION })),
        fields: ["delta"],
        watch: [sku(SKU)],
      },
      {
        name: "rejects a delta of -1,000,000,001, naming delta, and leaves on_hand and version unchanged",
        send: () => call(c.inventory, "adjustStock", adjust({ delta: -(QUANTITY_MAX + 1), reason: R.ADJUSTMENT_REASON_CORRECTION })),
        fields: ["delta"],
        watch: [sku(SKU)],
      },
      {
        name: "rejects RECEIVED with a negative delta, naming delta, and leaves on_hand and version unchanged",
        send: () => call(c.inventory, "adjustStock", adjust({ delta: -5, reason: R.ADJUSTMENT_REASON_RECEIVED })),
        fields: ["delta"],
        watch: [sku(SKU)],
      },
      {
        name: "rejects RETURNED with a negative delta, naming delta, and leaves on_hand and version unchanged",
        send: () => call(c.inventory, "adjustStock", adjust({ delta: -5, reason: R.ADJUSTMENT_REASON_RETURNED })),
        fields: ["delta"],
        watch: [sku(SKU)],
      },
      {
        name: "rejects DAMAGED with a positive delta, naming delta, and leaves on_hand and version unchanged",
        send: () => call(c.inventory, "adjustStock", adjust({ delta: 5, reason: R.ADJUSTMENT_REASON_DAMAGED })),
        fields: ["delta"],
        watch: [sku(SKU)],
      },
      {
        name: `rejects a note of ${TEXT_MAX + 1} characters, naming note, and leaves on_hand and version unchanged`,
        send: () => call(c.inventory, "adjustStock", adjust({ note: "n".repeat(TEXT_MAX + 1) })),
        fields: ["note"],
        watch: [sku(SKU)],
      },
    ]);
  });

  // ---- durations: 1 s .. 30 days ----------------------------------------------------

  describe("durations", () => {
    const bad: { what: string; d: Duration }[] = [
      { what: "999 ms, below 1 s", d: { seconds: 0, nanos: 999_000_000 } },
      { what: "zero", d: { seconds: 0, nanos: 0 } },
      { what: "30 days and 1 s", d: { seconds: TTL_SECONDS_MAX + 1, nanos: 0 } },
      { what: "30 days and 1 ms", d: { seconds: TTL_SECONDS_MAX, nanos: 1_000_000 } },
      { what: "5 s with negative nanos", d: { seconds: 5, nanos: -1 } },
      { what: "negative (-5 s)", d: { seconds: -5, nanos: 0 } },
      { what: "1 s with nanos of a whole second", d: { seconds: 1, nanos: 1_000_000_000 } },
    ];
    for (const { what, d } of bad) {
      cases([
        {
          name: `rejects a Reserve ttl of ${what}, naming ttl, and reserves nothing`,
          send: () => call(c.inventory, "reserve", reserve({ ttl: d })),
          fields: ["ttl"],
          watch: [sku(SKU), reservation(SKU, ABSENT_RES, true)],
        },
        {
          name: `rejects a CreateOrder payment_timeout of ${what}, naming payment_timeout, and creates no order`,
          send: () => call(c.order, "createOrder", createOrder({ paymentTimeout: d })),
          fields: ["payment_timeout"],
          watch: [order(ABSENT_ORDER, true), sku(SKU2)],
        },
      ]);
    }
  });

  // ---- paging ---------------------------------------------------------------------

  describe("ListAdjustments paging", () => {
    const forged = (text: string): string => Buffer.from(text).toString("base64url");
    const tokens: { what: string; token: () => string }[] = [
      { what: "plain garbage", token: () => "garbage" },
      { what: "a forged token for sequence 0", token: () => forged("adj:0") },
      { what: "a forged token that is not a number", token: () => forged("adj:x") },
      { what: "a forged token for a sequence beyond 2^53", token: () => forged("adj:9999999999999999") },
      { what: "an issued token with padding added", token: () => `${issuedToken}=` },
      { what: "an issued token with junk appended", token: () => `${issuedToken}!!!` },
      { what: "an issued token with a space inside", token: () => `${issuedToken.slice(0, 2)} ${issuedToken.slice(2)}` },
    ];
    cases([
      {
        name: "rejects a negative page_size, naming page_size",
        send: () => call(c.inventory, "listAdjustments", { skuId: SKU, pageSize: -1, pageToken: "" }),
        fields: ["page_size"],
        watch: [sku(SKU)],
      },
      {
        name: `rejects a page_size of ${PAGE_SIZE_MAX + 1}, naming page_size`,
        send: () => call(c.inventory, "listAdjustments", { skuId: SKU, pageSize: PAGE_SIZE_MAX + 1, pageToken: "" }),
        fields: ["page_size"],
        watch: [sku(SKU)],
      },
      ...tokens.map(
        ({ what, token }): Case => ({
          name: `rejects a page_token that is ${what}, naming page_token`,
          send: () => call(c.inventory, "listAdjustments", { skuId: SKU, pageSize: 1, pageToken: token() }),
          fields: ["page_token"],
          watch: [sku(SKU)],
        }),
      ),
    ]);

    it("accepts the page_token the server issued and serves the next page", async () => {
      const page = await call(c.inventory, "listAdjustments", { skuId: SKU, pageSize: 1, pageToken: issuedToken });
      expect(page.adjustments.map((a) => [a.delta, a.note])).to.deep.equal([[1, "second"]]);
    });
  });

  // ---- orders: free text and required fields ----------------------------------------

  describe("order text and required fields", () => {
    cases([
      {
        name: `rejects CancelOrder with a reason of ${TEXT_MAX + 1} characters, naming reason, and leaves the order awaiting payment`,
        send: () => call(c.order, "cancelOrder", { orderId: AWAITING, reason: "r".repeat(TEXT_MAX + 1) }),
        fields: ["reason"],
        watch: [order(AWAITING), sku(SKU2)],
      },
      {
        name: "rejects CreateShipment without a carrier, naming carrier, and ships nothing",
        send: () => call(c.order, "createShipment", shipment({ carrier: "" })),
        fields: ["carrier"],
        watch: [order(SHIPPING), sku(SKU2)],
      },
      {
        name: "rejects CreateShipment whose carrier is only spaces, naming carrier, and ships nothing",
        send: () => call(c.order, "createShipment", shipment({ carrier: "  " })),
        fields: ["carrier"],
        watch: [order(SHIPPING), sku(SKU2)],
      },
      {
        name: `rejects CreateShipment with a carrier of ${ID_MAX + 1} characters, naming carrier, and ships nothing`,
        send: () => call(c.order, "createShipment", shipment({ carrier: "c".repeat(ID_MAX + 1) })),
        fields: ["carrier"],
        watch: [order(SHIPPING), sku(SKU2)],
      },
      {
        name: `rejects CreateShipment with a tracking_number of ${ID_MAX + 1} characters, naming tracking_number, and ships nothing`,
        send: () => call(c.order, "createShipment", shipment({ trackingNumber: "1".repeat(ID_MAX + 1) })),
        fields: ["tracking_number"],
        watch: [order(SHIPPING), sku(SKU2)],
      },
      {
        name: "rejects RecordTrackingEvent without occurred_at, naming occurred_at, and records no event",
        send: () => call(c.order, "recordTrackingEvent", track({ occurredAt: undefined })),
        fields: ["occurred_at"],
        watch: [order(SHIPPING)],
      },
      {
        name: "rejects RecordTrackingEvent whose occurred_at is beyond any representable time, naming occurred_at, and records no event",
        send: () => {
          // RecordTrackingEventRequest, by hand: a Date cannot hold this time, so the generated client cannot send it.
          const w = new BinaryWriter();
          w.uint32((1 << 3) | 2).string(SHIPPING);
          w.uint32((2 << 3) | 2).string(SHIPMENT);
          w.uint32((3 << 3) | 2).string("ev-1");
          w.uint32((4 << 3) | 0).int32(TrackingStatus.TRACKING_STATUS_IN_TRANSIT);
          w.uint32((7 << 3) | 2).fork().uint32((1 << 3) | 0).int64(TIMESTAMP_SECONDS_BEYOND_DATE).join();
          return rawCall("/quartermaster.v1.OrderService/RecordTrackingEvent", w.finish());
        },
        fields: ["occurred_at"],
        watch: [order(SHIPPING)],
      },
      {
        name: `rejects RecordTrackingEvent with a description of ${TEXT_MAX + 1} characters, naming description, and records no event`,
        send: () => call(c.order, "recordTrackingEvent", track({ description: "d".repeat(TEXT_MAX + 1) })),
        fields: ["description"],
        watch: [order(SHIPPING)],
      },
      {
        name: `rejects RecordTrackingEvent with a location of ${TEXT_MAX + 1} characters, naming location, and records no event`,
        send: () => call(c.order, "recordTrackingEvent", track({ location: "l".repeat(TEXT_MAX + 1) })),
        fields: ["location"],
        watch: [order(SHIPPING)],
      },
    ]);
  });

  // ---- several violations in one request --------------------------------------------

  describe("several violations", () => {
    cases([
      {
        name: "lists every violation of a CreateOrder that breaks five rules, and creates no order",
        send: () =>
          call(c.order, "createOrder", {
            orderId: ABSENT_ORDER,
            customerId: "cust 1",
            lines: [
              { skuId: SKU2, quantity: 0 },
              { skuId: "a/b", quantity: 1 },
              { skuId: SKU2, quantity: 1 },
            ],
            paymentTimeout: { seconds: 0, nanos: 0 },
          }),
        fields: ["customer_id", "lines[0].quantity", "lines[1].sku_id", "lines[2].sku_id", "payment_timeout"],
        watch: [order(ABSENT_ORDER, true), sku(SKU2)],
      },
      {
        name: "lists every violation of an AdjustStock that breaks four rules, and leaves on_hand and version unchanged",
        send: () =>
          call(c.inventory, "adjustStock", {
            skuId: SKU,
            locationId: "",
            delta: -5,
            reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED,
            note: "n".repeat(TEXT_MAX + 1),
            idempotencyKey: "key/1",
          }),
        fields: ["location_id", "delta", "note", "idempotency_key"],
        watch: [sku(SKU)],
      },
      {
        name: "lists both violations of a delta that is out of range and contradicts its reason",
        send: () => call(c.inventory, "adjustStock", adjust({ delta: -(QUANTITY_MAX + 1), reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED })),
        fields: ["delta", "delta"],
        watch: [sku(SKU)],
      },
      {
        name: "lists every violation of an UpsertSku that breaks four rules, and leaves the SKU unchanged",
        send: () => call(c.inventory, "upsertSku", upsert({ title: "", currency: "usd", priceMinor: -1, safetyStock: -1 })),
        fields: ["title", "currency", "price_minor", "safety_stock"],
        watch: [sku(SKU)],
      },
      {
        name: "lists every violation of a RecordTrackingEvent that breaks three rules, and records no event",
        send: () =>
          call(c.order, "recordTrackingEvent", track({ status: TrackingStatus.TRACKING_STATUS_UNSPECIFIED, occurredAt: undefined, description: "d".repeat(TEXT_MAX + 1) })),
        fields: ["status", "occurred_at", "description"],
        watch: [order(SHIPPING)],
      },
      {
        name: "lists every violation of a Reserve that breaks four rules, and reserves nothing",
        send: () => call(c.inventory, "reserve", { reservationId: "", skuId: SKU, quantity: 0, locationId: "a b", ttl: { seconds: -1, nanos: 0 } }),
        fields: ["reservation_id", "quantity", "location_id", "ttl"],
        watch: [sku(SKU)],
      },
    ]);
  });

  // ---- bytes that are not a valid message ---------------------------------------------

  describe("undecodable requests", () => {
    /** A ReserveRequest for RAW_SKU with the quantity field written by hand. */
    function reserveWithQuantity(quantity: string): Uint8Array {
      const w = new BinaryWriter();
      w.uint32((1 << 3) | 2).string("raw-res");
      w.uint32((2 << 3) | 2).string(RAW_SKU);
      w.uint32((3 << 3) | 0).int64(quantity);
      return w.finish();
    }
    const garbage: { what: string; bytes: () => Uint8Array }[] = [
      { what: "an over-long varint", bytes: () => Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]) },
      { what: "a string field longer than the message", bytes: () => Uint8Array.from([0x0a, 0x7f, 0x61]) },
      { what: "the invalid wire type 7", bytes: () => Uint8Array.from([0x0f, 0x01, 0x02]) },
      { what: "a quantity of 2^53 + 1 (beyond exact doubles)", bytes: () => reserveWithQuantity("9007199254740993") },
      { what: "a quantity of -(2^53 + 1)", bytes: () => reserveWithQuantity("-9007199254740993") },
      { what: "a quantity of 2^63 - 1", bytes: () => reserveWithQuantity("9223372036854775807") },
      {
        what: "a ttl of 2^60 seconds",
        bytes: () => {
          const w = new BinaryWriter();
          w.uint32((1 << 3) | 2).string("raw-res");
          w.uint32((2 << 3) | 2).string(RAW_SKU);
          w.uint32((3 << 3) | 0).int64(1);
          w.uint32((5 << 3) | 2).fork().uint32((1 << 3) | 0).int64("1152921504606846976").join();
          return w.finish();
        },
      },
    ];
    let served = 0;
    for (const { what, bytes } of garbage) {
      it(`rejects a Reserve whose bytes hold ${what} with INVALID_ARGUMENT naming request, reserves nothing, and keeps serving`, async () => {
        await runCase({
          name: what,
          send: () => rawCall(RESERVE, bytes()),
          fields: ["request"],
          watch: [sku(RAW_SKU), reservation(RAW_SKU, "raw-res", true)],
        });
        // The same server answers the next, valid call on the same channel.
        const id = `raw-ok-${served++}`;
        const r = await call(c.inventory, "reserve", reserve({ reservationId: id, skuId: RAW_SKU, quantity: 1 }));
        expect([r.reservationId, r.quantity]).to.deep.equal([id, 1]);
        await call(c.inventory, "releaseReservation", { reservationId: id, skuId: RAW_SKU });
      });
    }

    it("rejects an UpsertSku whose price_minor is 2^53 + 1 with INVALID_ARGUMENT naming request, and does not create the SKU", async () => {
      const w = new BinaryWriter();
      w.uint32((1 << 3) | 2).string(ABSENT_SKU);
      w.uint32((2 << 3) | 2).string("Too dear");
      w.uint32((3 << 3) | 0).int64("9007199254740993");
      w.uint32((4 << 3) | 2).string("EUR");
      await runCase({
        name: "price",
        send: () => rawCall("/quartermaster.v1.InventoryService/UpsertSku", w.finish()),
        fields: ["request"],
        watch: [sku(ABSENT_SKU, true)],
      });
    });

    it("rejects an UpsertSku whose title is not valid UTF-8 with INVALID_ARGUMENT naming title, and does not create the SKU", async () => {
      const w = new BinaryWriter();
      w.uint32((1 << 3) | 2).string(ABSENT_SKU);
      w.uint32((2 << 3) | 2).bytes(Uint8Array.from([0x41, 0xff, 0xfe, 0x42]));
      w.uint32((4 << 3) | 2).string("EUR");
      await runCase({
        name: "utf8",
        send: () => rawCall("/quartermaster.v1.InventoryService/UpsertSku", w.finish()),
        fields: ["title"],
        watch: [sku(ABSENT_SKU, true)],
      });
    });

    it("accepts a hand-encoded Reserve of 1 unit on the same raw channel, so the raw path itself is sound", async () => {
      const reply = await rawCall(RESERVE, reserveWithQuantity("1"));
      expect(reply.length).to.be.greaterThan(0);
      const r = await call(c.inventory, "getReservation", { reservationId: "raw-res", skuId: RAW_SKU });
      expect(r.quantity).to.equal(1);
      await call(c.inventory, "releaseReservation", { reservationId: "raw-res", skuId: RAW_SKU });
    });
  });

  // ---- the limits themselves are accepted -------------------------------------------

  describe("values at the limits", () => {
    it(`accepts an id of exactly ${ID_MAX} characters using every allowed character class`, async () => {
      const id = "Az09._:-".repeat(ID_MAX / 8);
      expect(id).to.have.length(ID_MAX);
      await call(c.inventory, "upsertSku", upsert({ skuId: id, title: "x".repeat(TEXT_MAX) }));
      expect((await call(c.inventory, "getSku", { skuId: id })).skuId).to.equal(id);
    });

    it(`accepts ${ATTRIBUTES_MAX} attributes whose keys and values are ${ATTRIBUTE_LENGTH_MAX} characters`, async () => {
      const attributes = Object.fromEntries(
        Array.from({ length: ATTRIBUTES_MAX }, (_, i) => [`${i}`.padStart(ATTRIBUTE_LENGTH_MAX, "k"), "v".repeat(ATTRIBUTE_LENGTH_MAX)]),
      );
      const s = await call(c.inventory, "upsertSku", upsert({ skuId: "lim-attrs", attributes }));
      expect(Object.keys(s.attributes)).to.have.length(ATTRIBUTES_MAX);
    });

    it(`accepts a delta and a reservation of ${QUANTITY_MAX} units, a ${TEXT_MAX}-character note and a ttl of exactly 30 days`, async () => {
      await call(c.inventory, "upsertSku", upsert({ skuId: "lim-qty", allowBackorder: false, safetyStock: 0 }));
      const level = await call(c.inventory, "adjustStock", adjust({ skuId: "lim-qty", delta: QUANTITY_MAX, note: "n".repeat(TEXT_MAX) }));
      expect(level.onHand).to.equal(QUANTITY_MAX);
      const r = await call(c.inventory, "reserve", reserve({ reservationId: "lim-r", skuId: "lim-qty", quantity: QUANTITY_MAX, ttl: { seconds: TTL_SECONDS_MAX, nanos: 0 } }));
      expect(r.quantity).to.equal(QUANTITY_MAX);
    });

    it("accepts a negative CORRECTION and a negative DAMAGED adjustment", async () => {
      await call(c.inventory, "upsertSku", upsert({ skuId: "lim-adj" }));
      await call(c.inventory, "adjustStock", adjust({ skuId: "lim-adj", delta: 10 }));
      const a = await call(c.inventory, "adjustStock", adjust({ skuId: "lim-adj", delta: -1, reason: AdjustmentReason.ADJUSTMENT_REASON_CORRECTION }));
      const b = await call(c.inventory, "adjustStock", adjust({ skuId: "lim-adj", delta: -2, reason: AdjustmentReason.ADJUSTMENT_REASON_DAMAGED }));
      expect([a.onHand, b.onHand]).to.deep.equal([9, 7]);
    });

    it(`accepts a page_size of ${PAGE_SIZE_MAX} and ${AVAILABILITY_SKUS_MAX} sku_ids in one availability call`, async () => {
      const page = await call(c.inventory, "listAdjustments", { skuId: SKU, pageSize: PAGE_SIZE_MAX, pageToken: "" });
      expect(page.adjustments.length).to.be.greaterThan(1);
      const skuIds = [SKU, ...Array.from({ length: AVAILABILITY_SKUS_MAX - 1 }, (_, i) => `lim-av-${i}`)];
      const res = await call(c.inventory, "getAvailability", { skuIds }, { deadlineMs: 30_000 });
      expect(res.items).to.have.length(AVAILABILITY_SKUS_MAX);
      expect(res.items[0]?.found).to.equal(true);
    });

    it(`accepts an order of ${LINES_MAX} lines (rejecting it for unknown SKUs, not for its size) and a 1 s payment_timeout`, async () => {
      const o = await call(
        c.order,
        "createOrder",
        createOrder({ orderId: "lim-order", lines: distinctLines(LINES_MAX), paymentTimeout: { seconds: 1, nanos: 0 } }),
        { deadlineMs: 30_000 },
      );
      expect(o.state).to.equal(OrderState.ORDER_STATE_REJECTED);
      expect(o.rejectionReasons.length).to.be.greaterThan(0);
    });
  });
});
