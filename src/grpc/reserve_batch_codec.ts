// ReserveBatch's own codecs: the reply's encoder, the same bytes as the
// generated ReserveBatchResponse.encode (a test compares them byte for
// byte), written straight into one buffer; and the request's reader (below).
//
// Why: the generated encoder spent about 3 µs of server CPU per item on a
// hot SKU (a fifth of an item's cost once the journal wrote one event per
// batch): a fork/join writer state per nested message (result, reservation,
// three timestamps), every int64 through @bufbuild's string-checking path, and
// each timestamp converted from its Date. Here a reservation's size is worked
// out first, so nothing is forked, and the fields after the id are copied as
// blocks when they equal the previous item's (the items of a batch on one SKU
// share their SKU, location, quantity, state and times).
// A result this path does not cover (an error, a negative or unsafe number)
// goes through the generated encoder, appended as it stands.

import { type Reservation, ReservationState, ReserveBatchRequest, ReserveBatchResponse, ReserveBatchResult } from "../gen/quartermaster/v1/inventory";
import { ID_PATTERN } from "../limits";
import { ReserveBatchColumns } from "./reserve_batch_columns";
import { ReserveBatchReply } from "./reserve_batch_reply";

const RESERVED = ReservationState.RESERVATION_STATE_RESERVED;

