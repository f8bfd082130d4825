// The race the engine harness retries: a port freePort() found free is taken by
// someone else before the engine binds it. Made to happen on purpose: the
// injected port picker hands out a port this test holds first, then free ones.

import { createServer, type Socket } from "node:net";
import { expect } from "chai";
import { Etcd3 } from "etcd3";
import { Redis } from "ioredis";
import { connect } from "nats";
import { ENGINE_PORT_CONFLICT_ATTEMPTS, type EngineProcess, type PortPicker, startEtcd, startNats } from "../support/engines";
import { startRedis } from "../support/redis";
import { freePort } from "../support/server_process";

/**
 * Listens on a free loopback port, as another process that took it would: it
 * accepts connections and never answers, so an engine's readiness probe that
 * reached it would hang.
 */
async function holdPort(): Promise<{ port: number; release: () => Promise<void> }> {
  const server = createServer();
  const sockets = new Set<Socket>();
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const address = server.address();
  if (typeof address !== "object" || address === null) throw new Error("no port held");
  const release = (): Promise<void> => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    return closed;
  };
  return { port: address.port, release };
}

/** Hands out `taken` the first `times` times, then free ports; records every port it gave. */
function racingPicker(taken: number, times: number): { pick: PortPicker; given: number[] } {
  const given: number[] = [];
  let left = times;
  return {
    given,
    pick: async () => {
      const port = left > 0 ? taken : await freePort();
      left -= 1;
      given.push(port);
      return port;
    },
  };
}

describe("engine harness: a port taken between freePort() and the engine's bind", function () {
  this.timeout(120_000);
  let held: { port: number; release: () => Promise<void> };
  const engines: EngineProcess[] = [];

  beforeEach(async () => {
    held = await holdPort();
  });

  afterEach(async () => {
    for (const engine of engines.splice(0)) await engine.stop();
    await held.release();
  });

  it("starts redis-server on a fresh port after its first one turned out taken", async () => {
    const picker = racingPicker(held.port, 1);
    const redis = await startRedis({ pickPort: picker.pick });
    engines.push(redis);
    // One port per attempt: the taken one, then the one it runs on.
    expect(picker.given).to.have.length(2);
    expect(picker.given[0]).to.equal(held.port);
    expect(redis.port).to.equal(picker.given[1]).and.not.equal(held.port);
    const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    try {
      await client.connect();
      expect(await client.ping()).to.equal("PONG");
    } finally {
      client.disconnect();
    }
  });

  it("starts etcd on fresh ports after its client port turned out taken", async () => {
    const picker = racingPicker(held.port, 1);
    const etcd = await startEtcd({ pickPort: picker.pick });
    engines.push(etcd);
    // Two ports per attempt (client, peer): the first attempt's client port was the taken one.
    expect(picker.given).to.have.length(4);
    expect(picker.given[0]).to.equal(held.port);
    expect([etcd.clientPort, etcd.peerPort]).to.deep.equal(picker.given.slice(2));
    const client = new Etcd3({ hosts: etcd.endpoint });
    try {
      await client.put("race").value("won");
      expect(await client.get("race").string()).to.equal("won");
    } finally {
      client.close();
    }
  });

  it("starts nats-server on fresh ports after its monitoring port turned out taken", async () => {
    // The first pick is the client port (free), the second the monitoring port (taken).
    const free = await freePort();
    let calls = 0;
    const given: number[] = [];
    const pick: PortPicker = async () => {
      calls += 1;
      const port = calls === 1 ? free : calls === 2 ? held.port : await freePort();
      given.push(port);
      return port;
    };
    const nats = await startNats({ pickPort: pick });
    engines.push(nats);
    expect(given).to.have.length(4);
    expect(given.slice(0, 2)).to.deep.equal([free, held.port]);
    expect([nats.port, nats.monitorPort]).to.deep.equal(given.slice(2));
    const connection = await connect({ servers: nats.url });
    try {
      expect(connection.isClosed()).to.equal(false);
    } finally {
      await connection.close();
    }
  });

  it(`gives up after ${ENGINE_PORT_CONFLICT_ATTEMPTS} attempts when every port it picks is taken, with the engine's own words`, async () => {
    const picker = racingPicker(held.port, Number.MAX_SAFE_INTEGER);
    const failure = await startRedis({ pickPort: picker.pick }).then(
      (redis) => {
        engines.push(redis);
        return undefined;
      },
      (error: unknown) => error,
    );
    expect(failure).to.be.instanceOf(Error);
    expect((failure as Error).message).to.match(/address already in use/i);
    expect(picker.given).to.deep.equal(Array.from({ length: ENGINE_PORT_CONFLICT_ATTEMPTS }, () => held.port));
  });

  it("does not retry a port the caller chose: the conflict is the caller's to see", async () => {
    const picker = racingPicker(held.port, 0);
    const failure = await startRedis({ port: held.port, pickPort: picker.pick }).then(
      (redis) => {
        engines.push(redis);
        return undefined;
      },
      (error: unknown) => error,
    );
    expect((failure as Error).message).to.match(/address already in use/i);
    expect(picker.given, "no port picked").to.deep.equal([]);
  });
});
