// The direct Reserve path: Reserve calls taken off grpc-js's http2 server
// before grpc-js sees their streams, read and answered on the raw http2
// stream. grpc-js's per-call machinery (its call object and interceptor chain,
// metadata conversion, the stream decoder, its listeners and respond
// bookkeeping) was about a third of a hot reservation's server CPU
// (bench/README.md, "Hot SKU, stop 10"). Everything a call means is shared
// with grpc-js's path: the gate, readiness, the handler, status mapping and
// metrics (serveUnary in unary.ts), the server span (inServerSpan). What is
// rebuilt here is only the wire: gRPC's framing, grpc-timeout, and the
// headers and trailers grpc-js answers with, byte for byte
// (test/integration/direct_reserve.test.ts sends the same calls both ways).
// A request this path does not fully handle (another content-type, a
// grpc-encoding but identity, an unreadable grpc-timeout) is left to grpc-js,
// so that its answer stays grpc-js's own.

import http2 from "node:http2";
import { TLSSocket } from "node:tls";
import { Metadata, type Server, status as GrpcStatus } from "@grpc/grpc-js";
import type { ReserveRequest, Reservation } from "../gen/quartermaster/v1/inventory";
import { GRPC_MESSAGE_BYTES_MAX } from "../limits";
import { inServerSpan, type ServerSpanNames, serverSpanNames } from "../observability/grpc_tracing";
import { tracingOn } from "../observability/tracing";
import type { AuthContext } from "../security/call_gate";
import { inventoryServiceDefinition } from "./attribute_map";
import { type Handler, serveUnary, type UnaryCall, type UnaryDeps, type UnaryError, withSafeDecoding } from "./unary";

