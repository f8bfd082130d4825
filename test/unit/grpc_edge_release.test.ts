// The edge lets go of a call's objects when its stream closes: the stream keeps
// only the guard against late errors, so what grpc-js hung on it (the call, its
// decoder, the handler's closures) is garbage at once, not after the next full
// collection. Answers and cancellations still reach grpc-js as before.

import http2 from "node:http2";
import { expect } from "chai";
import { credentials, Metadata, Server, type ServerUnaryCall, type sendUnaryData, status } from "@grpc/grpc-js";
import { GetSkuRequest, InventoryServiceClient, InventoryServiceService, Sku } from "../../src/gen/quartermaster/v1/inventory";
import { edgeServerOptions, type GrpcEdge } from "../../src/grpc/edge";
import { edgeTestConfig, pollUntil, startEdgeSeeingStreams } from "../support/edge_streams";


describe("gRPC edge releases closed streams", () => {
  const streams: http2.ServerHttp2Stream[] = [];
  /** Each stream's native handle, read when the stream opens (Node forgets it when the stream is destroyed). */
  const handles = new Map<http2.ServerHttp2Stream, Record<symbol, unknown>>();
  let server: Server;
  let edge: GrpcEdge;
  let client: InventoryServiceClient;
  let cancelled = 0;
  let held: sendUnaryData<Sku> | undefined;

  before(async () => {
    server = new Server(edgeServerOptions(edgeTestConfig()));
    server.addService(InventoryServiceService, {
      getSku: (call: ServerUnaryCall<GetSkuRequest, Sku>, callback: sendUnaryData<Sku>) => {
        if (call.request.skuId === "hold") {
          // Never answered: the client cancels it.
          call.on("cancelled", () => cancelled++);
          held = callback;
          return;
        }
        callback(null, Sku.fromPartial({ skuId: call.request.skuId }));
      },
    });
    let address: string;
    ({ edge, address } = await startEdgeSeeingStreams(server, (stream) => {
      streams.push(stream);
      const key = Object.getOwnPropertySymbols(stream).find((s) => s.description === "kHandle");
      const handle = key === undefined ? undefined : (stream as unknown as Record<symbol, unknown>)[key];
      if (typeof handle === "object" && handle !== null) handles.set(stream, handle as Record<symbol, unknown>);
    }));
    client = new InventoryServiceClient(address, credentials.createInsecure());
  });

  after(async () => {
    client?.close();
    edge?.stop();
    server?.forceShutdown();
    await Promise.resolve();
  });

  it("answers a call, then leaves its stream with no listener but the error guard", async () => {
    const before = streams.length;
    const sku = await new Promise<Sku>((resolve, reject) =>
      client.getSku({ skuId: "sku-1" }, (error, response) => (error === null ? resolve(response) : reject(error))),
    );
    expect(sku.skuId).to.equal("sku-1");
    await pollUntil("the server stream to close", () => streams.length === before + 1 && streams[before]!.closed && streams[before]!.listenerCount("error") === 1);
    const stream = streams[before]!;
    expect(stream.eventNames()).to.deep.equal(["error"]);
    // A late error on the dead stream is swallowed, not thrown from the emitter.
    expect(() => stream.emit("error", new Error("late"))).not.to.throw();
  });

  it("cuts the closed stream's native handle from the stream, which a scavenge would otherwise keep", async () => {
    const before = streams.length;
    await new Promise<Sku>((resolve, reject) =>
      client.getSku({ skuId: "sku-2" }, (error, response) => (error === null ? resolve(response) : reject(error))),
    );
    await pollUntil("the server stream to close", () => streams.length === before + 1 && streams[before]!.closed && streams[before]!.listenerCount("error") === 1);
    const handle = handles.get(streams[before]!);
    expect(handle, "the stream's native handle (Node's kHandle)").to.not.equal(undefined);
    const owner = Object.getOwnPropertySymbols(handle!).find((s) => s.description === "owner_symbol");
    expect(owner, "Node's owner_symbol on the handle").to.not.equal(undefined);
    expect(handle![owner!]).to.equal(undefined);
  });

  it("still tells grpc-js of a call the client cancels", async () => {
    const before = streams.length;
    const pending = client.getSku({ skuId: "hold" }, new Metadata(), () => undefined);
    await pollUntil("the held call to reach the handler", () => held !== undefined);
    pending.cancel();
    await pollUntil("grpc-js to report the cancellation", () => cancelled === 1);
    const stream = streams[before]!;
    await pollUntil("the cancelled stream to be released", () => stream.eventNames().length === 1);
    expect(stream.eventNames()).to.deep.equal(["error"]);
    // Answering a cancelled call is harmless.
    held?.({ code: status.CANCELLED });
  });
});
