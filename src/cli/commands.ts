// qmctl's grammar: every command, its flags, and how its flags become one API
// request. Parsing is pure and separate from calling, so that the unit tests
// check the requests a command line produces without a server.

import { parseArgs } from "node:util";
import {
  AdjustStockRequest,
  CommitReservationRequest,
  GetAvailabilityRequest,
  GetAvailabilityResponse,
  GetReservationRequest,
  GetSkuRequest,
  ListAdjustmentsRequest,
  ListAdjustmentsResponse,
  ReleaseReservationRequest,
  Reservation,
  ReserveRequest,
  Sku,
  StockLevel,
  UpsertSkuRequest,
} from "../gen/quartermaster/v1/inventory";
import {
  CancelOrderRequest,
  ConfirmPaymentRequest,
  CreateOrderRequest,
  CreateShipmentRequest,
  GetOrderRequest,
  Order,
  RecordTrackingEventRequest,
  ReturnItemsRequest,
} from "../gen/quartermaster/v1/order";
import {
  ADJUSTMENT_REASONS,
  TRACKING_STATUSES,
  UsageError,
  durationFromMs,
  parseDurationMs,
  parseInteger,
  parseKeyValue,
  parseLine,
  parseTime,
} from "./args";
import { renderAdjustments, renderAvailability, renderOrder, renderReservation, renderSku, renderStockLevel } from "./render";
import { type CallOpts, type Clients, call } from "./rpc";

export const ADDR_DEFAULT = "127.0.0.1:50051";
export const TIMEOUT_MS_DEFAULT = 10_000;

export interface GlobalOptions {
  readonly addr: string;
  readonly json: boolean;
  readonly timeoutMs: number;
}

/** A response in both forms; which one is printed is the caller's choice. */
export interface Output {
  readonly json: unknown;
  readonly text: string;
}

/** One API call, ready to send. */
export interface PreparedCall {
  /** e.g. `InventoryService/AdjustStock`, for messages and tests. */
  readonly method: string;
  readonly request: unknown;
  execute(clients: Clients, opts: CallOpts): Promise<Output>;
}

export type ParsedCommandLine =
  | { readonly kind: "help"; readonly text: string }
  | { readonly kind: "call"; readonly command: string; readonly global: GlobalOptions; readonly call: PreparedCall };

interface OptionSpec {
  readonly type: "string" | "boolean";
  readonly multiple?: boolean;
  readonly short?: string;
  /** Placeholder of the value in the usage, e.g. `SKU:QTY`. */
  readonly value?: string;
  readonly required?: boolean;
  readonly help: string;
}

interface CommandSpec {
  /** Command words, e.g. `sku adjust`. */
  readonly name: string;
  readonly summary: string;
  /** Positional arguments, e.g. `<sku-id>` or `<sku-id>...`; `...` accepts one or more. */
  readonly args: readonly string[];
  readonly options: Readonly<Record<string, OptionSpec>>;
  build(input: Flags): PreparedCall;
}

const GLOBAL_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  addr: { type: "string", value: "HOST:PORT", help: `server address (env QM_ADDR, else ${ADDR_DEFAULT})` },
  json: { type: "boolean", help: "print the response (or the error, on stderr) as one JSON object" },
  timeout: { type: "string", value: "MS", help: `deadline of the call in ms, or a duration like 30s (default ${TIMEOUT_MS_DEFAULT})` },
  help: { type: "boolean", short: "h", help: "show help" },
};

/** Typed access to one command's parsed flags and positionals. */
export class Flags {
  constructor(
    private readonly values: Readonly<Record<string, string | boolean | (string | boolean)[] | undefined>>,
    readonly positionals: readonly string[],
    private readonly spec: CommandSpec,
  ) {}

  positional(index: number): string {
    const value = this.positionals[index];
    if (value === undefined) throw new UsageError(`missing ${this.spec.args[index] ?? "argument"}`);
    return value;
  }

  string(name: string): string | undefined {
    const value = this.values[name];
    return typeof value === "string" ? value : undefined;
  }

  required(name: string): string {
    const value = this.string(name);
    if (value === undefined) throw new UsageError(`--${name} is required`);
    return value;
  }

  integer(name: string): number | undefined {
    const value = this.string(name);
    return value === undefined ? undefined : parseInteger(value, `--${name}`);
  }

  requiredInteger(name: string): number {
    return parseInteger(this.required(name), `--${name}`);
  }

  boolean(name: string): boolean {
    return this.values[name] === true;
  }

  list(name: string): string[] {
    const value = this.values[name];
    if (value === undefined) return [];
    return (Array.isArray(value) ? value : [value]).filter((v): v is string => typeof v === "string");
  }
}

