// The node's two adjustments of nats.js (src/cluster/nats_writes.ts,
// src/cluster/nats_requests.ts), against a real nats-server: what one
// event-loop turn queues leaves in one socket write, every message still
// arrives in order, the client's pending limit still writes at once, and
// requests that are answered no longer build a discarded NatsError while
// requests that are not still fail as before.

import { expect } from "chai";
import { connect, ErrorCode, NatsError, type NatsConnection, StringCodec } from "nats";
import { skipCancelErrorOnAnswer } from "../../src/cluster/nats_requests";
import { writeOncePerTurn } from "../../src/cluster/nats_writes";
import { type NatsProcess, startNats } from "../support/engines";

const sc = StringCodec();

/** Counts the writes to the connection's socket (nats.js's node transport: protocol.transport.socket). */
function countSocketWrites(nc: NatsConnection): { readonly count: () => number } {
  const socket = (nc as unknown as { protocol: { transport: { socket: { write: (...args: unknown[]) => boolean } } } }).protocol.transport.socket;
  const write = socket.write.bind(socket);
  let writes = 0;
  socket.write = (...args: unknown[]) => {
    writes++;
    return write(...args);
  };
  return { count: () => writes };
}

/** Publishes n messages, each from its own microtask checkpoint of one turn (as a node's promise continuations do). */
async function publishFromSeparateCheckpoints(nc: NatsConnection, subject: string, n: number): Promise<void> {
  let chain = Promise.resolve();
  for (let i = 0; i < n; i++) {
    chain = chain.then(async () => {
      nc.publish(subject, sc.encode(String(i)));
      // A macrotask-free await: the next publish runs after a microtask checkpoint.
      await new Promise<void>((resolve) => queueMicrotask(resolve));
    });
  }
  await chain;
}

describe("nats.js adjustments of a cluster node (integration, real nats-server)", function () {
  this.timeout(60_000);
  let nats: NatsProcess;
  const connections: NatsConnection[] = [];

  async function client(): Promise<NatsConnection> {
    const c = await connect({ servers: nats.url, noAsyncTraces: true });
    connections.push(c);
    return c;
  }

  before(async () => {
    nats = await startNats();
  });

  after(async () => {
    for (const c of connections) await c.close().catch(() => undefined);
    await nats?.stop();
  });

  async function receive(subject: string): Promise<{ got: string[]; reader: NatsConnection }> {
    const reader = await client();
    const got: string[] = [];
    reader.subscribe(subject, { callback: (error, m) => error === null && got.push(sc.decode(m.data)) });
    await reader.flush();
    return { got, reader };
  }

  it("writes 40 publishes queued from 40 microtask checkpoints of one turn in one socket write, all delivered in order", async () => {
    const writer = await client();
    expect(writeOncePerTurn(writer)).to.equal(true);
    const { got, reader } = await receive("turn.batched");
    const writes = countSocketWrites(writer);
    await publishFromSeparateCheckpoints(writer, "turn.batched", 40);
    await writer.flush();
    await reader.flush();
    expect(got).to.deep.equal(Array.from({ length: 40 }, (_, i) => String(i)));
    // The 40 publishes and flush()'s PING, all queued in this turn.
    expect(writes.count()).to.equal(1);
  });

  it("the unadjusted client writes the same 40 publishes at least once per checkpoint (what the adjustment removes)", async () => {
    const writer = await client();
    const { got, reader } = await receive("turn.unbatched");
    const writes = countSocketWrites(writer);
    await publishFromSeparateCheckpoints(writer, "turn.unbatched", 40);
    await writer.flush();
    await reader.flush();
    expect(got).to.have.length(40);
    expect(writes.count()).to.be.at.least(40);
  });

  it("still writes at once, within the turn, when the client's pending limit is reached", async () => {
    const writer = await client();
    writeOncePerTurn(writer);
    const { got, reader } = await receive("turn.big");
    const writes = countSocketWrites(writer);
    const limit = (writer as unknown as { protocol: { pendingLimit: number } }).protocol.pendingLimit;
    const body = new Uint8Array(1024);
    const n = Math.ceil((2 * limit) / body.length) + 1;
    for (let i = 0; i < n; i++) writer.publish("turn.big", body);
    // Synchronously, before any microtask or setImmediate: the buffer was written when it filled.
    expect(writes.count()).to.be.at.least(1);
    await writer.flush();
    await reader.flush();
    expect(got).to.have.length(n);
  });

  it("answers a request without building the Cancelled NatsError, and an unanswered one still fails", async () => {
    const writer = await client();
    writeOncePerTurn(writer);
    expect(skipCancelErrorOnAnswer()).to.equal(true);
    expect(skipCancelErrorOnAnswer()).to.equal(true);
    const responder = await client();
    responder.subscribe("svc.echo", { callback: (error, m) => error === null && m.respond(m.data) });
    await responder.flush();

    const original = NatsError.errorForCode;
    const built: string[] = [];
    NatsError.errorForCode = (code: string, chainedError?: Error) => {
      built.push(code);
      return original(code, chainedError);
    };
    try {
      const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => writer.request("svc.echo", sc.encode(`q${i}`), { timeout: 5_000 })));
      expect(replies.map((m) => sc.decode(m.data))).to.deep.equal(Array.from({ length: 20 }, (_, i) => `q${i}`));
      expect(built).to.deep.equal([]);

      const noResponders = await writer.request("svc.nobody", sc.encode("x"), { timeout: 5_000 }).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(noResponders).to.be.instanceOf(NatsError);
      expect((noResponders as NatsError).code).to.equal(ErrorCode.NoResponders);

      responder.subscribe("svc.silent", { callback: () => undefined });
      await responder.flush();
      const timedOut = await writer.request("svc.silent", sc.encode("x"), { timeout: 200 }).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(timedOut).to.be.instanceOf(NatsError);
      expect((timedOut as NatsError).code).to.equal(ErrorCode.Timeout);
    } finally {
      NatsError.errorForCode = original;
    }
  });
});
