import { readFileSync } from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { Metadata, type ServiceError, status as GrpcStatus } from "@grpc/grpc-js";
import { Any } from "../../src/gen/google/protobuf/any";
import { BadRequest, ErrorInfo } from "../../src/gen/google/rpc/error_details";
import { Status } from "../../src/gen/google/rpc/status";
import { AdjustmentReason } from "../../src/gen/quartermaster/v1/inventory";
import { TrackingStatus } from "../../src/gen/quartermaster/v1/order";
import {
  ADJUSTMENT_REASONS,
  ORDER_STATES,
  TRACKING_STATUSES,
  UsageError,
  durationFromMs,
  parseDurationMs,
  parseInteger,
  parseLine,
  parseTime,
} from "../../src/cli/args";
import { ADDR_DEFAULT, type ParsedCommandLine, TIMEOUT_MS_DEFAULT, parseCommandLine } from "../../src/cli/parse";
import { EXIT_USAGE, exitCodeForStatus, formatServiceError, run } from "../../src/cli/qmctl";
import { renderTable } from "../../src/cli/table";
import { BAD_REQUEST_TYPE_URL, ERROR_INFO_TYPE_URL, decodeStatusDetails } from "../../src/cli/status_details";

const NO_ENV: Readonly<Record<string, string | undefined>> = {};

function parseCall(argv: string[], env = NO_ENV): Extract<ParsedCommandLine, { kind: "call" }> {
  const parsed = parseCommandLine(argv, env);
  if (parsed.kind !== "call") throw new Error(`expected a call, got ${parsed.kind === "help" ? `help:\n${parsed.text}` : parsed.kind}`);
  return parsed;
}

function usageErrorOf(argv: string[]): UsageError {
  try {
    parseCommandLine(argv, NO_ENV);
  } catch (err) {
    if (err instanceof UsageError) return err;
    throw err;
  }
  throw new Error(`expected a usage error for: ${argv.join(" ")}`);
}

