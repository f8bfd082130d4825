// A caller flooding one SKU against a caller with room to spare, through a
// real node whose rate limiter runs on a ManualClock: the buckets refill only
// when the test says so, so every count below is exact whatever the machine's
// load. What the flood costs the quiet caller in latency is a figure, not a
// verdict: `node dist/bench/rate_limit_cost.js --flood` prints it.

import { credentials, Metadata, type ServiceError, status as GrpcStatus } from "@grpc/grpc-js";
import { expect } from "chai";
import { CALL_DEADLINE_MS_DEFAULT, InventoryClient } from "../../src/cli/rpc";
import { decodeStatusDetails } from "../../src/cli/status_details";
import { ManualClock } from "../../src/clock";
import { type InventoryServiceClient, ReservationState, type ReserveRequest, type Sku } from "../../src/gen/quartermaster/v1/inventory";
import type { BucketLimit } from "../../src/security/rate_limit/bucket";
import { rateLimitedGate } from "../../src/security/rate_limit/gate";
import { MemoryBucketStore } from "../../src/security/rate_limit/memory_store";
import { expectFailure, seedSku } from "../support/fixtures";
import { type GatedNode, startGatedNode, subjectMetadata, TEST_SUBJECT_GATE } from "../support/gated_node";
import { call, createClients } from "../support/server_process";

const FLOODER_LIMIT: BucketLimit = { perSecond: 5, burst: 5 };
/** The quiet caller's limit is far above what it sends: it must never be refused. */
const QUIET_LIMIT: BucketLimit = { perSecond: 100_000, burst: 100_000 };
/** Flood calls per wave, all in flight at once: 20 times the flooder's burst. */
const FLOOD_WAVE_CALLS = 100;
/** Quiet reservations per wave, sent one after another while the wave is in flight. */
const QUIET_WAVE_CALLS = 20;
const HOT_ON_HAND = 1_000_000;
const QUIET_ON_HAND = 1_000;
/** One token at FLOODER_LIMIT.perSecond, the retry delay of a refusal on an empty bucket. */
const TOKEN_MS = 1000 / FLOODER_LIMIT.perSecond;