/** Bytes of a varint for a non-negative safe integer. */
function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** A one-byte tag and a varint at pos in buf, which has room for them; returns the position after them. */
function putVarint(buf: Buffer, pos: number, tag: number, n: number): number {
  buf[pos++] = tag;
  while (n >= 0x80) {
    buf[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

class Writer {
  private buf: Buffer;
  private pos = 0;

  constructor(capacity: number) {
    this.buf = Buffer.allocUnsafe(Math.max(64, capacity));
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  byte(b: number): this {
    this.room(1);
    this.buf[this.pos++] = b;
    return this;
  }

  varint(n: number): this {
    this.room(10);
    while (n >= 0x80) {
      this.buf[this.pos++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    this.buf[this.pos++] = n;
    return this;
  }

  /** A string field's length and UTF-8 bytes; byteLength is its UTF-8 size (utf8Size). */
  string(s: string, byteLength: number): this {
    this.varint(byteLength);
    this.room(byteLength);
    if (byteLength === s.length) {
      // ASCII: a loop in JS beats a call into C++ for ids of a few dozen characters.
      const buf = this.buf;
      let pos = this.pos;
      for (let i = 0; i < s.length; i++) buf[pos++] = s.charCodeAt(i);
      this.pos = pos;
    } else {
      this.pos += this.buf.write(s, this.pos, byteLength, "utf8");
    }
    return this;
  }

  bytes(b: Uint8Array): this {
    this.room(b.length);
    if (b.length > 32) this.buf.set(b, this.pos);
    else for (let i = 0; i < b.length; i++) this.buf[this.pos + i] = b[i] as number;
    this.pos += b.length;
    return this;
  }

  /**
   * Result field 1 holding a reservation: the id, then `rest` (its fields
   * after the id), when the id is ASCII and not empty; else it writes nothing
   * and returns false. Why: one pass over the id copies it and finds out it is
   * ASCII (validated ids always are), where sizing it first was another pass
   * and each byte went through byte()/varint() and their room checks.
   */
  asciiReservation(id: string, rest: Buffer): boolean {
    const idBytes = id.length;
    if (idBytes === 0) return false;
    const size = 1 + varintSize(idBytes) + idBytes + rest.length;
    const resultSize = 1 + varintSize(size) + size;
    this.room(1 + varintSize(resultSize) + resultSize);
    const buf = this.buf;
    let pos = putVarint(buf, this.pos, 10, resultSize);
    pos = putVarint(buf, pos, 10, size);
    pos = putVarint(buf, pos, 10, idBytes);
    for (let i = 0; i < idBytes; i++) {
      const c = id.charCodeAt(i);
      if (c > 0x7f) return false;
      buf[pos++] = c;
    }
    for (let i = 0; i < rest.length; i++) buf[pos++] = rest[i] as number;
    this.pos = pos;
    return true;
  }

  /** A timestamp field (seconds = 1, nanos = 2) for a time in ms >= 0, as Timestamp.encode writes it. */
  timestamp(tag: number, ms: number): this {
    const seconds = Math.trunc(ms / 1000);
    const nanos = (ms % 1000) * 1_000_000;
    const size = (seconds === 0 ? 0 : 1 + varintSize(seconds)) + (nanos === 0 ? 0 : 1 + varintSize(nanos));
    this.byte(tag).varint(size);
    if (seconds !== 0) this.byte(8).varint(seconds);
    if (nanos !== 0) this.byte(16).varint(nanos);
    return this;
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

/** UTF-8 size of s: its length when it is ASCII (the usual id), else Buffer.byteLength's answer. */
function utf8Size(s: string): number {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s, "utf8");
  }
  return s.length;
}

const isCount = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;
const isTime = (ms: number | undefined): boolean => ms === undefined || isCount(ms);

/** A string field's size: tag, length, bytes (empty strings are not written). */
function stringFieldSize(byteLength: number): number {
  return byteLength === 0 ? 0 : 1 + varintSize(byteLength) + byteLength;
}

/**
 * The fields after the id, in two blocks remembered from the previous item:
 * sku, location and quantity (fields 2-4); state, the three times and the
 * fulfilled quantity (5-9). The items of one batch usually share both.
 */
class Blocks {
  private skuId = "";
  private locationId = "";
  private quantity = Number.NaN;
  private place: Buffer = Buffer.alloc(0);
  private state = Number.NaN;
  private expiresMs: number | undefined = Number.NaN;
  private createdMs: number | undefined = Number.NaN;
  private updatedMs: number | undefined = Number.NaN;
  private fulfilled = Number.NaN;
  private tail: Buffer = Buffer.alloc(0);
  private restOf: [Buffer, Buffer] | undefined;
  private rest: Buffer = Buffer.alloc(0);

  /** Both blocks as one buffer: what follows the id of an item that shares them with the previous one. */
  restBlock(place: Buffer, tail: Buffer): Buffer {
    if (this.restOf === undefined || this.restOf[0] !== place || this.restOf[1] !== tail) {
      this.rest = Buffer.concat([place, tail]);
      this.restOf = [place, tail];
    }
    return this.rest;
  }

  placeBlock(skuId: string, locationId: string, quantity: number): Buffer {
    if (skuId !== this.skuId || locationId !== this.locationId || quantity !== this.quantity || this.place.length === 0) {
      const out = new Writer(64);
      const skuBytes = utf8Size(skuId);
      const locationBytes = utf8Size(locationId);
      if (skuBytes !== 0) out.byte(18).string(skuId, skuBytes);
      if (locationBytes !== 0) out.byte(26).string(locationId, locationBytes);
      if (quantity !== 0) out.byte(32).varint(quantity);
      this.place = Buffer.from(out.finish());
      this.skuId = skuId;
      this.locationId = locationId;
      this.quantity = quantity;
    }
    return this.place;
  }

  tailBlock(state: number, expiresMs: number | undefined, createdMs: number | undefined, updatedMs: number | undefined, fulfilled: number): Buffer {
    if (
      state !== this.state ||
      expiresMs !== this.expiresMs ||
      createdMs !== this.createdMs ||
      updatedMs !== this.updatedMs ||
      fulfilled !== this.fulfilled
    ) {
      const out = new Writer(64);
      if (state !== 0) out.byte(40).varint(state);
      if (expiresMs !== undefined) out.timestamp(50, expiresMs);
      if (createdMs !== undefined) out.timestamp(58, createdMs);
      if (updatedMs !== undefined) out.timestamp(66, updatedMs);
      if (fulfilled !== 0) out.byte(72).varint(fulfilled);
      this.tail = Buffer.from(out.finish());
      this.state = state;
      this.expiresMs = expiresMs;
      this.createdMs = createdMs;
      this.updatedMs = updatedMs;
      this.fulfilled = fulfilled;
    }
    return this.tail;
  }
}

/** Writes result field 1 of the response holding this reservation, or returns false when it needs the generated encoder. */
function writeReservationResult(out: Writer, r: Reservation, blocks: Blocks): boolean {
  return writeReservationFields(out, blocks, r.reservationId, r.skuId, r.locationId, r.quantity, r.state, r.expiresAt?.getTime(), r.createdAt?.getTime(), r.updatedAt?.getTime(), r.fulfilledQuantity);
}

/** The same for a reservation given as its fields (times in ms, undefined when unset), as ReserveBatchReply holds them. */
function writeReservationFields(
  out: Writer,
  blocks: Blocks,
  reservationId: string,
  skuId: string,
  locationId: string,
  quantity: number,
  state: number,
  expiresMs: number | undefined,
  createdMs: number | undefined,
  updatedMs: number | undefined,
  fulfilled: number,
): boolean {
  if (!isCount(quantity) || !isCount(fulfilled) || !isCount(state) || !isTime(expiresMs) || !isTime(createdMs) || !isTime(updatedMs)) {
    return false;
  }
  const idBytes = utf8Size(reservationId);
  const place = blocks.placeBlock(skuId, locationId, quantity);
  const tail = blocks.tailBlock(state, expiresMs, createdMs, updatedMs, fulfilled);
  const size = stringFieldSize(idBytes) + place.length + tail.length;
  // ReserveBatchResponse.results (1) holds a ReserveBatchResult whose outcome.reservation (1) is the reservation.
  out.byte(10).varint(1 + varintSize(size) + size);
  out.byte(10).varint(size);
  if (idBytes !== 0) out.byte(10).string(reservationId, idBytes);
  out.bytes(place).bytes(tail);
  return true;
}

function writeResult(out: Writer, result: ReserveBatchResult, blocks: Blocks): void {
  const outcome = result.outcome;
  if (outcome?.$case === "reservation" && writeReservationResult(out, outcome.reservation, blocks)) return;
  const body = ReserveBatchResult.encode(result).finish();
  out.byte(10).varint(body.length).bytes(body);
}

/** ReserveBatchResponse.encode(message).finish(), byte for byte. */
export function encodeReserveBatchResponse(message: ReserveBatchResponse): Buffer {
  const count = message instanceof ReserveBatchReply ? message.length : message.results.length;
  // About 100 bytes per reservation with short ids; the writer grows if not.
  const out = new Writer(count * 112 + 16);
  const blocks = new Blocks();
  if (message instanceof ReserveBatchReply) {
    // Held as columns: a granted hold is written from them, without its objects.
    const { items, locations, atMs } = message;
    const { ids, skuIds, quantities, ttlsMs } = items;
    for (let i = 0; i < count; i++) {
      const locationId = locations[i];
      if (locationId === null || locationId === undefined) {
        writeResult(out, message.resultAt(i), blocks);
        continue;
      }
      const at = atMs[i] as number;
      const createdMs = at > 0 ? at : undefined;
      const quantity = quantities[i] as number;
      const expiresMs = at + (ttlsMs[i] as number);
      if (isCount(quantity) && isCount(at) && isCount(expiresMs)) {
        const place = blocks.placeBlock(skuIds[i] as string, locationId, quantity);
        const tail = blocks.tailBlock(RESERVED, expiresMs, createdMs, createdMs, 0);
        if (out.asciiReservation(ids[i] as string, blocks.restBlock(place, tail))) continue;
      }
      const written = writeReservationFields(out, blocks, ids[i] as string, skuIds[i] as string, locationId, quantities[i] as number, RESERVED, at + (ttlsMs[i] as number), createdMs, createdMs, 0);
      if (!written) writeResult(out, message.resultAt(i), blocks);
    }
  } else {
    for (const result of message.results) writeResult(out, result, blocks);
  }
  if (!isCount(message.succeeded) || !isCount(message.failed) || message.succeeded > 0x7fffffff || message.failed > 0x7fffffff) {
    return Buffer.from(ReserveBatchResponse.encode(message).finish());
  }
  if (message.succeeded !== 0) out.byte(16).varint(message.succeeded);
  if (message.failed !== 0) out.byte(24).varint(message.failed);
  return out.finish();
}

// ---- The request ----------------------------------------------------------------

/** Marks input the fast reader does not take: the generated decoder reads the whole message instead. */
class NotCanonical {}
const NOT_CANONICAL = new NotCanonical();

/**
 * Reads a ReserveBatchRequest as the generated decoder does, for the shape
 * clients send: known fields in their wire types, ASCII strings, numbers in
 * the safe range. Anything else (an unknown or repeated-in-another-type
 * field, a non-ASCII byte, a negative or huge number, a truncated message)
 * makes it hand the bytes to the generated decoder, so every input gets
 * exactly the generated decoder's answer or error; a property test holds
 * the two to that. Why: the generated decoder was about 1.3 µs per item (a
 * TextDecoder call and a subarray per string, int64 through strings, a
 * recursion counter on the reader per nested message); here ASCII ids are
 * read with one latin1 slice and an item's SKU id, usually the previous
 * item's, is that same string again.
 */
export function decodeReserveBatchRequest(bytes: Uint8Array): ReserveBatchRequest {
  try {
    return readBatch(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (error) {
    if (error !== NOT_CANONICAL) throw error;
    return ReserveBatchRequest.decode(bytes);
  }
}

/** Per ASCII byte: 1 when ID_PATTERN allows it in an id. Derived from the pattern, so the two cannot disagree. */
const ID_BYTE = Uint8Array.from({ length: 0x80 }, (_, b) => (ID_PATTERN.test(String.fromCharCode(b)) ? 1 : 0));

type Latin1Slicer = (this: Buffer, start: number, end: number) => string;
/**
 * Buffer's own latin1 slicer, which toString("latin1", start, end) calls after
 * checking its arguments and looking the encoding up (about a tenth of reading
 * a request, in process); toString when a Node does not have it.
 */
const latin1Slice: Latin1Slicer =
  (Buffer.prototype as unknown as { latin1Slice?: Latin1Slicer }).latin1Slice ??
  function (this: Buffer, start: number, end: number): string {
    return this.toString("latin1", start, end);
  };

class Reader {
  pos = 0;
  private lastSku = "";
  private lastLocation = "";

  constructor(
    private readonly buf: Buffer,
    readonly end: number,
    private readonly columns: ReserveBatchColumns,
  ) {}

  /** A varint that fits a safe integer >= 0 in at most 7 bytes (2^49); longer ones go to the generated decoder. */
  varint(): number {
    let n = 0;
    let scale = 1;
    for (let i = 0; i < 7; i++) {
      if (this.pos >= this.end) throw NOT_CANONICAL;
      const b = this.buf[this.pos++] as number;
      n += (b & 0x7f) * scale;
      if (b < 0x80) return n;
      scale *= 128;
    }
    throw NOT_CANONICAL;
  }

  /** The end of a length-delimited field that starts here. */
  limit(): number {
    const length = this.varint();
    const end = this.pos + length;
    if (end > this.end) throw NOT_CANONICAL;
    return end;
  }

  /** The string from here to end, which must be ASCII; notes on the columns when it has a byte no id may have. */
  private text(end: number): string {
    const buf = this.buf;
    let plain = 1;
    for (let i = this.pos; i < end; i++) {
      const b = buf[i] as number;
      if (b >= 0x80) throw NOT_CANONICAL;
      plain &= ID_BYTE[b] as number;
    }
    if (plain === 0) this.columns.plainIds = false;
    return latin1Slice.call(buf, this.pos, end);
  }

  private same(s: string, end: number): boolean {
    if (s.length !== end - this.pos) return false;
    for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) !== this.buf[this.pos + i]) return false;
    return true;
  }

  string(kind: "id" | "sku" | "location"): string {
    const end = this.limit();
    let s: string;
    // The previous item's SKU or location again: already scanned when it was read.
    if (kind === "sku" && this.same(this.lastSku, end)) s = this.lastSku;
    else if (kind === "location" && this.same(this.lastLocation, end)) s = this.lastLocation;
    else {
      s = this.text(end);
      if (kind === "sku") this.lastSku = s;
      else if (kind === "location") this.lastLocation = s;
    }
    this.pos = end;
    return s;
  }
}

function readBatch(buf: Buffer): ReserveBatchRequest {
  const columns = new ReserveBatchColumns();
  const r = new Reader(buf, buf.length, columns);
  while (r.pos < r.end) {
    if (r.varint() !== 10) throw NOT_CANONICAL;
    const end = r.limit();
    readItem(r, end, columns);
  }
  return columns;
}

/** One item into the columns; a field given twice keeps its last value, as the generated decoder does (a ttl is replaced, not merged). */
function readItem(r: Reader, end: number, columns: ReserveBatchColumns): void {
  let reservationId = "";
  let skuId = "";
  let quantity = 0;
  let locationId = "";
  let ttlSet = false;
  let seconds = 0;
  let nanos = 0;
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === 10) reservationId = r.string("id");
    else if (tag === 18) skuId = r.string("sku");
    else if (tag === 24) quantity = r.varint();
    else if (tag === 34) locationId = r.string("location");
    else if (tag === 42) {
      const durationEnd = r.limit();
      ttlSet = true;
      seconds = 0;
      nanos = 0;
      while (r.pos < durationEnd) {
        const field = r.varint();
        if (field === 8) seconds = r.varint();
        else if (field === 16) {
          nanos = r.varint();
          if (nanos > 0x7fffffff) throw NOT_CANONICAL;
        } else throw NOT_CANONICAL;
        if (r.pos > durationEnd) throw NOT_CANONICAL;
      }
    } else throw NOT_CANONICAL;
    if (r.pos > end) throw NOT_CANONICAL;
  }
  columns.reservationIds.push(reservationId);
  columns.skuIds.push(skuId);
  columns.quantities.push(quantity);
  columns.locationIds.push(locationId);
  columns.ttlSet.push(ttlSet);
  columns.ttlSeconds.push(seconds);
  columns.ttlNanos.push(nanos);
}