describe("qmctl argument parsing", () => {
  describe("durations", () => {
    it("reads 30s, 15m, 2h, 1d, 500ms and sums such as 1h30m as milliseconds", () => {
      expect(parseDurationMs("30s", "--ttl")).to.equal(30_000);
      expect(parseDurationMs("15m", "--ttl")).to.equal(900_000);
      expect(parseDurationMs("2h", "--ttl")).to.equal(7_200_000);
      expect(parseDurationMs("1d", "--ttl")).to.equal(86_400_000);
      expect(parseDurationMs("500ms", "--ttl")).to.equal(500);
      expect(parseDurationMs("1h30m", "--ttl")).to.equal(5_400_000);
      expect(parseDurationMs("0s", "--ttl")).to.equal(0);
    });

    it("refuses bare numbers, fractions, negatives, unknown units and trailing junk, naming the flag", () => {
      for (const bad of ["15", "", "m", "15x", "-5m", "1.5h", "15m ", "15 m", "1h30", "1m1m1m1m1m1m1m1m1m"]) {
        expect(() => parseDurationMs(bad, "--ttl"), bad).to.throw(UsageError, "--ttl");
      }
    });

    it("turns milliseconds into a protobuf Duration of seconds and nanos", () => {
      expect(durationFromMs(1500)).to.deep.equal({ seconds: 1, nanos: 500_000_000 });
      expect(durationFromMs(900_000)).to.deep.equal({ seconds: 900, nanos: 0 });
    });
  });

  describe("integers", () => {
    it("passes zero and negatives through for the server to judge", () => {
      expect(parseInteger("0", "--qty")).to.equal(0);
      expect(parseInteger("-5", "--delta")).to.equal(-5);
      expect(parseInteger("+7", "--delta")).to.equal(7);
    });

    it("refuses what is not an exact integer", () => {
      for (const bad of ["", "1.5", "1e3", "0x10", "ten", " 1", "9007199254740993"]) {
        expect(() => parseInteger(bad, "--qty"), bad).to.throw(UsageError, "--qty");
      }
    });
  });

  describe("lines", () => {
    it("reads SKU:QTY, taking the quantity after the last colon so ids may contain colons", () => {
      expect(parseLine("SKU-1:2", "--line")).to.deep.equal({ skuId: "SKU-1", quantity: 2 });
      expect(parseLine("acme:SKU-1:3", "--line")).to.deep.equal({ skuId: "acme:SKU-1", quantity: 3 });
      expect(parseLine("SKU-1:0", "--line")).to.deep.equal({ skuId: "SKU-1", quantity: 0 });
    });

    it("refuses a line without a SKU or a whole quantity", () => {
      for (const bad of ["SKU-1", ":2", "SKU-1:", "SKU-1:two", "SKU-1:1.5"]) {
        expect(() => parseLine(bad, "--line"), bad).to.throw(UsageError, "--line");
      }
    });
  });

  describe("enums", () => {
    it("accepts short names in any case, with - or _, and the full proto name", () => {
      expect(ADJUSTMENT_REASONS.parse("received", "--reason")).to.equal(AdjustmentReason.ADJUSTMENT_REASON_RECEIVED);
      expect(ADJUSTMENT_REASONS.parse("DAMAGED", "--reason")).to.equal(AdjustmentReason.ADJUSTMENT_REASON_DAMAGED);
      expect(ADJUSTMENT_REASONS.parse("cycle-count", "--reason")).to.equal(AdjustmentReason.ADJUSTMENT_REASON_CYCLE_COUNT);
      expect(ADJUSTMENT_REASONS.parse("ADJUSTMENT_REASON_RETURNED", "--reason")).to.equal(
        AdjustmentReason.ADJUSTMENT_REASON_RETURNED,
      );
      expect(TRACKING_STATUSES.parse("in_transit", "--status")).to.equal(TrackingStatus.TRACKING_STATUS_IN_TRANSIT);
      expect(TRACKING_STATUSES.parse("out-for-delivery", "--status")).to.equal(
        TrackingStatus.TRACKING_STATUS_OUT_FOR_DELIVERY,
      );
    });

    it("refuses unknown names and UNSPECIFIED, listing the known ones", () => {
      expect(() => ADJUSTMENT_REASONS.parse("lost", "--reason")).to.throw(UsageError, "received, correction, damaged");
      expect(() => ADJUSTMENT_REASONS.parse("unspecified", "--reason")).to.throw(UsageError);
      expect(() => TRACKING_STATUSES.parse("delivered!", "--status")).to.throw(UsageError);
    });

    it("prints values short and lower case, and unknown numbers as numbers", () => {
      expect(TRACKING_STATUSES.format(TrackingStatus.TRACKING_STATUS_IN_TRANSIT)).to.equal("in_transit");
      expect(ORDER_STATES.format(5)).to.equal("shipped");
      expect(ORDER_STATES.format(99)).to.equal("99");
      expect(ORDER_STATES.format(0)).to.equal("-");
    });
  });

  describe("times", () => {
    it("reads ISO 8601 times with a date and refuses anything else", () => {
      expect(parseTime("2025-01-31T12:00:00Z", "--occurred-at").toISOString()).to.equal("2025-01-31T12:00:00.000Z");
      expect(parseTime("2025-01-31T13:00:00+01:00", "--occurred-at").toISOString()).to.equal("2025-01-31T12:00:00.000Z");
      for (const bad of ["yesterday", "12:00", "2025-13-45T00:00:00Z", "1700000000"]) {
        expect(() => parseTime(bad, "--occurred-at"), bad).to.throw(UsageError, "--occurred-at");
      }
    });
  });

  describe("command lines", () => {
    it("builds CreateOrder from repeated --line flags and a payment timeout", () => {
      const parsed = parseCall(["order", "create", "o1", "--customer", "c1", "--line", "SKU-1:2", "--line", "SKU-2:1", "--payment-timeout", "30m"]);
      expect(parsed.command).to.equal("order create");
      expect(parsed.call.method).to.equal("OrderService/CreateOrder");
      expect(parsed.call.request).to.deep.equal({
        orderId: "o1",
        customerId: "c1",
        lines: [
          { skuId: "SKU-1", quantity: 2 },
          { skuId: "SKU-2", quantity: 1 },
        ],
        paymentTimeout: { seconds: 1800, nanos: 0 },
      });
    });

    it("leaves an absent duration unset so that the server's default applies", () => {
      const parsed = parseCall(["order", "create", "o1", "--customer", "c1", "--line", "SKU-1:2"]);
      expect(parsed.call.request).to.have.property("paymentTimeout", undefined);
    });

    it("builds AdjustStock with a negative delta written as a separate argument", () => {
      const parsed = parseCall(["sku", "adjust", "SKU-1", "--location", "WH1", "--delta", "-5", "--reason", "damaged", "--key", "k1", "--note", "dropped"]);
      expect(parsed.call.request).to.deep.equal({
        skuId: "SKU-1",
        locationId: "WH1",
        delta: -5,
        reason: AdjustmentReason.ADJUSTMENT_REASON_DAMAGED,
        note: "dropped",
        idempotencyKey: "k1",
      });
    });

    it("builds Reserve with a TTL and an optional location", () => {
      const parsed = parseCall(["reserve", "--sku", "SKU-1", "--id", "r1", "--qty", "2", "--ttl", "15m", "--location", "WH1"]);
      expect(parsed.call.request).to.deep.equal({
        reservationId: "r1",
        skuId: "SKU-1",
        quantity: 2,
        locationId: "WH1",
        ttl: { seconds: 900, nanos: 0 },
      });
    });

    it("passes --qty 0 through to the server, which owns the range check", () => {
      const parsed = parseCall(["reserve", "--sku", "SKU-1", "--id", "r1", "--qty", "0"]);
      expect(parsed.call.request).to.have.property("quantity", 0);
    });

    it("builds CreateShipment without lines to mean everything not yet shipped", () => {
      const parsed = parseCall(["order", "ship", "o1", "--shipment", "s1", "--carrier", "ups", "--tracking", "1Z999"]);
      expect(parsed.call.request).to.deep.equal({
        orderId: "o1",
        shipmentId: "s1",
        lines: [],
        carrier: "ups",
        trackingNumber: "1Z999",
      });
    });

    it("builds RecordTrackingEvent with the status short name and an occurred-at defaulting to now", () => {
      const before = Date.now();
      const parsed = parseCall(["order", "track", "o1", "--shipment", "s1", "--event", "e1", "--status", "delivered"]);
      const request = parsed.call.request as { status: number; occurredAt: Date };
      expect(request.status).to.equal(TrackingStatus.TRACKING_STATUS_DELIVERED);
      expect(request.occurredAt.getTime()).to.be.within(before, Date.now());

      const explicit = parseCall(["order", "track", "o1", "--shipment", "s1", "--event", "e1", "--status", "in_transit", "--occurred-at", "2025-01-31T12:00:00Z"]);
      expect((explicit.call.request as { occurredAt: Date }).occurredAt.toISOString()).to.equal("2025-01-31T12:00:00.000Z");
    });

    it("builds ReturnItems with --restock", () => {
      const parsed = parseCall(["order", "return", "o1", "--return", "r1", "--line", "SKU-1:1", "--restock"]);
      expect(parsed.call.request).to.deep.equal({ orderId: "o1", returnId: "r1", lines: [{ skuId: "SKU-1", quantity: 1 }], restock: true });
    });

    it("builds UpsertSku with an update_mask of exactly the flags given, attributes one key each", () => {
      const parsed = parseCall(["sku", "upsert", "SKU-1", "--title", "Widget", "--price-minor", "1250", "--currency", "USD", "--attr", "color=red", "--attr", "eq=a=b"]);
      expect(parsed.call.request).to.deep.equal({
        skuId: "SKU-1",
        title: "Widget",
        priceMinor: 1250,
        currency: "USD",
        safetyStock: undefined,
        lowStockThreshold: undefined,
        allowBackorder: undefined,
        attributes: { color: "red", eq: "a=b" },
        updateMask: ["title", "price_minor", "currency", "attributes.`color`", "attributes.`eq`"],
      });
    });

    it("builds a rename that leaves price, threshold and backorder alone, and --no-backorder as allow_backorder false", () => {
      const rename = parseCall(["sku", "upsert", "SKU-1", "--title", "Blue mug v2", "--currency", "EUR"]);
      expect(rename.call.request).to.deep.include({ title: "Blue mug v2", currency: "EUR", priceMinor: undefined, updateMask: ["title", "currency"] });
      const off = parseCall(["sku", "upsert", "SKU-1", "--no-backorder"]);
      expect(off.call.request).to.deep.include({ allowBackorder: false, title: undefined, updateMask: ["allow_backorder"] });
    });

    it("takes several SKUs for availability and paging flags for adjustments", () => {
      expect(parseCall(["availability", "A", "B", "C"]).call.request).to.deep.equal({ skuIds: ["A", "B", "C"] });
      expect(parseCall(["adjustments", "A", "--page-size", "2", "--page-token", "t"]).call.request).to.deep.equal({
        skuId: "A",
        pageSize: 2,
        pageToken: "t",
      });
    });

    it("reads global flags before or after the command, then QM_ADDR, then the default", () => {
      const defaults = parseCall(["sku", "get", "A"]);
      expect(ADDR_DEFAULT).to.equal("127.0.0.1:50051");
      expect(defaults.global).to.deep.equal({ addr: { target: "127.0.0.1:50051", source: "default" }, json: false, timeoutMs: TIMEOUT_MS_DEFAULT, token: undefined });
      expect(parseCall(["sku", "get", "A"], { QM_ADDR: "qm:1" }).global.addr).to.deep.equal({ target: "qm:1", source: "QM_ADDR" });
      expect(parseCall(["sku", "get", "A"], { QM_ADDR: "" }).global.addr.source).to.equal("default");
      const before = parseCall(["--addr", "h:1", "--json", "--timeout", "2500", "sku", "get", "A"], { QM_ADDR: "qm:1" });
      expect(before.global).to.deep.equal({ addr: { target: "h:1", source: "--addr" }, json: true, timeoutMs: 2500, token: undefined });
      const after = parseCall(["sku", "get", "A", "--addr=h:2", "--timeout", "5s", "--json"]);
      expect(after.global).to.deep.equal({ addr: { target: "h:2", source: "--addr" }, json: true, timeoutMs: 5000, token: undefined });
    });

    it("takes the bearer token from --token, else QM_TOKEN, and refuses one that is not a JWT", () => {
      const jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
      expect(parseCall(["sku", "get", "A"], { QM_TOKEN: jwt }).global.token).to.equal(jwt);
      expect(parseCall(["sku", "get", "A", "--token", jwt], { QM_TOKEN: "a.b.c" }).global.token).to.equal(jwt);
      expect(parseCall(["sku", "get", "A"], { QM_TOKEN: "" }).global.token).to.equal(undefined);
      expect(() => parseCommandLine(["sku", "get", "A", "--token", `Bearer ${jwt}`], NO_ENV)).to.throw(/--token \/ QM_TOKEN: expected a JWT/);
    });

    it("answers --help with the command's usage, and the general help with the exit codes", () => {
      const command = parseCommandLine(["order", "ship", "--help"], NO_ENV);
      expect(command.kind).to.equal("help");
      expect(command.kind === "help" ? command.text : "").to.contain("qmctl order ship <order-id> --shipment ID");
      const general = parseCommandLine(["--help"], NO_ENV);
      expect(general.kind === "help" ? general.text : "").to.match(/Exit codes:[\s\S]*5 +FAILED_PRECONDITION/);
      const group = parseCommandLine(["help", "order"], NO_ENV);
      expect(group.kind === "help" ? group.text : "").to.contain("order track").and.not.contain("sku get");
    });

    it("reports each malformed command line as a usage error", () => {
      const cases: [string[], string][] = [
        [[], "no command"],
        [["frobnicate"], 'unknown command "frobnicate"'],
        [["sku"], '"sku" needs a command'],
        [["sku", "delete", "A"], 'unknown command "sku delete"'],
        [["sku", "get"], "missing <sku-id>"],
        [["sku", "get", "A", "B"], 'unexpected argument "B"'],
        [["sku", "get", "A", "--verbose"], "--verbose"],
        [["availability"], "missing <sku-id>..."],
        [["reserve", "--sku", "A", "--qty", "1"], "--id is required"],
        [["reserve", "--sku", "A", "--id", "r", "--qty"], "--qty needs a value (N)"],
        [["reserve", "--sku", "A", "--id", "r", "--qty", "two"], '--qty: "two" is not an integer'],
        [["reserve", "--sku", "A", "--id", "r", "--qty", "1", "--ttl", "15"], "--ttl"],
        [["sku", "adjust", "A", "--location", "W", "--delta", "1", "--reason", "lost"], 'unknown reason "lost"'],
        [["order", "create", "o1", "--customer", "c"], "--line is required"],
        [["order", "pay", "o1"], "--reference is required"],
        [["sku", "upsert", "A", "--backorder", "--no-backorder"], "--backorder and --no-backorder exclude each other"],
        [["order", "create", "o1", "--customer", "c", "--line", "A"], '--line: "A" is not SKU:QTY'],
        [["order", "track", "o1", "--shipment", "s", "--event", "e", "--status", "lost"], 'unknown tracking status "lost"'],
        [["sku", "get", "A", "--json=yes"], "--json takes no value"],
        [["reserve", "--sku", "A", "--id", "r", "--qty", "1", "--qty", "2"], "--qty given more than once"],
        [["order", "cancel", "o1", "--reason", "--json"], "--reason needs a value (TEXT)"],
        [["sku", "get", "A", "--addr", "17051x"], '--addr "17051x"'],
        [["sku", "get", "A", "--timeout", "0"], "--timeout"],
        [["--bogus", "sku", "get", "A"], "--bogus"],
      ];
      for (const [argv, message] of cases) {
        expect(usageErrorOf(argv).message, argv.join(" ")).to.contain(message);
      }
    });

    it("exits 2 on a usage error and prints the message with the command's usage on stderr", async () => {
      let stdout = "";
      let stderr = "";
      const code = await run(["reserve", "--sku", "A", "--id", "r1", "--qty", "1", "--ttl", "soon"], NO_ENV, {
        stdout: (t) => (stdout += t),
        stderr: (t) => (stderr += t),
      });
      expect(code).to.equal(EXIT_USAGE);
      expect(stdout).to.equal("");
      expect(stderr.split("\n")).to.deep.equal([
        'error: --ttl: "soon" is not a duration (e.g. 30s, 15m, 2h, 1h30m)',
        "Usage: qmctl reserve (--sku SKU --id ID --qty N | --batch FILE) [flags]",
        'Run "qmctl reserve --help" for its flags.',
        "",
      ]);
    });
  });
});