export const RESERVE_PATH = "/quartermaster.v1.InventoryService/Reserve";
const RESERVE_METHOD = "Reserve";
const FRAME_HEADER_BYTES = 5;
/** grpc-js's own reading of grpc-timeout (server-interceptors.js), unanchored as there. */
const DEADLINE_REGEX = /(\d{1,8})\s*([HMSmun])/;
const DEADLINE_UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
/** Headers grpc-js strips from the metadata a handler (and the gate) sees. */
const NOT_METADATA = ["grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "accept-encoding", "te", "content-type"];

const decodeRequest = withSafeDecoding({ reserve: { path: RESERVE_PATH, requestDeserialize: inventoryServiceDefinition.reserve.requestDeserialize } }).reserve.requestDeserialize;
const encodeReply = inventoryServiceDefinition.reserve.responseSerialize;
const { NGHTTP2_INTERNAL_ERROR } = http2.constants;

// What every OK answer sends, built once: respond() and sendTrailers() copy what they are given
// (processHeaders, ObjectAssign in node's lib/internal/http2/core.js), so one frozen object serves
// every call, as grpc-js's own answer would have it.
const OK_HEADERS: http2.OutgoingHttpHeaders = Object.freeze({
  ":status": 200,
  "content-type": "application/grpc+proto",
  "grpc-accept-encoding": "identity,deflate,gzip",
  "grpc-encoding": "identity",
});
const OK_RESPOND_OPTIONS: http2.ServerStreamResponseOptions = Object.freeze({ waitForTrailers: true });
const OK_TRAILERS: http2.OutgoingHttpHeaders = Object.freeze({ "grpc-status": GrpcStatus.OK, "grpc-message": "OK" });

/** The call a taken stream serves, read by the shared listeners below. */
const CALL = Symbol("DirectCall");
type CallStream = http2.ServerHttp2Stream & { [CALL]?: DirectCall | undefined };

/** Http2Server.emit, which the direct path wraps to see a stream before grpc-js's listener does. */
type Emit = (event: string | symbol, ...args: unknown[]) => boolean;

/** grpc-js's private hook that counts a stream for its connection idle timeout (grpc.max_connection_idle_ms). */
type StreamOpened = (stream: http2.ServerHttp2Stream) => void;

export class DirectReserve {
  private readonly names: ServerSpanNames = serverSpanNames(RESERVE_PATH);

  constructor(
    readonly deps: UnaryDeps,
    readonly handler: Handler<ReserveRequest, Reservation>,
  ) {}

  /**
   * Takes Reserve streams off `http2Server` before grpc-js's 'stream' listener sees them. grpc-js
   * counts every stream for its idle timeout through a private method; a grpc-js without it gets
   * no direct path (returns false) rather than connections closed as idle while they serve calls.
   */
  install(http2Server: http2.Http2Server, grpcServer: Server): boolean {
    const opened = (grpcServer as unknown as { onStreamOpened?: unknown }).onStreamOpened;
    if (typeof opened !== "function") return false;
    const streamOpened = (opened as StreamOpened).bind(grpcServer);
    const emit = http2Server.emit.bind(http2Server) as Emit;
    const wrapped: Emit = (event, ...args) => {
      if (event === "stream" && this.take(args[0] as http2.ServerHttp2Stream, args[1] as http2.IncomingHttpHeaders, streamOpened)) return true;
      return emit(event, ...args);
    };
    (http2Server as unknown as { emit: Emit }).emit = wrapped;
    return true;
  }

  private take(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, streamOpened: StreamOpened): boolean {
    if (headers[":path"] !== RESERVE_PATH) return false;
    const contentType = headers["content-type"];
    if (contentType !== "application/grpc" && contentType !== "application/grpc+proto") return false;
    const encoding = headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    const timeout = headers["grpc-timeout"];
    let timeoutMs: number | undefined;
    if (timeout !== undefined) {
      const match = typeof timeout === "string" ? DEADLINE_REGEX.exec(timeout) : null;
      if (match === null) return false;
      timeoutMs = (Number(match[1]) * (DEADLINE_UNIT_MS[match[2] as string] as number)) | 0;
    }
    streamOpened(stream);
    new DirectCall(this, stream, headers, timeoutMs).start();
    return true;
  }

  /** Runs the call through the shared path, in a server span when tracing is on. */
  serve(call: DirectCall): void {
    if (!tracingOn()) {
      serveUnary(this.deps, RESERVE_METHOD, this.handler, call, (error, response) => call.answer(error, response));
      return;
    }
    inServerSpan(this.names, call.header("traceparent"), call.header("tracestate"), (end) =>
      serveUnary(this.deps, RESERVE_METHOD, this.handler, call, (error, response) => {
        end(error);
        call.answer(error, response);
      }),
    );
  }
}

/**
 * One Reserve call on its stream; it is also what the gate reads (UnaryCall), so a call costs one
 * object of ours. Reads exactly as grpc-js's stream decoder does: a message over
 * GRPC_MESSAGE_BYTES_MAX fails as soon as its length is read, and the compressed flag under the
 * identity encoding is read past, as grpc-js does.
 */
class DirectCall implements UnaryCall {
  readonly path = RESERVE_PATH;
  request: unknown = undefined;
  readonly deadlineMs: number | undefined;
  private metadataMemo: Metadata | undefined;
  private body: Buffer | undefined;
  /** Where the next message's frame starts in body, and how many messages were read. */
  private scanned = 0;
  private messages = 0;
  private firstMessage: Buffer | undefined;
  /** An answer was sent, or is no longer wanted: what comes later is dropped. */
  private done = false;
  private deadlineTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly owner: DirectReserve,
    private readonly stream: http2.ServerHttp2Stream,
    private readonly headers: http2.IncomingHttpHeaders,
    private readonly timeoutMs: number | undefined,
  ) {
    this.deadlineMs = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
  }

  /**
   * The stream's listeners are shared functions that find this call on the stream, and are added
   * with on(), not once(): each event comes once anyway, and once() costs a wrapper, a bound function
   * and a removeListener per event. Per call that was three closures and three wrappers, every one
   * also announced through the stream's 'newListener' and 'removeListener' listeners.
   */
  start(): void {
    const stream = this.stream as CallStream;
    stream[CALL] = this;
    // As grpc-js: an error always comes with a close, which is what ends the call.
    stream.on("error", ignoreError);
    stream.on("close", onCallClose);
    stream.on("data", onCallData);
    stream.on("end", onCallEnd);
    if (this.timeoutMs !== undefined) this.deadlineTimer = setTimeout(onCallDeadline, this.timeoutMs, this);
  }

  get metadata(): Metadata {
    if (this.metadataMemo === undefined) {
      const metadata = Metadata.fromHttp2Headers(this.headers);
      for (const name of NOT_METADATA) metadata.remove(name);
      this.metadataMemo = metadata;
    }
    return this.metadataMemo;
  }

  /** grpc-js's getAuthContext: the verified peer certificate of a TLS connection. */
  authContext(): AuthContext {
    const socket = this.stream.session?.socket;
    if (!(socket instanceof TLSSocket) || !socket.authorized) return {};
    const peerCertificate = socket.getPeerCertificate();
    return { transportSecurityType: "ssl", sslPeerCertificate: peerCertificate.raw ? peerCertificate : undefined };
  }

  /** A header's first value, as Metadata.get(name)[0] gives it. */
  header(name: string): string | undefined {
    const value = this.headers[name];
    return Array.isArray(value) ? value[0] : value;
  }

  /** @internal A chunk of the request body (onCallData). */
  onData(chunk: Buffer): void {
    if (this.done) return;
    this.body = this.body === undefined ? chunk : Buffer.concat([this.body, chunk]);
    const body = this.body;
    while (body.length - this.scanned >= FRAME_HEADER_BYTES) {
      const size = body.readUInt32BE(this.scanned + 1);
      if (size > GRPC_MESSAGE_BYTES_MAX) {
        this.fail(GrpcStatus.RESOURCE_EXHAUSTED, `Received message larger than max (${size} vs ${GRPC_MESSAGE_BYTES_MAX})`);
        return;
      }
      const end = this.scanned + FRAME_HEADER_BYTES + size;
      if (end > body.length) return;
      if (++this.messages > 1) {
        // grpc-js would run the handler on the first message and drop its answer; nothing is run here.
        this.fail(GrpcStatus.UNIMPLEMENTED, `Received a second request message for server streaming method ${RESERVE_PATH}`);
        return;
      }
      this.firstMessage = body.subarray(this.scanned + FRAME_HEADER_BYTES, end);
      this.scanned = end;
    }
  }

  /** @internal The request body ended (onCallEnd). */
  onEnd(): void {
    if (this.done) return;
    const message = this.firstMessage;
    if (message === undefined) {
      this.fail(GrpcStatus.UNIMPLEMENTED, `Received no request message for server streaming method ${RESERVE_PATH}`);
      return;
    }
    this.body = undefined;
    this.firstMessage = undefined;
    this.request = decodeRequest(message);
    this.owner.serve(this);
  }

  /** @internal The stream closed (onCallClose). */
  onClose(): void {
    // The client reset the stream or the session went: the handler's answer, if it comes, is dropped.
    // The closed stream no longer leads to the call (the edge cuts the rest: releaseClosedStream).
    (this.stream as CallStream)[CALL] = undefined;
    this.done = true;
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
  }

  /** The shared path's answer; dropped when the deadline already answered or the stream is gone. */
  answer(error: UnaryError | null, response?: Reservation): void {
    if (this.done) return;
    if (error !== null) {
      this.sendStatus(error.code ?? GrpcStatus.UNKNOWN, error.details ?? "Unknown Error", error.metadata);
      return;
    }
    let message: Buffer;
    try {
      message = encodeReply(response as Reservation);
    } catch {
      this.sendStatus(GrpcStatus.INTERNAL, "Error serializing response", undefined);
      return;
    }
    if (message.length > GRPC_MESSAGE_BYTES_MAX) {
      this.sendStatus(GrpcStatus.RESOURCE_EXHAUSTED, `Sent message larger than max (${message.length + FRAME_HEADER_BYTES} vs. ${GRPC_MESSAGE_BYTES_MAX})`, undefined);
      return;
    }
    this.finish();
    const stream = this.stream;
    if (stream.closed || stream.destroyed) return;
    const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + message.length);
    frame[0] = 0;
    frame.writeUInt32BE(message.length, 1);
    message.copy(frame, FRAME_HEADER_BYTES);
    try {
      stream.respond(OK_HEADERS, OK_RESPOND_OPTIONS);
      // on(), not once(): 'wantTrailers' comes once per stream (see start).
      stream.on("wantTrailers", sendOkTrailers);
      // With a callback, as grpc-js writes, so that the edge counts the queued bytes (edge.ts countedWrite).
      stream.write(frame, ignoreError);
      stream.end();
    } catch (error) {
      this.broken(error);
    }
  }

  /**
   * A stream that refused our answer (a state http2 did not show through closed or destroyed): reset,
   * so that the client is not left waiting, and never thrown into the promise chain that answered.
   */
  private broken(error: unknown): void {
    this.owner.deps.logger.warn({ err: error }, "direct Reserve path could not answer on its stream: reset");
    if (!this.stream.destroyed) this.stream.close(NGHTTP2_INTERNAL_ERROR);
  }

  /** @internal Also the deadline's answer (onCallDeadline). */
  fail(code: GrpcStatus, details: string): void {
    this.sendStatus(code, details, undefined);
  }

  /** grpc-js's trailers-only answer: the status in the response headers, which end the stream. */
  private sendStatus(code: GrpcStatus, details: string, metadata: Metadata | undefined): void {
    if (this.done) return;
    this.finish();
    const stream = this.stream;
    if (stream.closed || stream.destroyed) return;
    try {
      stream.respond(
        {
          "grpc-status": code,
          "grpc-message": encodeURI(details),
          ":status": 200,
          "content-type": "application/grpc+proto",
          ...metadata?.toHttp2Headers(),
        },
        { endStream: true },
      );
    } catch (error) {
      this.broken(error);
      return;
    }
    // As grpc-js after its status: whatever the client still sends is read and dropped.
    stream.resume();
  }

  private finish(): void {
    this.done = true;
    this.body = undefined;
    this.firstMessage = undefined;
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
  }
}

function sendOkTrailers(this: http2.ServerHttp2Stream): void {
  this.sendTrailers(OK_TRAILERS);
}

function onCallData(this: CallStream, chunk: Buffer): void {
  this[CALL]?.onData(chunk);
}

function onCallEnd(this: CallStream): void {
  this[CALL]?.onEnd();
}

function onCallClose(this: CallStream): void {
  this[CALL]?.onClose();
}

function onCallDeadline(call: DirectCall): void {
  call.fail(GrpcStatus.DEADLINE_EXCEEDED, "Deadline exceeded");
}

function ignoreError(): void {}
