// The direct Reserve path hangs nothing of a call on its stream that outlives
// the call: every stream carries the same shared listener functions (no
// closure or once() wrapper per call), and once the stream closed it no longer
// leads to the call, so the call's objects are garbage while the closed stream
// is still held.

import http2 from "node:http2";
import { expect } from "chai";
import pino from "pino";
import { credentials, Server } from "@grpc/grpc-js";
import { InventoryServiceClient, Reservation, ReserveRequest } from "../../src/gen/quartermaster/v1/inventory";
import { DirectReserve } from "../../src/grpc/direct_reserve";
import { edgeServerOptions, type GrpcEdge } from "../../src/grpc/edge";
import { exposedGc } from "../../src/observability/idle_collector";
import { OPEN_GATE } from "../../src/security/call_gate";
import { edgeTestConfig, pollUntil, startEdgeSeeingStreams } from "../support/edge_streams";

const STREAM_EVENTS = ["data", "end", "close", "error"];

interface Held {
  request: ReserveRequest;
  resolve: (reservation: Reservation) => void;
}

/** Answers the held calls; in a function of its own, so that no suspended async frame of the test keeps a request. */
function answerHeld(held: Held[]): void {
  for (const h of held.splice(0)) h.resolve(Reservation.fromPartial({ reservationId: h.request.reservationId, skuId: h.request.skuId, quantity: 1 }));
}

describe("direct Reserve path: a closed stream holds nothing of its call", () => {
  const streams: http2.ServerHttp2Stream[] = [];
  const held: Held[] = [];
  let server: Server;
  let edge: GrpcEdge;
  let client: InventoryServiceClient;

  before(async () => {
    server = new Server(edgeServerOptions(edgeTestConfig()));
    const direct = new DirectReserve(
      { logger: pino({ level: "silent" }), observe: () => undefined, isReady: () => true, gate: OPEN_GATE },
      (request) => new Promise<Reservation>((resolve) => held.push({ request, resolve })),
    );
    let address: string;
    ({ edge, address } = await startEdgeSeeingStreams(server, (stream) => streams.push(stream), direct));
    client = new InventoryServiceClient(address, credentials.createInsecure());
  });

  after(async () => {
    client?.close();
    edge?.stop();
    server?.forceShutdown();
    await Promise.resolve();
  });

  it("gives every call's stream the same listener functions, and lets the call's objects go once the stream closed", async () => {
    const reserve = (reservationId: string): Promise<Reservation> =>
      new Promise((resolve, reject) =>
        client.reserve(ReserveRequest.fromPartial({ reservationId, skuId: "sku-1", quantity: 1 }), (error, response) => (error === null ? resolve(response) : reject(error))),
      );
    const answers = Promise.all([reserve("r-1"), reserve("r-2")]);
    await pollUntil("both calls to reach the handler", () => held.length === 2);
    expect(streams).to.have.length(2);
    const [first, second] = streams as [http2.ServerHttp2Stream, http2.ServerHttp2Stream];
    // The direct path's listener comes first: it took the stream before the edge saw it (the edge adds a 'close' listener of its own).
    for (const event of STREAM_EVENTS) {
      expect(first.listenerCount(event), `'${event}' listeners`).to.be.greaterThan(0);
      expect(first.listeners(event)[0], `the direct path's '${event}' listener of two calls`).to.equal(second.listeners(event)[0]);
    }

    const requests = held.map((h) => new WeakRef(h.request));
    answerHeld(held);
    const replies = await answers;
    expect(replies.map((r) => r.reservationId)).to.deep.equal(["r-1", "r-2"]);
    await pollUntil("both server streams to close", () => first.closed && second.closed && first.destroyed && second.destroyed);

    // The closed streams are still held here; what they lead to must not include their calls.
    const gc = exposedGc();
    expect(gc, "V8's gc()").to.not.equal(null);
    await pollUntil("the calls' requests to be collected", () => {
      gc?.();
      return requests.every((r) => r.deref() === undefined);
    });
    // The error guard stays, so that a late error on a dead stream is not thrown from the emitter.
    expect(() => first.emit("error", new Error("late"))).not.to.throw();
  });
});