function separateClient(address: string): InventoryServiceClient {
  // Its own connection: two callers do not share one HTTP/2 connection (grpc-js pools subchannels by default).
  return new InventoryClient(address, credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
}

function reserve(client: InventoryServiceClient, subject: string, skuId: string, reservationId: string): Promise<unknown> {
  const request: ReserveRequest = { reservationId, skuId, quantity: 1, locationId: "", ttl: undefined };
  return call(client, "reserve", request, { metadata: subjectMetadata(new Metadata(), subject), deadlineMs: CALL_DEADLINE_MS_DEFAULT });
}

interface WaveOutcome {
  readonly admittedIds: string[];
  readonly refused: ServiceError[];
  /** Failures other than RESOURCE_EXHAUSTED: none expected. */
  readonly other: ServiceError[];
  /** Quiet reservations granted, by SKU. */
  readonly quietOnHot: number;
  readonly quietOnQuiet: number;
}

describe("rate limit: a caller flooding one SKU", function () {
  this.timeout(120_000);
  let node: GatedNode;
  const clock = new ManualClock();
  const clients: InventoryServiceClient[] = [];
  let admin: ReturnType<typeof createClients>;

  before(async () => {
    const policy = (caller: { subject: string }): BucketLimit | undefined =>
      caller.subject === "flooder" ? FLOODER_LIMIT : caller.subject === "quiet" ? QUIET_LIMIT : undefined;
    node = await startGatedNode(rateLimitedGate(TEST_SUBJECT_GATE, policy, new MemoryBucketStore(clock)));
    admin = createClients(node.address);
    // The admin is the anonymous caller: no limit.
    await seedSku(admin, "hot-1", HOT_ON_HAND);
    await seedSku(admin, "quiet-1", QUIET_ON_HAND);
  });

  after(async () => {
    for (const client of clients.splice(0)) client.close();
    admin?.close();
    await node?.stop();
  });

  it("admits the flooder its burst, then one token per 200 ms of clock; refuses the rest with RATE_LIMITED and the retry delay; never refuses the quiet caller; refusals reserve nothing", async () => {
    const quiet = separateClient(node.address);
    const flooder = separateClient(node.address);
    clients.push(quiet, flooder);
    let floodSeq = 0;
    let quietSeq = 0;
    /** Every quiet reservation granted, with its SKU. */
    const quietHolds: { reservationId: string; skuId: string }[] = [];

    /** A wave of flood calls all in flight while the quiet caller reserves one unit at a time, alternating hot-1 (the flooded SKU) and quiet-1. */
    const wave = async (): Promise<WaveOutcome> => {
      const outcome: WaveOutcome = { admittedIds: [], refused: [], other: [], quietOnHot: 0, quietOnQuiet: 0 };
      const flood = Array.from({ length: FLOOD_WAVE_CALLS }, () => {
        const id = `flood-${floodSeq++}`;
        return reserve(flooder, "flooder", "hot-1", id).then(
          () => void outcome.admittedIds.push(id),
          (error: ServiceError) => void (error.code === GrpcStatus.RESOURCE_EXHAUSTED ? outcome.refused : outcome.other).push(error),
        );
      });
      let quietOnHot = 0;
      let quietOnQuiet = 0;
      for (let i = 0; i < QUIET_WAVE_CALLS; i++) {
        const id = `quiet-${quietSeq++}`;
        const onHot = i % 2 === 0;
        // A refusal rejects here and fails the test with its status.
        const skuId = onHot ? "hot-1" : "quiet-1";
        await reserve(quiet, "quiet", skuId, id);
        quietHolds.push({ reservationId: id, skuId });
        if (onHot) quietOnHot += 1;
        else quietOnQuiet += 1;
      }
      await Promise.all(flood);
      return { ...outcome, quietOnHot, quietOnQuiet };
    };

    const expectRefusals = (refused: readonly ServiceError[], retryDelayMs: number): void => {
      for (const error of refused) {
        const details = decodeStatusDetails(error);
        expect(details.errorInfo?.reason, error.details).to.equal("RATE_LIMITED");
        expect(details.retryInfo?.retryDelayMs, error.details).to.equal(retryDelayMs);
        expect(error.details).to.include("rate limit of 5 calls/s (burst 5) exceeded by flooder");
      }
    };

    // The clock has not moved: the flooder has its burst and not one token more.
    const first = await wave();
    expect(first.other.map((e) => e.details)).to.deep.equal([]);
    expect(first.admittedIds).to.have.length(FLOODER_LIMIT.burst);
    expect(first.refused).to.have.length(FLOOD_WAVE_CALLS - FLOODER_LIMIT.burst);
    // An empty bucket holds its next token one token-time later.
    expectRefusals(first.refused, TOKEN_MS);

    // Half a token later: still nothing to take, and half the wait left.
    clock.advance(TOKEN_MS / 2);
    const half = await wave();
    expect(half.other.map((e) => e.details)).to.deep.equal([]);
    expect(half.admittedIds).to.deep.equal([]);
    expect(half.refused).to.have.length(FLOOD_WAVE_CALLS);
    expectRefusals(half.refused, TOKEN_MS / 2);

    // Ten seconds idle refill the bucket to its burst, not to 50 tokens.
    clock.advance(10_000);
    const refilled = await wave();
    expect(refilled.other.map((e) => e.details)).to.deep.equal([]);
    expect(refilled.admittedIds).to.have.length(FLOODER_LIMIT.burst);
    expect(refilled.refused).to.have.length(FLOOD_WAVE_CALLS - FLOODER_LIMIT.burst);
    expectRefusals(refilled.refused, TOKEN_MS);

    // The quiet caller was never refused (wave() would have thrown), and every reservation it made is held.
    const waves = [first, half, refilled];
    expect(waves.map((w) => w.quietOnHot + w.quietOnQuiet)).to.deep.equal([QUIET_WAVE_CALLS, QUIET_WAVE_CALLS, QUIET_WAVE_CALLS]);
    const quietOnHot = waves.reduce((sum, w) => sum + w.quietOnHot, 0);
    const quietOnQuiet = waves.reduce((sum, w) => sum + w.quietOnQuiet, 0);

    // Stock is exactly what the granted calls reserved: the refusals changed nothing.
    const flooderAdmitted = waves.reduce((sum, w) => sum + w.admittedIds.length, 0);
    expect(flooderAdmitted).to.equal(2 * FLOODER_LIMIT.burst);
    const hot: Sku = await call(admin.inventory, "getSku", { skuId: "hot-1" });
    expect({ onHand: hot.onHand, reserved: hot.reserved, available: hot.available }).to.deep.equal({
      onHand: HOT_ON_HAND,
      reserved: flooderAdmitted + quietOnHot,
      available: HOT_ON_HAND - flooderAdmitted - quietOnHot,
    });
    const quietSku: Sku = await call(admin.inventory, "getSku", { skuId: "quiet-1" });
    expect({ onHand: quietSku.onHand, reserved: quietSku.reserved }).to.deep.equal({ onHand: QUIET_ON_HAND, reserved: quietOnQuiet });

    // Each granted reservation is held; a refused one does not exist.
    const flooderHolds = [...first.admittedIds, ...refilled.admittedIds].map((reservationId) => ({ reservationId, skuId: "hot-1" }));
    for (const hold of [...flooderHolds, ...quietHolds]) {
      const held = await call(admin.inventory, "getReservation", hold);
      expect({ quantity: held.quantity, state: held.state }, hold.reservationId).to.deep.equal({ quantity: 1, state: ReservationState.RESERVATION_STATE_RESERVED });
    }
    const firstWaveIds = Array.from({ length: FLOOD_WAVE_CALLS }, (_, i) => `flood-${i}`);
    for (const id of firstWaveIds.filter((id) => !first.admittedIds.includes(id)).slice(0, 5)) {
      await expectFailure(call(admin.inventory, "getReservation", { reservationId: id, skuId: "hot-1" }), GrpcStatus.NOT_FOUND);
    }
  });
});
