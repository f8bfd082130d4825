import { expect } from "chai";
import { Metadata, type ServiceError, status as GrpcStatus } from "@grpc/grpc-js";
import {
  Adjustment,
  AdjustmentReason,
  AvailabilityItem,
  GetAvailabilityResponse,
  ListAdjustmentsResponse,
  Reservation,
  ReservationState,
  Sku,
  StockLevel,
} from "../../src/gen/quartermaster/v1/inventory";
import { LineItem, LineRejection, Order, OrderLine, OrderState, Return, Shipment, TrackingEvent, TrackingStatus } from "../../src/gen/quartermaster/v1/order";
import { parseServerAddress } from "../../src/cli/address";
import { UsageError } from "../../src/cli/args";
import { connectionFailureCause } from "../../src/cli/connection";
import {
  adjustmentJson,
  availabilityItemJson,
  availabilityJson,
  listAdjustmentsJson,
  orderJson,
  reservationJson,
  skuJson,
  stockLevelJson,
} from "../../src/cli/json";
import { formatConnectionFailure } from "../../src/cli/qmctl";
import { closest, editDistance } from "../../src/cli/suggest";

describe("qmctl --addr forms", () => {
  it("reads host:port, :port, a bare port, [IPv6]:port, http:// and dns: forms as host:port", () => {
    const cases: [string, string][] = [
      ["127.0.0.1:17051", "127.0.0.1:17051"],
      ["localhost:17051", "localhost:17051"],
      ["qm-1.internal:50051", "qm-1.internal:50051"],
      [":17051", "127.0.0.1:17051"],
      ["17051", "127.0.0.1:17051"],
      [" 17051 ", "127.0.0.1:17051"],
      ["[::1]:17051", "[::1]:17051"],
      ["[fe80::1%eth0]:17051", "[fe80::1%eth0]:17051"],
      ["http://127.0.0.1:17051", "127.0.0.1:17051"],
      ["http://localhost:17051/", "localhost:17051"],
      ["HTTP://localhost:17051", "localhost:17051"],
      ["dns:localhost:17051", "localhost:17051"],
      ["dns:///localhost:17051", "localhost:17051"],
      ["dns:///[::1]:17051", "[::1]:17051"],
    ];
    for (const [text, target] of cases) {
      expect(parseServerAddress(text, "--addr"), text).to.deep.equal({ target, source: "--addr" });
    }
  });

  it("reads https://HOST:PORT as the same target over TLS", () => {
    expect(parseServerAddress("https://qm.example:443", "--addr")).to.deep.equal({ target: "qm.example:443", source: "--addr", tls: true });
    expect(parseServerAddress("HTTPS://[::1]:17051/", "QM_ADDR")).to.deep.equal({ target: "[::1]:17051", source: "QM_ADDR", tls: true });
  });

  it("refuses other forms with a message naming the setting, the reason and the accepted forms", () => {
    const cases: [string, string][] = [
      ["", "empty address"],
      ["localhost", "no port; expected HOST:PORT"],
      ["localhost:", 'port "" is not a number'],
      ["localhost:0", 'port "0" is not a number from 1 to 65535'],
      ["localhost:65536", 'port "65536"'],
      ["70000", 'port "70000"'],
      ["::1:17051", "an IPv6 address needs brackets"],
      ["[::1]", "no port after the IPv6 address"],
      ["[nope]:1", "not an IPv6 address in brackets"],
      ["https:localhost:17051", "expected https://HOST:PORT"],
      ["http://localhost:17051/v1", "a path cannot be part"],
      ["http:localhost:17051", "expected http://HOST:PORT"],
      ["dns://8.8.8.8/localhost:17051", "DNS server authority"],
      ["unix:/tmp/qm.sock", 'unsupported scheme "unix:"'],
      ["grpc://localhost:17051", 'unsupported scheme "grpc:"'],
      ["host_name:17051", '"host_name" is not a host name'],
    ];
    for (const [text, message] of cases) {
      expect(() => parseServerAddress(text, "--addr"), text)
        .to.throw(UsageError, message)
        .with.property("message")
        .that.matches(/^--addr ".*": .*\(accepted: HOST:PORT, :PORT, PORT, \[IPv6\]:PORT, http:\/\/HOST:PORT, https:\/\/HOST:PORT or dns:HOST:PORT\)$/);
    }
    expect(() => parseServerAddress("nope", "QM_ADDR")).to.throw(UsageError, 'QM_ADDR="nope": no port');
  });
});

