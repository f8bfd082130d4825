// ReserveBatch's answer held as columns until it is encoded.
//
// Why: built as the generated types want it, every item of a batch was a
// result, an outcome, a reservation and three Dates, on top of the actor's
// view and outcome, all alive for the whole call (tens of ms), so scavenges
// copied them instead of dropping them. Here a hold granted by the call is
// only entries in arrays: its request item (id, SKU, quantity, ttl), its
// location and its time; the encoder (reserve_batch_codec.ts) writes it from
// them. Anything else (an error, a known id's reservation) is a result object
// as before. Read as a ReserveBatchResponse (`results`), it builds the same
// objects the generated types describe, once, so every other reader (the
// generated encoder, tests) sees what it saw before.

import { type ReservationView } from "../domain/sku";
import { type ReserveBatchResponse, type ReserveBatchResult } from "../gen/quartermaster/v1/inventory";
import { toReservation } from "./convert";
import type { ValidReserveBatch } from "./validation";

export class ReserveBatchReply implements ReserveBatchResponse {
  /** Per item: the location of the hold this call granted, or null when `others` holds its result. */
  readonly locations: (string | null)[];
  /** Per item: when its hold was granted (created and updated; it expires a ttl later); 0 when not granted now. */
  readonly atMs: number[];
  private readonly others: (ReserveBatchResult | undefined)[];
  private materialised: ReserveBatchResult[] | undefined;
  succeeded = 0;

  constructor(readonly items: ValidReserveBatch) {
    const n = items.ids.length;
    this.locations = new Array<string | null>(n).fill(null);
    this.atMs = new Array<number>(n).fill(0);
    this.others = new Array<ReserveBatchResult | undefined>(n).fill(undefined);
  }

  get length(): number {
    return this.items.ids.length;
  }

  get failed(): number {
    return this.length - this.succeeded;
  }

  /** Item i is a hold granted by this call, at this location and time. */
  grant(i: number, locationId: string, atMs: number): void {
    this.locations[i] = locationId;
    this.atMs[i] = atMs;
    this.succeeded++;
  }

  /** Item i's answer is this result (an error, or a reservation that already existed). */
  answer(i: number, result: ReserveBatchResult): void {
    this.others[i] = result;
    if (result.outcome?.$case === "reservation") this.succeeded++;
  }

  /** Item i as the generated type describes it. */
  resultAt(i: number): ReserveBatchResult {
    const other = this.others[i];
    if (other !== undefined) return other;
    const locationId = this.locations[i];
    if (i < 0 || i >= this.length || locationId === null || locationId === undefined) throw new Error(`reserve batch reply has no answer for item ${i}`);
    const atMs = this.atMs[i] as number;
    const items = this.items;
    const view: ReservationView = {
      reservationId: items.ids[i] as string,
      skuId: items.skuIds[i] as string,
      locationId,
      quantity: items.quantities[i] as number,
      state: "RESERVED",
      expiresAtMs: atMs + (items.ttlsMs[i] as number),
      createdAtMs: atMs,
      updatedAtMs: atMs,
      fulfilledQuantity: 0,
    };
    return { outcome: { $case: "reservation", reservation: toReservation(view) } };
  }

  get results(): ReserveBatchResult[] {
    this.materialised ??= Array.from({ length: this.length }, (_, i) => this.resultAt(i));
    return this.materialised;
  }
}