/** Wraps one typed call so that the command table can hold calls of any request and response type. */
function prepare<Req, Res>(
  method: string,
  request: Req,
  invoke: (clients: Clients, request: Req, opts: CallOpts) => Promise<Res>,
  toJSON: (response: Res) => unknown,
  render: (response: Res) => string,
): PreparedCall {
  return {
    method,
    request,
    async execute(clients: Clients, opts: CallOpts): Promise<Output> {
      const response = await invoke(clients, request, opts);
      return { json: toJSON(response), text: render(response) };
    },
  };
}

function lines(flags: Flags, name: string): { skuId: string; quantity: number }[] {
  return flags.list(name).map((l) => parseLine(l, `--${name}`));
}

const RESERVATION_ID_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  sku: { type: "string", value: "SKU", required: true, help: "SKU id" },
  id: { type: "string", value: "ID", required: true, help: "reservation id" },
};

const COMMANDS: readonly CommandSpec[] = [
  {
    name: "sku upsert",
    // Upsert replaces the whole definition: a flag left out is sent as its zero value, not "unchanged".
    summary: "create or replace a SKU's definition (flags left out become 0/empty; stock is untouched)",
    args: ["<sku-id>"],
    options: {
      title: { type: "string", value: "TEXT", required: true, help: "title" },
      "price-minor": { type: "string", value: "N", help: "price in the currency's minor unit (cents)" },
      currency: { type: "string", value: "CODE", required: true, help: "ISO 4217 code, e.g. USD" },
      "safety-stock": { type: "string", value: "N", help: "units held back from availability" },
      "low-stock-threshold": { type: "string", value: "N", help: "low_stock is set when available <= N" },
      backorder: { type: "boolean", help: "allow reserving beyond on-hand stock" },
      attr: { type: "string", multiple: true, value: "KEY=VALUE", help: "attribute" },
    },
    build(f) {
      const request: UpsertSkuRequest = {
        skuId: f.positional(0),
        title: f.required("title"),
        priceMinor: f.integer("price-minor") ?? 0,
        currency: f.required("currency"),
        safetyStock: f.integer("safety-stock") ?? 0,
        lowStockThreshold: f.integer("low-stock-threshold") ?? 0,
        allowBackorder: f.boolean("backorder"),
        attributes: Object.fromEntries(f.list("attr").map((a) => parseKeyValue(a, "--attr"))),
      };
      return prepare("InventoryService/UpsertSku", request, (c, r, o) => call(c.inventory, "upsertSku", r, o), Sku.toJSON, renderSku);
    },
  },
  {
    name: "sku get",
    summary: "show a SKU's definition and stock levels per location",
    args: ["<sku-id>"],
    options: {},
    build(f) {
      const request: GetSkuRequest = { skuId: f.positional(0) };
      return prepare("InventoryService/GetSku", request, (c, r, o) => call(c.inventory, "getSku", r, o), Sku.toJSON, renderSku);
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
        StockLevel.toJSON,
        renderStockLevel,
      );
    },
  },
  {
    name: "adjustments",
    summary: "list a SKU's stock adjustments, oldest first",
    args: ["<sku-id>"],
    options: {
      "page-size": { type: "string", value: "N", help: "1-500 (server default 100)" },
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
        ListAdjustmentsResponse.toJSON,
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
        GetAvailabilityResponse.toJSON,
        renderAvailability,
      );
    },
  },
  {
    name: "reserve",
    summary: "hold units of a SKU until the TTL passes (idempotent on --sku and --id)",
    args: [],
    options: {
      ...RESERVATION_ID_OPTIONS,
      qty: { type: "string", value: "N", required: true, help: "units to hold" },
      location: { type: "string", value: "LOC", help: "location (default: the one with the most available units)" },
      ttl: { type: "string", value: "DURATION", help: "how long the hold lasts, e.g. 15m (server default 15m)" },
    },
    build(f) {
      const ttl = f.string("ttl");
      const request: ReserveRequest = {
        reservationId: f.required("id"),
        skuId: f.required("sku"),
        quantity: f.requiredInteger("qty"),
        locationId: f.string("location") ?? "",
        ttl: ttl === undefined ? undefined : durationFromMs(parseDurationMs(ttl, "--ttl")),
      };
      return prepare(
        "InventoryService/Reserve",
        request,
        (c, r, o) => call(c.inventory, "reserve", r, o),
        Reservation.toJSON,
        renderReservation,
      );
    },
  },
  {
    name: "reservation get",
    summary: "show a reservation",
    args: [],
    options: RESERVATION_ID_OPTIONS,
    build(f) {
      const request: GetReservationRequest = { reservationId: f.required("id"), skuId: f.required("sku") };
      return prepare(
        "InventoryService/GetReservation",
        request,
        (c, r, o) => call(c.inventory, "getReservation", r, o),
        Reservation.toJSON,
        renderReservation,
      );
    },
  },
  {
    name: "commit",
    summary: "turn a hold into a commitment that no longer expires",
    args: [],
    options: RESERVATION_ID_OPTIONS,
    build(f) {
      const request: CommitReservationRequest = { reservationId: f.required("id"), skuId: f.required("sku") };
      return prepare(
        "InventoryService/CommitReservation",
        request,
        (c, r, o) => call(c.inventory, "commitReservation", r, o),
        Reservation.toJSON,
        renderReservation,
      );
    },
  },
  {
    name: "release",
    summary: "return a held or committed reservation's units to available stock",
    args: [],
    options: RESERVATION_ID_OPTIONS,
    build(f) {
      const request: ReleaseReservationRequest = { reservationId: f.required("id"), skuId: f.required("sku") };
      return prepare(
        "InventoryService/ReleaseReservation",
        request,
        (c, r, o) => call(c.inventory, "releaseReservation", r, o),
        Reservation.toJSON,
        renderReservation,
      );
    },
  },
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

