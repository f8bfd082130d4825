// One socket write per event-loop turn on the node's NATS connection.
//
// nats.js 2.29 writes its outbound buffer at the first microtask checkpoint
// after a command is queued. A cluster node queues its commands (JetStream
// publishes, direct gets, forwarded asks and their replies) from many
// separate promise continuations of one turn, so it wrote to the socket
// many times per turn: under checkouts the kernel write (`writeBuffer`) was
// 14% of a node's busy samples, the largest single cost (bench/README,
// cluster section). Deferring the write to the turn's setImmediate lets
// everything queued in the turn leave in one write, on the same principle as
// the journal's publish pump. Nothing is acknowledged earlier or differently:
// a write only goes out later, at the turn's check phase. Measured: CPU per
// checkout over the cluster's five processes x0.93 (4 alternating rounds).
//
// This reaches into the client's protocol handler (not part of its typed
// API), so it checks the shape it relies on and leaves the connection as it
// is when that shape is missing (another nats.js version): a cost, not a
// correctness, matter. The client's own bound stays: once its outbound buffer
// reaches its pending limit, it is written at once, as before.

import type { NatsConnection } from "nats";

interface ProtocolWrites {
  flushPending(): void;
  readonly outbound: { size(): number };
  readonly pendingLimit: number;
}

function protocolOf(nc: NatsConnection): ProtocolWrites | undefined {
  const protocol: unknown = (nc as NatsConnection & { protocol?: unknown }).protocol;
  if (typeof protocol !== "object" || protocol === null) return undefined;
  const p = protocol as Partial<Record<keyof ProtocolWrites, unknown>>;
  const outbound = p.outbound as { size?: unknown } | undefined;
  if (typeof p.flushPending !== "function" || typeof p.pendingLimit !== "number" || typeof outbound?.size !== "function") return undefined;
  return protocol as ProtocolWrites;
}

/** Makes `nc` write what it queued once per event-loop turn; false (and nothing changed) when this nats.js lacks the expected internals. */
export function writeOncePerTurn(nc: NatsConnection): boolean {
  const protocol = protocolOf(nc);
  if (protocol === undefined) return false;
  const flushNow = protocol.flushPending.bind(protocol);
  let scheduled = false;
  protocol.flushPending = () => {
    // The client's memory bound: a full buffer is written at once.
    if (protocol.outbound.size() >= protocol.pendingLimit) {
      flushNow();
      return;
    }
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      flushNow();
    });
  };
  return true;
}
