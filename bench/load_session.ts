// What the load generator needs from an HTTP/2 connection, so that the raw
// framing client (h2_raw.ts) and the node:http2 one (h2_node.ts) are
// interchangeable and can be measured against each other.

/** Loopback only: a benchmark must never load anything but the machine it runs on. */
export const LOOPBACK_HOST = "127.0.0.1";

/** One unary call's outcome, filled in by the session; -1 means "not seen". */
export interface CallSink {
  httpStatus: number;
  grpcStatus: number;
  /** grpc-message as sent (percent-encoded); "" when absent. */
  grpcMessage: string;
  /** The stream ended: normally (error null) or by reset or stream error. Called exactly once per request. */
  onCallEnd(error: string | null): void;
}

export interface LoadSession {
  /** Sends one gRPC-framed request body on a new stream; throws if the session is no longer usable. */
  request(body: Buffer, sink: CallSink): void;
  /** Idempotent; in-flight calls are abandoned without callbacks. */
  destroy(): void;
}

/** Reported at most once per session, when it can no longer carry requests. */
/** A request header every call of a session carries (name in lower case), e.g. an authorization token. */
export type ExtraHeader = readonly [string, string];

export type SessionFatal = (message: string) => void;

export type TransportName = "raw" | "node-http2";

export const TRANSPORTS: readonly TransportName[] = ["raw", "node-http2"];