describe("qmctl flag mistakes", () => {
  async function runCli(argv: string[], env = NO_ENV): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = "";
    let stderr = "";
    const code = await run(argv, env, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
    return { code, stdout, stderr };
  }

  it("names an unknown flag in one line with the closest known flag, and points at --help", async () => {
    const result = await runCli(["sku", "get", "A", "--jsno"]);
    expect(result.code).to.equal(EXIT_USAGE);
    expect(result.stdout).to.equal("");
    expect(result.stderr).to.equal(
      'error: unknown flag --jsno for "sku get"; did you mean --json?\nRun "qmctl sku get --help" for its flags.\n',
    );
  });

  it("offers a command's own flags, several when equally close, and none when nothing is close", async () => {
    const qty = await runCli(["reserve", "--sku", "A", "--id", "r", "--qyt", "1"]);
    expect(qty.stderr.split("\n")[0]).to.equal('error: unknown flag --qyt for "reserve"; did you mean --qty?');
    const page = await runCli(["adjustments", "A", "--page-sise", "2"]);
    expect(page.stderr.split("\n")[0]).to.equal('error: unknown flag --page-sise for "adjustments"; did you mean --page-size?');
    const far = await runCli(["sku", "get", "A", "--frobnicate=1"]);
    expect(far.stderr).to.equal('error: unknown flag --frobnicate for "sku get"\nRun "qmctl sku get --help" for its flags.\n');
    const short = await runCli(["sku", "get", "A", "-x"]);
    expect(short.stderr.split("\n")[0]).to.equal('error: unknown flag -x for "sku get"');
  });

  it("suggests a global flag for a mistyped one before the command", async () => {
    const result = await runCli(["--adr", "h:1", "sku", "get", "A"]);
    expect(result.code).to.equal(EXIT_USAGE);
    expect(result.stderr).to.equal(
      'error: unknown flag --adr before the command; did you mean --addr?\nRun "qmctl --help" for the commands.\n',
    );
  });

  it("says a global flag before the command lacks its value, rather than that the command is missing", async () => {
    expect((await runCli(["--timeout"])).stderr).to.equal('error: --timeout needs a value (MS)\nRun "qmctl --help" for the commands.\n');
    expect((await runCli(["--addr", "--json", "sku", "get", "A"])).stderr.split("\n")[0]).to.equal("error: --addr needs a value (HOST:PORT)");
  });

  it("suggests the closest command for an unknown one, within its group when the group word is right", async () => {
    const single = await runCli(["reserv", "--sku", "A"]);
    expect(single.code).to.equal(EXIT_USAGE);
    expect(single.stderr).to.equal('error: unknown command "reserv"; did you mean "reserve"?\nRun "qmctl --help" for the commands.\n');
    const grouped = await runCli(["order", "shp", "o1"]);
    expect(grouped.stderr).to.equal(
      'error: unknown command "order shp"; did you mean "order ship"?\nRun "qmctl order --help" for its commands.\n',
    );
    const group = await runCli(["ordr", "get", "o1"]);
    expect(group.stderr.split("\n")[0]).to.equal('error: unknown command "ordr"; did you mean "order"?');
  });

  it("reads values that start with '-': negative numbers, --flag=value and words after --", () => {
    const negative = parseCall(["sku", "adjust", "A", "--location", "W", "--delta", "-5", "--reason", "damaged", "--note=--json"]);
    expect(negative.call.request).to.deep.include({ delta: -5, note: "--json" });
    expect(negative.global.json).to.equal(false);
    expect(parseCall(["availability", "--", "-odd-id"]).call.request).to.deep.equal({ skuIds: ["-odd-id"] });
  });

  it("prints the package version for --version, before or after a command", async () => {
    const pkg = JSON.parse(readFileSync(path.join(__dirname, "../../../package.json"), "utf8")) as { version: string };
    const before = await runCli(["--version"]);
    expect(before).to.deep.equal({ code: 0, stdout: `qmctl ${pkg.version}\n`, stderr: "" });
    const after = await runCli(["sku", "get", "A", "--version"]);
    expect(after.stdout).to.equal(`qmctl ${pkg.version}\n`);
  });

  it("upper-cases the currency, since ISO 4217 codes are upper case", () => {
    const parsed = parseCall(["sku", "upsert", "A", "--title", "Mug", "--currency", "eur"]);
    expect(parsed.call.request).to.deep.include({ currency: "EUR" });
  });

  it("documents --page-size as the range the server accepts, 0 meaning its default", () => {
    const help = parseCommandLine(["adjustments", "--help"], NO_ENV);
    expect(help.kind === "help" ? help.text : "").to.match(/--page-size N +0-500; 0 or absent: the server default, 100$/m);
    expect(parseCall(["adjustments", "A", "--page-size", "0"]).call.request).to.deep.include({ pageSize: 0 });
  });

  it("lists exit codes 7 and 8 for UNAUTHENTICATED and PERMISSION_DENIED in the help", () => {
    const general = parseCommandLine(["--help"], NO_ENV);
    const text = general.kind === "help" ? general.text : "";
    expect(text).to.match(/^ {2}7 {2}UNAUTHENTICATED$/m);
    expect(text).to.match(/^ {2}8 {2}PERMISSION_DENIED$/m);
    expect(text).to.match(/^ {2}--version +print qmctl's version$/m);
  });
});

describe("qmctl errors from the server", () => {
  function serviceError(code: GrpcStatus, details: string, status?: Status): ServiceError {
    const metadata = new Metadata();
    if (status !== undefined) metadata.set("grpc-status-details-bin", Buffer.from(Status.encode(status).finish()));
    return Object.assign(new Error(`${code} ${GrpcStatus[code]}: ${details}`), { code, details, metadata });
  }

  const richStatus: Status = {
    code: GrpcStatus.INVALID_ARGUMENT,
    message: "quantity: must be at least 1",
    details: [
      Any.fromPartial({
        typeUrl: ERROR_INFO_TYPE_URL,
        value: Buffer.from(ErrorInfo.encode({ reason: "INVALID_ARGUMENT", domain: "quartermaster", metadata: { sku: "A" } }).finish()),
      }),
      Any.fromPartial({ typeUrl: "type.googleapis.com/google.rpc.RetryInfo", value: Buffer.from([1, 2, 3]) }),
      Any.fromPartial({
        typeUrl: BAD_REQUEST_TYPE_URL,
        value: Buffer.from(
          BadRequest.encode({
            fieldViolations: [
              { field: "quantity", description: "must be at least 1" },
              { field: "ttl", description: "must be at most 30 days" },
            ],
          }).finish(),
        ),
      }),
    ],
  };

  it("maps gRPC codes to the documented exit codes", () => {
    expect(exitCodeForStatus(GrpcStatus.INVALID_ARGUMENT)).to.equal(3);
    expect(exitCodeForStatus(GrpcStatus.NOT_FOUND)).to.equal(4);
    expect(exitCodeForStatus(GrpcStatus.FAILED_PRECONDITION)).to.equal(5);
    expect(exitCodeForStatus(GrpcStatus.ALREADY_EXISTS)).to.equal(5);
    expect(exitCodeForStatus(GrpcStatus.UNAVAILABLE)).to.equal(6);
    expect(exitCodeForStatus(GrpcStatus.DEADLINE_EXCEEDED)).to.equal(6);
    expect(exitCodeForStatus(GrpcStatus.UNAUTHENTICATED)).to.equal(7);
    expect(exitCodeForStatus(GrpcStatus.PERMISSION_DENIED)).to.equal(8);
    expect(exitCodeForStatus(GrpcStatus.INTERNAL)).to.equal(1);
    expect(exitCodeForStatus(GrpcStatus.UNIMPLEMENTED)).to.equal(1);
    expect(exitCodeForStatus(GrpcStatus.RESOURCE_EXHAUSTED)).to.equal(1);
  });

  it("decodes ErrorInfo and BadRequest from grpc-status-details-bin and skips unknown detail kinds", () => {
    const details = decodeStatusDetails(serviceError(GrpcStatus.INVALID_ARGUMENT, "bad", richStatus));
    expect(details).to.deep.equal({
      errorInfo: { reason: "INVALID_ARGUMENT", domain: "quartermaster", metadata: { sku: "A" } },
      badRequest: {
        fieldViolations: [
          { field: "quantity", description: "must be at least 1" },
          { field: "ttl", description: "must be at most 30 days" },
        ],
      },
    });
  });

  it("decodes to nothing when there are no details or they are garbage", () => {
    expect(decodeStatusDetails(serviceError(GrpcStatus.UNAVAILABLE, "down"))).to.deep.equal({});
    const garbage = serviceError(GrpcStatus.INTERNAL, "x");
    garbage.metadata.set("grpc-status-details-bin", Buffer.from([0xff, 0xff, 0xff]));
    expect(decodeStatusDetails(garbage)).to.deep.equal({});
  });

  it("prints the code, message, reason, metadata and each field violation", () => {
    const text = formatServiceError(serviceError(GrpcStatus.INVALID_ARGUMENT, "quantity: must be at least 1", richStatus), false);
    expect(text.split("\n")).to.deep.equal([
      "error: INVALID_ARGUMENT: quantity: must be at least 1",
      "  reason: INVALID_ARGUMENT (quartermaster)",
      "  metadata: sku=A",
      "  quantity: must be at least 1",
      "  ttl: must be at most 30 days",
    ]);
  });

  it("leaves out the metadata code that only repeats the reason", () => {
    const repeated: Status = {
      code: GrpcStatus.FAILED_PRECONDITION,
      message: "short",
      details: [
        Any.fromPartial({
          typeUrl: ERROR_INFO_TYPE_URL,
          value: Buffer.from(
            ErrorInfo.encode({ reason: "INSUFFICIENT_STOCK", domain: "quartermaster.v1", metadata: { code: "INSUFFICIENT_STOCK", available: "95" } }).finish(),
          ),
        }),
      ],
    };
    const text = formatServiceError(serviceError(GrpcStatus.FAILED_PRECONDITION, "short", repeated), false);
    expect(text.split("\n")).to.deep.equal([
      "error: FAILED_PRECONDITION: short",
      "  reason: INSUFFICIENT_STOCK (quartermaster.v1)",
      "  metadata: available=95",
    ]);
  });

  it("prints the error as one JSON object with --json", () => {
    const json = JSON.parse(formatServiceError(serviceError(GrpcStatus.NOT_FOUND, "order o9 not found"), true)) as unknown;
    expect(json).to.deep.equal({ error: { code: "NOT_FOUND", codeNumber: 5, message: "order o9 not found" } });
  });
});

describe("qmctl tables", () => {
  it("pads columns to the widest cell and right-aligns numbers", () => {
    const text = renderTable(
      [{ header: "LOCATION" }, { header: "ON_HAND", align: "right" }],
      [
        ["WH1", "10"],
        ["WAREHOUSE-2", "1200"],
      ],
    );
    expect(text.split("\n")).to.deep.equal(["LOCATION     ON_HAND", "WH1               10", "WAREHOUSE-2     1200"]);
  });
});
