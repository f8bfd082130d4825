// A ReserveBatch request as the fast reader (reserve_batch_codec.ts) reads
// it: one array per field instead of an object per item (and another for its
// ttl). Why: those objects lived for the whole call (tens of ms), past the
// scavenges that would have dropped them young; see bench/README.md
// "ReserveBatch on one hot SKU". Read as a ReserveBatchRequest (`items`), it
// builds the generated objects once, so any other reader sees what it saw
// before; validation reads the columns.

import type { Duration } from "../gen/google/protobuf/duration";
import type { ReserveBatchRequest, ReserveRequest } from "../gen/quartermaster/v1/inventory";

export class ReserveBatchColumns implements ReserveBatchRequest {
  readonly reservationIds: string[] = [];
  readonly skuIds: string[] = [];
  readonly quantities: number[] = [];
  readonly locationIds: string[] = [];
  /** Whether the item has a ttl; its seconds and nanos are then in ttlSeconds and ttlNanos (else 0). */
  readonly ttlSet: boolean[] = [];
  readonly ttlSeconds: number[] = [];
  readonly ttlNanos: number[] = [];
  /**
   * True while every id, SKU id and location id read holds only characters
   * ID_PATTERN allows, as the reader saw while scanning them for ASCII; then
   * validation checks their lengths only, not each against the pattern again.
   */
  plainIds = true;
  private materialised: ReserveRequest[] | undefined;

  get length(): number {
    return this.reservationIds.length;
  }

  get items(): ReserveRequest[] {
    this.materialised ??= this.reservationIds.map((reservationId, i): ReserveRequest => {
      const ttl: Duration | undefined = this.ttlSet[i] === true ? { seconds: this.ttlSeconds[i] ?? 0, nanos: this.ttlNanos[i] ?? 0 } : undefined;
      return { reservationId, skuId: this.skuIds[i] ?? "", quantity: this.quantities[i] ?? 0, locationId: this.locationIds[i] ?? "", ttl };
    });
    return this.materialised;
  }
}