describe("qmctl did-you-mean", () => {
  it("counts insertions, deletions, substitutions and neighbour swaps as one edit each", () => {
    expect(editDistance("json", "json")).to.equal(0);
    expect(editDistance("jsno", "json")).to.equal(1);
    expect(editDistance("adr", "addr")).to.equal(1);
    expect(editDistance("qtx", "qty")).to.equal(1);
    expect(editDistance("kitten", "sitting")).to.equal(3);
    expect(editDistance("", "abc")).to.equal(3);
  });

  it("offers only names within two edits and less than half the longer name, ignoring case", () => {
    expect(closest("JSON", ["addr", "json"])).to.deep.equal(["json"]);
    expect(closest("x", ["id", "sku"])).to.deep.equal([]);
    expect(closest("quantity", ["qty", "sku"])).to.deep.equal([]);
    expect(closest("page-siz", ["page-size", "page-token"])).to.deep.equal(["page-size"]);
    expect(closest("sku gat", ["sku get", "sku upsert", "sku adjust"])).to.deep.equal(["sku get"]);
  });
});

describe("qmctl --json output", () => {
  it("prints a SKU that is not found with found false and every count as 0", () => {
    const response = GetAvailabilityResponse.fromPartial({ items: [{ skuId: "NOPE" }] });
    expect(JSON.stringify(availabilityJson(response))).to.equal(
      '{"items":[{"skuId":"NOPE","found":false,"onHand":0,"reserved":0,"committed":0,"available":0,"version":0}]}',
    );
  });

  it("prints every field of every message, so a field added to the proto cannot be silently missing", () => {
    // The generated fromPartial({}) object has one key per proto field, defaults included.
    const pairs: [string, object, object][] = [
      ["Sku", Sku.fromPartial({}), skuJson(Sku.fromPartial({}))],
      ["StockLevel", StockLevel.fromPartial({}), stockLevelJson(StockLevel.fromPartial({}))],
      ["Adjustment", Adjustment.fromPartial({}), adjustmentJson(Adjustment.fromPartial({}))],
      ["ListAdjustmentsResponse", ListAdjustmentsResponse.fromPartial({}), listAdjustmentsJson(ListAdjustmentsResponse.fromPartial({}))],
      ["AvailabilityItem", AvailabilityItem.fromPartial({}), availabilityItemJson(AvailabilityItem.fromPartial({}))],
      ["Reservation", Reservation.fromPartial({}), reservationJson(Reservation.fromPartial({}))],
      ["Order", Order.fromPartial({}), orderJson(Order.fromPartial({}))],
    ];
    for (const [name, message, json] of pairs) {
      expect(Object.keys(json).sort(), name).to.deep.equal(Object.keys(message).sort());
    }
    const nested = orderJson(
      Order.fromPartial({
        lines: [OrderLine.fromPartial({})],
        shipments: [Shipment.fromPartial({ lines: [LineItem.fromPartial({})], events: [TrackingEvent.fromPartial({})] })],
        rejectionReasons: [LineRejection.fromPartial({})],
        returns: [Return.fromPartial({})],
      }),
    ) as unknown as {
      lines: object[];
      shipments: { lines: object[]; events: object[] }[];
      rejectionReasons: object[];
      returns: object[];
    };
    expect(Object.keys(nested.lines[0] ?? {}).sort()).to.deep.equal(Object.keys(OrderLine.fromPartial({})).sort());
    expect(Object.keys(nested.shipments[0] ?? {}).sort()).to.deep.equal(Object.keys(Shipment.fromPartial({})).sort());
    expect(Object.keys(nested.shipments[0]?.lines[0] ?? {}).sort()).to.deep.equal(["quantity", "skuId"]);
    expect(Object.keys(nested.shipments[0]?.events[0] ?? {}).sort()).to.deep.equal(Object.keys(TrackingEvent.fromPartial({})).sort());
    expect(Object.keys(nested.rejectionReasons[0] ?? {}).sort()).to.deep.equal(Object.keys(LineRejection.fromPartial({})).sort());
    expect(Object.keys(nested.returns[0] ?? {}).sort()).to.deep.equal(Object.keys(Return.fromPartial({})).sort());
  });

  it("spells enums by their proto names, times as RFC 3339, unset times as null, and keeps zeros and false", () => {
    const created = new Date("2026-11-23T14:06:58.178Z");
    const order = Order.fromPartial({
      orderId: "o-1",
      state: OrderState.ORDER_STATE_PAID,
      lines: [{ skuId: "SKU-1", quantity: 3, locationId: "WH1", reservationId: "order/o-1/0" }],
      shipments: [
        {
          shipmentId: "s-1",
          status: TrackingStatus.TRACKING_STATUS_IN_TRANSIT,
          events: [{ eventId: "e-1", status: TrackingStatus.TRACKING_STATUS_IN_TRANSIT, occurredAt: created }],
        },
      ],
      returns: [{ returnId: "r-1", restock: false }],
      createdAt: created,
      version: 4,
    });
    const json = orderJson(order);
    expect(json).to.deep.include({ state: "ORDER_STATE_PAID", createdAt: "2026-11-23T14:06:58.178Z", updatedAt: null, paymentDeadline: null, version: 4 });
    expect(json["lines"]).to.deep.equal([
      { skuId: "SKU-1", quantity: 3, reservationId: "order/o-1/0", locationId: "WH1", shippedQuantity: 0, returnedQuantity: 0 },
    ]);
    expect(json["shipments"]).to.deep.equal([
      {
        shipmentId: "s-1",
        lines: [],
        carrier: "",
        trackingNumber: "",
        status: "TRACKING_STATUS_IN_TRANSIT",
        events: [{ eventId: "e-1", status: "TRACKING_STATUS_IN_TRANSIT", location: "", description: "", occurredAt: "2026-11-23T14:06:58.178Z", recordedAt: null }],
        createdAt: null,
      },
    ]);
    expect(json["returns"]).to.deep.equal([{ returnId: "r-1", lines: [], restock: false, createdAt: null }]);
    expect(reservationJson(Reservation.fromPartial({ state: ReservationState.RESERVATION_STATE_COMMITTED })).state).to.equal(
      "RESERVATION_STATE_COMMITTED",
    );
    expect(adjustmentJson(Adjustment.fromPartial({ reason: AdjustmentReason.ADJUSTMENT_REASON_CYCLE_COUNT })).reason).to.equal(
      "ADJUSTMENT_REASON_CYCLE_COUNT",
    );
    // A value a newer server sends and this build does not know stays a number, as protobuf's JSON mapping says.
    expect(orderJson(Order.fromPartial({ state: 42 as OrderState })).state).to.equal(42);
    expect(orderJson(Order.fromPartial({})).state).to.equal("ORDER_STATE_UNSPECIFIED");
  });

  it("reads back through the generated fromJSON unchanged", () => {
    const sku = Sku.fromPartial({
      skuId: "SKU-1",
      title: "Blue mug",
      priceMinor: 1299,
      currency: "EUR",
      attributes: { b: "2", a: "1" },
      levels: [{ locationId: "WH1", onHand: 100, reserved: 0, committed: 0, available: 100 }],
      onHand: 100,
      available: 100,
      version: 2,
      createdAt: new Date("2026-01-01T00:00:00.000Z"),
      updatedAt: new Date("2026-01-01T00:00:01.000Z"),
    });
    const text = JSON.stringify(skuJson(sku));
    expect(text).to.contain('"attributes":{"a":"1","b":"2"}').and.contain('"lowStock":false').and.contain('"reserved":0');
    expect(Sku.fromJSON(JSON.parse(text))).to.deep.equal(sku);
  });
});

