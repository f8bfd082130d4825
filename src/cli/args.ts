// Parsing of qmctl's flag values. Everything here is pure so that the unit
// tests can pin the grammar down without a server. Values are checked only as
// far as turning text into a request needs (a number is a number, an enum
// name is known); ranges and business rules are the server's to judge, so
// that the CLI never disagrees with it.

import { AdjustmentReason, ReservationState } from "../gen/quartermaster/v1/inventory";
import { OrderState, TrackingStatus } from "../gen/quartermaster/v1/order";
import type { Duration } from "../gen/google/protobuf/duration";
import type { LineItem } from "../gen/quartermaster/v1/order";

/** A command line qmctl cannot turn into a request: exit 2, printed with the usage. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** A duration parses to at most this many terms (`1h30m15s` has three): bounds the regex loop. */
const DURATION_TERMS_MAX = 8;

const DURATION_UNIT_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60 * 1000,
  h: 3600 * 1000,
  d: 24 * 3600 * 1000,
};

/**
 * `15m`, `30s`, `2h`, `1d`, `500ms`, or a sum such as `1h30m`, to milliseconds.
 * A bare number is refused: `--ttl 15` could mean seconds or minutes, and a
 * guess that is off by 60x holds stock for the wrong hour.
 */
export function parseDurationMs(text: string, flag: string): number {
  const term = /(\d+)(ms|s|m|h|d)/y;
  let totalMs = 0;
  let terms = 0;
  while (term.lastIndex < text.length) {
    const match = term.exec(text);
    if (match === null || terms >= DURATION_TERMS_MAX) {
      throw new UsageError(`${flag}: "${text}" is not a duration (e.g. 30s, 15m, 2h, 1h30m)`);
    }
    totalMs += Number(match[1]) * (DURATION_UNIT_MS[match[2] ?? ""] ?? Number.NaN);
    terms++;
  }
  if (terms === 0 || !Number.isSafeInteger(totalMs)) {
    throw new UsageError(`${flag}: "${text}" is not a duration (e.g. 30s, 15m, 2h, 1h30m)`);
  }
  return totalMs;
}

export function durationFromMs(ms: number): Duration {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

/** A signed decimal integer that a double holds exactly; zero and negatives pass so the server can answer for them. */
export function parseInteger(text: string, flag: string): number {
  const value = /^[-+]?\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value)) {
    throw new UsageError(`${flag}: "${text}" is not an integer`);
  }
  return value;
}

/**
 * `SKU:QTY`. SKU ids may themselves contain ':' (the id alphabet allows it for
 * composite keys), so the quantity is whatever follows the last one.
 */
export function parseLine(text: string, flag: string): LineItem {
  const colon = text.lastIndexOf(":");
  if (colon <= 0 || colon === text.length - 1) {
    throw new UsageError(`${flag}: "${text}" is not SKU:QTY`);
  }
  return { skuId: text.slice(0, colon), quantity: parseInteger(text.slice(colon + 1), flag) };
}

/** `key=value`; the value may contain '=' and may be empty. */
export function parseKeyValue(text: string, flag: string): [string, string] {
  const eq = text.indexOf("=");
  if (eq <= 0) throw new UsageError(`${flag}: "${text}" is not key=value`);
  return [text.slice(0, eq), text.slice(eq + 1)];
}

/** An ISO 8601 time with a date (`2025-01-31T12:00:00Z`); a bare time of day is refused. */
export function parseTime(text: string, flag: string): Date {
  const ms = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(ms)) throw new UsageError(`${flag}: "${text}" is not an ISO 8601 time`);
  return new Date(ms);
}

/**
 * Short, lower-case names for a protobuf enum (`ADJUSTMENT_REASON_DAMAGED` is
 * `damaged`). UNSPECIFIED and UNRECOGNIZED are no names a user may give: the
 * server would reject them, and a typo must not silently become one.
 */
export class EnumNames<E extends number> {
  private readonly byShort = new Map<string, E>();
  private readonly byValue = new Map<number, string>();
  private readonly protoByValue = new Map<number, string>();
  private readonly prefixLower: string;

  constructor(
    readonly what: string,
    prefix: string,
    values: Readonly<Record<string, string | number>>,
  ) {
    this.prefixLower = prefix.toLowerCase();
    for (const [key, value] of Object.entries(values)) {
      // A TypeScript numeric enum maps names to numbers and numbers back to names; keep the first kind.
      if (typeof value !== "number" || value < 0 || !key.startsWith(prefix)) continue;
      this.protoByValue.set(value, key);
      if (value === 0) continue;
      const short = key.slice(prefix.length).toLowerCase();
      this.byShort.set(short, value as E);
      this.byValue.set(value, short);
    }
  }

  /** Accepts `in_transit`, `in-transit`, `IN_TRANSIT` and the full proto name `TRACKING_STATUS_IN_TRANSIT`. */
  parse(text: string, flag: string): E {
    let normal = text.trim().toLowerCase().replace(/-/g, "_");
    if (normal.startsWith(this.prefixLower)) normal = normal.slice(this.prefixLower.length);
    const value = this.byShort.get(normal);
    if (value === undefined) {
      throw new UsageError(`${flag}: unknown ${this.what} "${text}" (one of: ${this.names().join(", ")})`);
    }
    return value;
  }

  /** The short name; the number for a value this build does not know (a newer server); "-" for unset. */
  format(value: number): string {
    if (value === 0) return "-";
    return this.byValue.get(value) ?? String(value);
  }

  /**
   * The full proto name (`ORDER_STATE_PAID`), as protobuf's JSON mapping
   * prints enums; a number this build does not know stays a number, as the
   * mapping also says.
   */
  protoName(value: number): string | number {
    return this.protoByValue.get(value) ?? value;
  }

  names(): string[] {
    return [...this.byShort.keys()];
  }
}

export const ADJUSTMENT_REASONS = new EnumNames<AdjustmentReason>("reason", "ADJUSTMENT_REASON_", AdjustmentReason);
export const TRACKING_STATUSES = new EnumNames<TrackingStatus>("tracking status", "TRACKING_STATUS_", TrackingStatus);
export const RESERVATION_STATES = new EnumNames<ReservationState>("reservation state", "RESERVATION_STATE_", ReservationState);
export const ORDER_STATES = new EnumNames<OrderState>("order state", "ORDER_STATE_", OrderState);
