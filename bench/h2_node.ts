// The load generator's session over node:http2, kept next to the raw client
// (h2_raw.ts) so the two can be compared on the same machine: node:http2's
// client spends about as much CPU per call as the grpc-js echo server, so it
// saturates its core first and is not the default.

import * as http2 from "node:http2";
import type { CallSink, ExtraHeader, LoadSession, SessionFatal } from "./load_session";

const CONNECT_TIMEOUT_MS = 5_000;
/** Per-stream window we grant the server; larger than any response, so responses never wait for WINDOW_UPDATE. */
const STREAM_WINDOW_BYTES = 1 << 20;

function headerNumber(value: string | string[] | number | undefined): number {
  if (value === undefined) return -1;
  const text = Array.isArray(value) ? value[0] : value;
  const parsed = Number(text);
  return Number.isInteger(parsed) ? parsed : -1;
}

/** Stream listeners bound once per sink (a lane has one stream at a time), not per request. */
class SinkListeners {
  error: string | null = null;
  readonly onResponse: (headers: http2.IncomingHttpHeaders) => void;
  readonly onTrailers: (trailers: http2.IncomingHttpHeaders) => void;
  readonly onData: () => void;
  readonly onError: (error: NodeJS.ErrnoException) => void;
  readonly onClose: () => void;

  constructor(sink: CallSink) {
    this.onResponse = (headers) => {
      sink.httpStatus = headerNumber(headers[":status"]);
      // Trailers-Only responses (errors) carry grpc-status in the headers.
      const status = headerNumber(headers["grpc-status"]);
      if (status >= 0) sink.grpcStatus = status;
      const message = headers["grpc-message"];
      if (typeof message === "string") sink.grpcMessage = message;
    };
    this.onTrailers = (trailers) => {
      const status = headerNumber(trailers["grpc-status"]);
      if (status >= 0) sink.grpcStatus = status;
      const message = trailers["grpc-message"];
      if (typeof message === "string") sink.grpcMessage = message;
    };
    // The body is not decoded; it must still be read, or flow control stalls the stream.
    this.onData = () => {};
    this.onError = (error) => {
      this.error = error.code ?? error.message;
    };
    this.onClose = () => {
      const error = this.error;
      this.error = null;
      sink.onCallEnd(error);
    };
  }
}

export class NodeH2Session implements LoadSession {
  private readonly listeners = new Map<CallSink, SinkListeners>();
  private readonly headers: http2.OutgoingHttpHeaders;
  private dead = false;

  private constructor(
    private readonly session: http2.ClientHttp2Session,
    path: string,
    extraHeaders: readonly ExtraHeader[],
  ) {
    this.headers = { ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...Object.fromEntries(extraHeaders) };
  }

  static async connect(host: string, port: number, path: string, fatal: SessionFatal, extraHeaders: readonly ExtraHeader[] = []): Promise<NodeH2Session> {
    const authority = `http://${host}:${port}`;
    const session = http2.connect(authority, { settings: { initialWindowSize: STREAM_WINDOW_BYTES, enablePush: false } });
    const wrapper = new NodeH2Session(session, path, extraHeaders);
    const die = (message: string): void => {
      if (wrapper.dead) return;
      wrapper.dead = true;
      fatal(message);
    };
    session.on("error", (error: Error) => die(`session error: ${error.message}`));
    session.on("goaway", (code: number) => die(`server sent GOAWAY (code ${code})`));
    session.on("close", () => die("session closed by the server"));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        session.destroy();
        reject(new Error(`connect to ${authority} timed out`));
      }, CONNECT_TIMEOUT_MS);
      session.once("connect", () => {
        clearTimeout(timer);
        resolve();
      });
      session.once("error", (error: Error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
    return wrapper;
  }

  request(body: Buffer, sink: CallSink): void {
    let listeners = this.listeners.get(sink);
    if (listeners === undefined) {
      listeners = new SinkListeners(sink);
      this.listeners.set(sink, listeners);
    }
    const stream = this.session.request(this.headers, { endStream: false });
    stream.on("response", listeners.onResponse);
    stream.on("trailers", listeners.onTrailers);
    stream.on("data", listeners.onData);
    stream.on("error", listeners.onError);
    stream.on("close", listeners.onClose);
    stream.end(body);
  }

  destroy(): void {
    this.dead = true;
    this.session.destroy();
  }
}