describe("qmctl connection failures", () => {
  function failure(code: GrpcStatus, details: string): ServiceError {
    return Object.assign(new Error(`${code}: ${details}`), { code, details, metadata: new Metadata() });
  }
  const refused = failure(
    GrpcStatus.UNAVAILABLE,
    "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:17052. Resolution note: ",
  );

  it("names the address, the setting it came from and the likely causes", () => {
    expect(formatConnectionFailure(refused, { target: "127.0.0.1:17052", source: "--addr" }, 10_000, false).split("\n")).to.deep.equal([
      "error: cannot reach a Quartermaster server at 127.0.0.1:17052 (--addr): connection refused",
      "  Is the server running there, and is --addr right?",
    ]);
    expect(formatConnectionFailure(refused, { target: "qm:1", source: "QM_ADDR" }, 10_000, false)).to.contain("(QM_ADDR)").and.contain("is QM_ADDR right?");
    expect(formatConnectionFailure(refused, { target: "127.0.0.1:50051", source: "default" }, 10_000, false).split("\n")).to.deep.equal([
      "error: cannot reach a Quartermaster server at 127.0.0.1:50051 (the default address): connection refused",
      "  Is the server running? qmctl used 127.0.0.1:50051 because neither --addr nor QM_ADDR is set.",
    ]);
  });

  it("prints one JSON object with the status code and the address under --json", () => {
    const json = JSON.parse(formatConnectionFailure(refused, { target: "127.0.0.1:17052", source: "--addr" }, 10_000, true)) as unknown;
    expect(json).to.deep.equal({
      error: {
        code: "UNAVAILABLE",
        codeNumber: 14,
        message: "cannot reach a Quartermaster server at 127.0.0.1:17052 (--addr): connection refused",
        addr: "127.0.0.1:17052",
        addrSource: "--addr",
      },
    });
  });

  it("shortens grpc-js's causes and drops its empty resolution note", () => {
    expect(connectionFailureCause(failure(GrpcStatus.UNAVAILABLE, "Name resolution failed for target dns:nope.invalid:1"), 1000)).to.equal(
      "the host name does not resolve",
    );
    expect(connectionFailureCause(failure(GrpcStatus.DEADLINE_EXCEEDED, "Deadline exceeded after 2.001s,Waiting for LB pick"), 2000)).to.equal(
      "no connection within the 2000 ms deadline",
    );
    expect(connectionFailureCause(failure(GrpcStatus.UNIMPLEMENTED, "Received HTTP status code 404"), 1000)).to.equal("it answers HTTP 404, not gRPC");
    expect(connectionFailureCause(failure(GrpcStatus.UNAVAILABLE, "No connection established. Last error: Error: socket hang up. Resolution note: "), 1000)).to.equal(
      "No connection established. Last error: Error: socket hang up",
    );
  });
});