function orderCall<Req>(
  method: string,
  request: Req,
  invoke: (clients: Clients, request: Req, opts: CallOpts) => Promise<Order>,
): PreparedCall {
  return prepare(method, request, invoke, Order.toJSON, renderOrder);
}

/** Words that start a command of several words (`sku get`); the rest are single words (`reserve`). */
const GROUPS: ReadonlySet<string> = new Set(COMMANDS.filter((c) => c.name.includes(" ")).map((c) => c.name.split(" ")[0] ?? ""));

export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  any other error
  2  usage error (bad flags or arguments)
  3  the server answered INVALID_ARGUMENT
  4  NOT_FOUND
  5  FAILED_PRECONDITION or ALREADY_EXISTS (e.g. insufficient stock, illegal transition)
  6  UNAVAILABLE or DEADLINE_EXCEEDED, or the server cannot be reached`;

function optionLines(options: Readonly<Record<string, OptionSpec>>): string[] {
  const rows = Object.entries(options).map(([name, o]) => {
    const short = o.short === undefined ? "" : `-${o.short}, `;
    const flag = `${short}--${name}${o.value === undefined ? "" : ` ${o.value}`}`;
    const tags = [o.required ? "required" : "", o.multiple ? "repeatable" : ""].filter((t) => t !== "");
    return [flag, o.help + (tags.length === 0 ? "" : ` (${tags.join(", ")})`)] as const;
  });
  const width = Math.max(0, ...rows.map(([flag]) => flag.length));
  return rows.map(([flag, help]) => `  ${flag.padEnd(width)}  ${help}`);
}

function synopsis(spec: CommandSpec): string {
  const required = Object.entries(spec.options)
    .filter(([, o]) => o.required)
    .map(([name, o]) => `--${name} ${o.value ?? ""}`.trimEnd() + (o.multiple ? "..." : ""));
  return ["qmctl", spec.name, ...spec.args, ...required, "[flags]"].join(" ");
}

export function commandUsage(spec: CommandSpec): string {
  const ownOptions = optionLines(spec.options);
  return [
    `Usage: ${synopsis(spec)}`,
    "",
    spec.summary,
    ...(ownOptions.length > 0 ? ["", "Flags:", ...ownOptions] : []),
    "",
    "Global flags:",
    ...optionLines(GLOBAL_OPTIONS),
  ].join("\n");
}

export function generalUsage(group?: string): string {
  const specs = COMMANDS.filter((c) => group === undefined || c.name.startsWith(`${group} `));
  const width = Math.max(...specs.map((c) => c.name.length));
  return [
    `Usage: qmctl ${group ?? "<command>"}${group === undefined ? "" : " <command>"} [args] [flags]`,
    "",
    "Commands:",
    ...specs.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "Global flags:",
    ...optionLines(GLOBAL_OPTIONS),
    "",
    `Run "qmctl <command> --help" for a command's flags.`,
    "",
    EXIT_CODES_HELP,
  ].join("\n");
}

/** The leading global flags, consumed before the command words. */
function leadingGlobals(argv: readonly string[]): number {
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i] ?? "";
    if (!arg.startsWith("-")) break;
    const name = arg.replace(/^--?/, "").split("=")[0] ?? "";
    const option = Object.entries(GLOBAL_OPTIONS).find(([long, o]) => long === name || o.short === name)?.[1];
    if (option === undefined) throw new UsageError(`unknown flag ${arg} before the command`);
    i += option.type === "string" && !arg.includes("=") ? 2 : 1;
  }
  return Math.min(i, argv.length);
}

/**
 * node's parseArgs refuses `--delta -5` as ambiguous (it cannot know -5 is not
 * a flag). A negative number is never a flag of ours, so glue it on.
 */
