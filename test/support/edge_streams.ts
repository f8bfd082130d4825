// A GrpcEdge on a loopback port whose HTTP/2 streams a test can see: the
// release tests check what a closed stream still holds. The edge creates
// grpc-js's http2 server through http2.createServer, so that is wrapped while
// the edge starts; streams are taken from each session, before the direct
// Reserve path (which wraps the server's emit) can take them off the server.

import http2 from "node:http2";
import pino from "pino";
import { type Server, ServerCredentials } from "@grpc/grpc-js";
import { loadConfig } from "../../src/config";
import type { DirectReserve } from "../../src/grpc/direct_reserve";
import { GrpcEdge } from "../../src/grpc/edge";

/** How long pollUntil waits for what a closed stream should have let go. */
export const POLL_DEADLINE_MS = 5_000;

type CreateServer = (...args: unknown[]) => http2.Http2Server;

/** The edge's default config: the test builds grpc-js's Server options from it, and the edge runs with it. */
export function edgeTestConfig(): ReturnType<typeof loadConfig>["grpcEdge"] {
  return loadConfig({}).grpcEdge;
}

export async function startEdgeSeeingStreams(
  server: Server,
  onStream: (stream: http2.ServerHttp2Stream) => void,
  direct?: DirectReserve,
): Promise<{ readonly edge: GrpcEdge; readonly address: string }> {
  const mutable = http2 as unknown as { createServer: CreateServer };
  const originalCreateServer = mutable.createServer;
  mutable.createServer = (...args: unknown[]): http2.Http2Server => {
    const created = originalCreateServer(...args);
    created.on("session", (session: http2.ServerHttp2Session) => session.on("stream", onStream));
    return created;
  };
  const edge = new GrpcEdge({ config: edgeTestConfig(), logger: pino({ level: "silent" }) });
  try {
    const address = await edge.start(server, ServerCredentials.createInsecure(), "127.0.0.1:0", direct);
    return { edge, address };
  } finally {
    mutable.createServer = originalCreateServer;
  }
}

export async function pollUntil(what: string, check: () => boolean): Promise<void> {
  const giveUpAt = Date.now() + POLL_DEADLINE_MS;
  while (!check()) {
    if (Date.now() > giveUpAt) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
