// A ReserveBatch's granted holds on one SKU as one journal event in columns
// (`reservedCols`, journal format 5), instead of reservedMany's tuple per hold.
//
// Why: msgpack of reservedMany's tuples (an array, two strings and two numbers
// per hold, each string through msgpackr's per-character loop) was the largest
// single step of a batch item's journal append, and each tuple was one more
// object per item (bench/README.md "ReserveBatch on one hot SKU", fourth
// round). In columns the ids are one string that msgpackr writes with one
// native UTF-8 copy, their lengths one character each, and the location,
// quantity and TTL, which a batch nearly always shares, are written once.
//
// The event keeps to what msgpack stores exactly (strings, numbers, arrays), so
// the journals, scrub and backups carry it like any other event. Applying it is
// applying the same holds as reservedMany, in the same order.

import { assert } from "../errors";

/** One hold of a reservedMany event: a tuple, since msgpack would repeat every field name per hold. */
export type HoldTuple = readonly [id: string, locationId: string, quantity: number, ttlMs: number];

export interface ReservedManyEvent {
  readonly t: "reservedMany";
  readonly holds: readonly HoldTuple[];
  readonly atMs: number;
}

export interface ReservedColsEvent {
  readonly t: "reservedCols";
  /** When every hold was made. */
  readonly atMs: number;
  /** The holds' ids, one after another; every character is below 256 (see LATIN1_ONLY). */
  readonly ids: string;
  /** Per hold, its id's length as one character (char code = length). */
  readonly idLengths: string;
  /** The holds' distinct locations, in order of first use. */
  readonly locations: readonly string[];
  /** Per hold, the index of its location in `locations` as one character; "" when there is one location. */
  readonly locationOf: string;
  /** Per hold, or one number when every hold has it. */
  readonly quantities: number | readonly number[];
  readonly ttlsMs: number | readonly number[];
}

/**
 * A character code a column may hold: below the UTF-16 surrogates, which
 * msgpack's UTF-8 would not keep alone. Ids are at most ID_LENGTH_MAX and
 * locations at most LOCATIONS_PER_SKU_MAX, far below it; anything else is
 * written as reservedMany.
 */
const COLUMN_CHAR_MAX = 0xd7ff;

/**
 * Ids are rebuilt from a latin1 copy of the ids column, so that each is a flat
 * string of its own: substrings of the column would keep the whole batch's
 * string alive for as long as any one of its holds is remembered. Ids with
 * a character above 255 (never from the gRPC edge, whose ids match ID_PATTERN)
 * are written as reservedMany.
 */
const LATIN1_ONLY = /^[\0-\xff]*$/;

/** String.fromCharCode's arguments per call: well below any engine's argument limit. */
const CHARS_PER_CALL = 1024;

/** Collects the holds one turn grants, for one event. */
export class HoldColumns {
  private readonly ids: string[] = [];
  private readonly idLengths: number[] = [];
  private readonly locations: string[] = [];
  private readonly locationOf: number[] = [];
  private readonly quantities: number[] = [];
  private readonly ttlsMs: number[] = [];
  private sameQuantity = true;
  private sameTtl = true;
  private columnChars = true;
  private lastLocation = "";
  private lastLocationIndex = -1;

  get size(): number {
    return this.ids.length;
  }

  add(id: string, locationId: string, quantity: number, ttlMs: number): void {
    const n = this.ids.length;
    if (n > 0) {
      if (quantity !== this.quantities[0]) this.sameQuantity = false;
      if (ttlMs !== this.ttlsMs[0]) this.sameTtl = false;
    }
    if (locationId !== this.lastLocation || this.lastLocationIndex < 0) {
      let index = this.locations.indexOf(locationId);
      if (index < 0) index = this.locations.push(locationId) - 1;
      this.lastLocation = locationId;
      this.lastLocationIndex = index;
    }
    if (id.length > COLUMN_CHAR_MAX || this.lastLocationIndex > COLUMN_CHAR_MAX) this.columnChars = false;
    this.ids.push(id);
    this.idLengths.push(id.length);
    this.locationOf.push(this.lastLocationIndex);
    this.quantities.push(quantity);
    this.ttlsMs.push(ttlMs);
  }

  /** The event for the holds added, made at atMs: reservedCols, or reservedMany when a column cannot hold them. */
  event(atMs: number): ReservedColsEvent | ReservedManyEvent {
    const ids = this.ids.join("");
    if (!this.columnChars || !LATIN1_ONLY.test(ids)) {
      const holds = this.ids.map((id, i): HoldTuple => [id, this.locations[this.locationOf[i] as number] as string, this.quantities[i] as number, this.ttlsMs[i] as number]);
      return { t: "reservedMany", holds, atMs };
    }
    return {
      t: "reservedCols",
      atMs,
      ids,
      idLengths: charsOf(this.idLengths),
      locations: this.locations.slice(),
      locationOf: this.locations.length === 1 ? "" : charsOf(this.locationOf),
      quantities: this.sameQuantity ? (this.quantities[0] as number) : this.quantities.slice(),
      ttlsMs: this.sameTtl ? (this.ttlsMs[0] as number) : this.ttlsMs.slice(),
    };
  }
}

function charsOf(codes: readonly number[]): string {
  let text = "";
  for (let i = 0; i < codes.length; i += CHARS_PER_CALL) text += String.fromCharCode(...codes.slice(i, i + CHARS_PER_CALL));
  return text;
}

/** How many holds a reservedCols event carries. */
export function holdCount(e: ReservedColsEvent): number {
  return e.idLengths.length;
}

/**
 * Calls hold() for each hold of the event, in order. First checks that the
 * columns agree with each other, so that a record which passed its checksum
 * but was not written by this code fails before any hold is applied.
 */
export function forEachHold(e: ReservedColsEvent, hold: (id: string, locationId: string, quantity: number, ttlMs: number) => void): void {
  const n = e.idLengths.length;
  const { quantities, ttlsMs, locations, locationOf } = e;
  assert(typeof quantities === "number" || quantities.length === n, `reservedCols: ${n} holds, quantities of another length`);
  assert(typeof ttlsMs === "number" || ttlsMs.length === n, `reservedCols: ${n} holds, TTLs of another length`);
  assert(locationOf === "" ? locations.length === 1 : locationOf.length === n, `reservedCols: ${n} holds, location indexes of another length`);
  assert(LATIN1_ONLY.test(e.ids), "reservedCols: an id character above 255");
  const idBytes = Buffer.from(e.ids, "latin1");
  let total = 0;
  for (let i = 0; i < n; i++) {
    total += e.idLengths.charCodeAt(i);
    assert(locationOf === "" || locationOf.charCodeAt(i) < locations.length, `reservedCols: hold ${i} names no location`);
  }
  assert(total === idBytes.length, `reservedCols: id lengths cover ${total} of ${idBytes.length} characters`);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const end = at + e.idLengths.charCodeAt(i);
    hold(
      idBytes.toString("latin1", at, end),
      locations[locationOf === "" ? 0 : locationOf.charCodeAt(i)] as string,
      typeof quantities === "number" ? quantities : (quantities[i] as number),
      typeof ttlsMs === "number" ? ttlsMs : (ttlsMs[i] as number),
    );
    at = end;
  }
}