function glueNegativeNumbers(args: readonly string[], options: Readonly<Record<string, OptionSpec>>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? "";
    const next = args[i + 1];
    const option = arg.startsWith("--") && !arg.includes("=") ? options[arg.slice(2)] : undefined;
    if (option?.type === "string" && next !== undefined && /^-\d/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

function parseTimeoutMs(text: string): number {
  const ms = /^\d+$/.test(text) ? Number(text) : parseDurationMs(text, "--timeout");
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new UsageError(`--timeout: "${text}" is not a positive number of ms`);
  return ms;
}

/** Thrown for a usage error inside a known command, so that its usage is printed with it. */
export class CommandUsageError extends UsageError {
  constructor(
    message: string,
    readonly usage: string,
  ) {
    super(message);
  }
}

/**
 * Turns argv (without node and the script) into a request, or into help text.
 * Throws UsageError for anything it cannot turn into a request.
 */
export function parseCommandLine(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ParsedCommandLine {
  const start = leadingGlobals(argv);
  const leading = argv.slice(0, start);
  const words = argv.slice(start);
  const first = words[0];
  const wantsHelp = leading.includes("--help") || leading.includes("-h");

  if (first === undefined || first === "help") {
    const topic = words.slice(1).join(" ");
    const spec = COMMANDS.find((c) => c.name === topic);
    if (spec !== undefined) return { kind: "help", text: commandUsage(spec) };
    if (GROUPS.has(topic)) return { kind: "help", text: generalUsage(topic) };
    if (first === "help" || wantsHelp) return { kind: "help", text: generalUsage() };
    throw new CommandUsageError("no command given", generalUsage());
  }
  const isGroup = GROUPS.has(first);
  const name = isGroup ? `${first} ${words[1] ?? ""}` : first;
  const spec = COMMANDS.find((c) => c.name === name);
  if (spec === undefined) {
    if (isGroup && (words[1] === undefined || words[1] === "--help" || words[1] === "-h")) {
      if (words[1] !== undefined || wantsHelp) return { kind: "help", text: generalUsage(first) };
      throw new CommandUsageError(`"${first}" needs a command`, generalUsage(first));
    }
    throw new CommandUsageError(`unknown command "${name.trim()}"`, generalUsage(isGroup ? first : undefined));
  }

  const rest = [...leading, ...words.slice(isGroup ? 2 : 1)];
  const options = { ...GLOBAL_OPTIONS, ...spec.options };
  try {
    const parsed = parseArgs({
      args: glueNegativeNumbers(rest, options),
      options: Object.fromEntries(
        Object.entries(options).map(([n, o]) => [
          n,
          { type: o.type, multiple: o.multiple ?? false, ...(o.short === undefined ? {} : { short: o.short }) },
        ]),
      ),
      allowPositionals: true,
      strict: true,
    });
    const values = parsed.values as Record<string, string | boolean | (string | boolean)[] | undefined>;
    if (values["help"] === true) return { kind: "help", text: commandUsage(spec) };

    const variadic = spec.args.some((a) => a.endsWith("..."));
    const minArgs = spec.args.length;
    if (parsed.positionals.length < minArgs) {
      throw new UsageError(`missing ${spec.args.slice(parsed.positionals.length).join(" ")}`);
    }
    if (!variadic && parsed.positionals.length > minArgs) {
      throw new UsageError(`unexpected argument "${parsed.positionals[minArgs] ?? ""}"`);
    }
    for (const [n, o] of Object.entries(spec.options)) {
      if (o.required && values[n] === undefined) throw new UsageError(`--${n} is required`);
    }

    const flags = new Flags(values, parsed.positionals, spec);
    const timeout = flags.string("timeout");
    const global: GlobalOptions = {
      addr: flags.string("addr") ?? nonEmpty(env["QM_ADDR"]) ?? ADDR_DEFAULT,
      json: flags.boolean("json"),
      timeoutMs: timeout === undefined ? TIMEOUT_MS_DEFAULT : parseTimeoutMs(timeout),
    };
    return { kind: "call", command: spec.name, global, call: spec.build(flags) };
  } catch (err) {
    if (err instanceof CommandUsageError) throw err;
    if (err instanceof UsageError || isParseArgsError(err)) {
      throw new CommandUsageError(err.message, commandUsage(spec));
    }
    throw err;
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

/** node's parseArgs throws TypeErrors with ERR_PARSE_ARGS_* codes for unknown flags, missing values and the like. */
function isParseArgsError(err: unknown): err is Error {
  return err instanceof Error && typeof (err as { code?: unknown }).code === "string" && String((err as { code?: unknown }).code).startsWith("ERR_PARSE_ARGS_");
}

/** Every command's synopsis, one per line: the grammar at a glance (the README quotes it). */
export function grammar(): string {
  return COMMANDS.map(synopsis).join("\n");
}
