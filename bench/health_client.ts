// grpc.health.v1.Health/Check, the readiness contract of every server the
// benchmark starts (ours and the echo baseline). The two messages are tiny, so
// they are coded by hand rather than loading health.proto at runtime.

import { Client, credentials, type ServiceError } from "@grpc/grpc-js";
import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";

const HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check";
/** grpc.health.v1.HealthCheckResponse.ServingStatus.SERVING */
const SERVING = 1;
const CHECK_DEADLINE_MS = 1_000;
/** Between polls: short enough not to add to start-up time noticeably, long enough not to load a starting server. */
const POLL_INTERVAL_MS = 100;
/**
 * grpc-js backs off between refused connections (1 s, then ×1.6 with jitter),
 * so a poll that starts before the server listens would otherwise find it
 * SERVING only seconds after it is: every driver that times spawn→SERVING
 * (run.ts, compare.ts, growth.ts) polls through this one helper with the
 * backoff held at the poll interval.
 */
const RECONNECT_BACKOFF_MS = POLL_INTERVAL_MS;

function encodeRequest(service: string): Buffer {
  const writer = new BinaryWriter();
  if (service !== "") writer.uint32(10).string(service);
  return Buffer.from(writer.finish());
}

function decodeStatus(bytes: Buffer): number {
  const reader = new BinaryReader(bytes);
  let status = 0;
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 === 1 && (tag & 7) === 0) status = reader.int32();
    else reader.skip(tag & 7);
  }
  return status;
}

function checkOnce(client: Client): Promise<number> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      HEALTH_CHECK_PATH,
      (service: string) => encodeRequest(service),
      decodeStatus,
      "",
      { deadline: Date.now() + CHECK_DEADLINE_MS },
      (error: ServiceError | null, status?: number) => {
        if (error !== null) reject(error);
        else resolve(status ?? 0);
      },
    );
  });
}

/**
 * Polls until the server at `address` reports SERVING for service "".
 * Throws at `deadlineMs`, or as soon as `stillRunning()` turns false (a crashed
 * server must not make the driver wait out the whole deadline).
 */
export async function waitUntilServing(address: string, deadlineMs: number, stillRunning: () => boolean): Promise<void> {
  const client = new Client(address, credentials.createInsecure(), {
    "grpc.initial_reconnect_backoff_ms": RECONNECT_BACKOFF_MS,
    "grpc.max_reconnect_backoff_ms": RECONNECT_BACKOFF_MS,
  });
  const giveUpAt = Date.now() + deadlineMs;
  let lastProblem = "no answer yet";
  try {
    while (Date.now() < giveUpAt) {
      if (!stillRunning()) throw new Error(`server exited before it was SERVING (${lastProblem})`);
      try {
        const status = await checkOnce(client);
        if (status === SERVING) return;
        lastProblem = `health status ${status}`;
      } catch (error) {
        lastProblem = error instanceof Error ? error.message : String(error);
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
    }
    throw new Error(`server at ${address} not SERVING after ${deadlineMs} ms (${lastProblem})`);
  } finally {
    client.close();
  }
}
