// A minimal HTTP/2 client over node:net for unary gRPC load, written because
// node:http2's client costs about 145 us of CPU per call on this machine
// (measured: a bare request/response loop, nothing else), which is as much as
// the grpc-js echo server spends answering it: a node:http2 generator on its
// own core cannot outrun the server it measures.
//
// What makes it cheap: the request header block is HPACK-encoded once per
// connection (static entries and literals only, so it is valid on every
// stream), each request is one buffer holding its HEADERS and DATA frames, all
// requests issued while one socket read is processed leave in one write, and
// responses are parsed frame by frame without building header objects (only
// :status and grpc-status are kept; every block is still HPACK-decoded so the
// server's dynamic table stays in sync).
//
// Deliberately out of scope: server push (disabled in our SETTINGS), request
// bodies larger than one frame, priorities, TLS. Protocol surprises end the
// session through `fatal`, never silently.

import * as net from "node:net";
import {
  type HeaderSink,
  HpackDecoder,
  HpackError,
  type RequestHeaderBlocks,
  STATIC_INDEX_METHOD_POST,
  STATIC_INDEX_SCHEME_HTTP,
  STATIC_NAME_AUTHORITY,
  STATIC_NAME_CONTENT_TYPE,
  STATIC_NAME_PATH,
  encodeRequestHeaderBlocks,
} from "./hpack";
import type { CallSink, ExtraHeader, LoadSession, SessionFatal } from "./load_session";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const FRAME_HEADER_BYTES = 9;

const FRAME_DATA = 0x0;
const FRAME_HEADERS = 0x1;
const FRAME_RST_STREAM = 0x3;
const FRAME_SETTINGS = 0x4;
const FRAME_PUSH_PROMISE = 0x5;
const FRAME_PING = 0x6;
const FRAME_GOAWAY = 0x7;
const FRAME_WINDOW_UPDATE = 0x8;
const FRAME_CONTINUATION = 0x9;

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

const SETTINGS_HEADER_TABLE_SIZE = 0x1;
const SETTINGS_ENABLE_PUSH = 0x2;
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;
const SETTING_ENTRY_BYTES = 6;

/** RFC 9113 defaults, in force until the peer's SETTINGS say otherwise. */
const DEFAULT_WINDOW_BYTES = 65_535;
const DEFAULT_FRAME_BYTES = 16_384;
/** HPACK dynamic table we allow the server to use for response headers (the RFC default). */
const HEADER_TABLE_BYTES = 4_096;
/**
 * Per-stream receive window we grant. A stream carries one response of well
 * under 1 KiB, so it never needs a stream-level WINDOW_UPDATE.
 */
const STREAM_WINDOW_BYTES = 1 << 20;
/** Connection receive window we keep open; replenished once half of it is used. */
const CONNECTION_WINDOW_BYTES = 1 << 30;
const CONNECTION_WINDOW_REPLENISH_BYTES = CONNECTION_WINDOW_BYTES / 2;
/** Client stream ids are odd and must stay below 2^31. */
const STREAM_ID_MAX = 2 ** 31 - 1;
/** Requests waiting for flow-control credit or a stream slot; the generator never has more in flight than its lanes. */
const PENDING_REQUESTS_MAX = 65_536;
/** Header blocks split over CONTINUATION frames are reassembled up to this size. */
const HEADER_BLOCK_BYTES_MAX = 64 * 1024;
const CONNECT_TIMEOUT_MS = 5_000;

interface PendingRequest {
  readonly body: Buffer;
  readonly sink: CallSink;
}

function frameHeader(target: Buffer, offset: number, length: number, type: number, flags: number, streamId: number): void {
  target.writeUIntBE(length, offset, 3);
  target[offset + 3] = type;
  target[offset + 4] = flags;
  target.writeUInt32BE(streamId, offset + 5);
}

function controlFrame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  frameHeader(frame, 0, payload.length, type, flags, streamId);
  payload.copy(frame, FRAME_HEADER_BYTES);
  return frame;
}

function windowUpdate(streamId: number, increment: number): Buffer {
  const payload = Buffer.allocUnsafe(4);
  payload.writeUInt32BE(increment, 0);
  return controlFrame(FRAME_WINDOW_UPDATE, 0, streamId, payload);
}

export class RawH2Session implements LoadSession, HeaderSink {
  private readonly decoder = new HpackDecoder(HEADER_TABLE_BYTES);
  private readonly streams = new Map<number, CallSink>();
  private readonly pending: PendingRequest[] = [];
  /**
   * Bodies larger than one frame (a ReserveBatch of 1000 items is about 58 KB)
   * whose DATA frames go out as the server's connection window allows: it
   * grants credit only as it consumes what it got, so waiting for credit for a
   * whole body before sending any of it could wait for ever.
   */
  private readonly uploads: { readonly streamId: number; readonly body: Buffer; offset: number }[] = [];
  private readonly requestHeaders: RequestHeaderBlocks;
  /** The peer's HPACK table limit (SETTINGS_HEADER_TABLE_SIZE); decides whether we index our request headers. */
  private peerHeaderTableBytes = HEADER_TABLE_BYTES;
  private nextStreamId = 1;
  private out: Buffer[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  private readonly flushBound = (): void => this.flush();
  /** Bytes of a frame split across socket reads. */
  private inbox: Buffer | null = null;
  private connectionSendWindow = DEFAULT_WINDOW_BYTES;
  private peerStreamWindow = DEFAULT_WINDOW_BYTES;
  private peerMaxStreams = Number.POSITIVE_INFINITY;
  private receivedUnacknowledged = 0;
  /** A header block awaiting CONTINUATION frames. */
  private continuation: { streamId: number; endStream: boolean; parts: Buffer[]; bytes: number } | null = null;
  private decodingSink: CallSink | null = null;
  private dead = false;
  private settingsSeen: (() => void) | null = null;

  private constructor(
    private readonly socket: net.Socket,
    authority: string,
    path: string,
    private readonly fatal: SessionFatal,
    extraHeaders: readonly ExtraHeader[],
  ) {
    this.requestHeaders = encodeRequestHeaderBlocks(
      [STATIC_INDEX_METHOD_POST, STATIC_INDEX_SCHEME_HTTP],
      [
        { name: ":path", value: path, nameIndex: STATIC_NAME_PATH },
        { name: ":authority", value: authority, nameIndex: STATIC_NAME_AUTHORITY },
        { name: "content-type", value: "application/grpc", nameIndex: STATIC_NAME_CONTENT_TYPE },
        { name: "te", value: "trailers", nameIndex: 0 },
        ...extraHeaders.map(([name, value]) => ({ name, value, nameIndex: 0 })),
      ],
    );
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (error: Error) => this.die(`socket error: ${error.message}`));
    socket.on("close", () => this.die("connection closed by the server"));
  }

  /** Connects, exchanges SETTINGS, and resolves once the server's SETTINGS have arrived. */
  static async connect(host: string, port: number, path: string, fatal: SessionFatal, extraHeaders: readonly ExtraHeader[] = []): Promise<RawH2Session> {
    const socket = net.connect({ host, port, noDelay: true });
    const session = new RawH2Session(socket, `${host}:${port}`, path, fatal, extraHeaders);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`HTTP/2 connect to ${host}:${port} timed out`));
      }, CONNECT_TIMEOUT_MS);
      const failed = (error: Error): void => {
        clearTimeout(timer);
        reject(error);
      };
      socket.once("error", failed);
      session.settingsSeen = () => {
        clearTimeout(timer);
        socket.off("error", failed);
        resolve();
      };
      socket.once("connect", () => {
        const settings = Buffer.allocUnsafe(3 * SETTING_ENTRY_BYTES);
        settings.writeUInt16BE(SETTINGS_ENABLE_PUSH, 0);
        settings.writeUInt32BE(0, 2);
        settings.writeUInt16BE(SETTINGS_INITIAL_WINDOW_SIZE, 6);
        settings.writeUInt32BE(STREAM_WINDOW_BYTES, 8);
        settings.writeUInt16BE(SETTINGS_HEADER_TABLE_SIZE, 12);
        settings.writeUInt32BE(HEADER_TABLE_BYTES, 14);
        socket.write(
          Buffer.concat([
            PREFACE,
            controlFrame(FRAME_SETTINGS, 0, 0, settings),
            windowUpdate(0, CONNECTION_WINDOW_BYTES - DEFAULT_WINDOW_BYTES),
          ]),
        );
      });
    });
    return session;
  }

  request(body: Buffer, sink: CallSink): void {
    if (this.dead) throw new Error("HTTP/2 session is closed");
    if (this.pending.length > 0 || !this.canSend(body.length)) {
      if (this.pending.length >= PENDING_REQUESTS_MAX) throw new Error("too many requests waiting for flow control");
      this.pending.push({ body, sink });
      return;
    }
    this.send(body, sink);
  }

  destroy(): void {
    this.dead = true;
    this.streams.clear();
    this.pending.length = 0;
    this.uploads.length = 0;
    this.socket.destroy();
  }

  /** HeaderSink: keeps only what the generator reports. */
  header(name: string, value: string): void {
    const sink = this.decodingSink;
    if (sink === null) return;
    if (name === ":status") sink.httpStatus = Number(value);
    else if (name === "grpc-status") sink.grpcStatus = Number(value);
    else if (name === "grpc-message") sink.grpcMessage = value;
  }

  private canSend(bodyBytes: number): boolean {
    if (this.streams.size >= this.peerMaxStreams) return false;
    return bodyBytes > DEFAULT_FRAME_BYTES || (this.uploads.length === 0 && this.connectionSendWindow >= bodyBytes);
  }

  private send(body: Buffer, sink: CallSink): void {
    const streamId = this.nextStreamId;
    if (streamId > STREAM_ID_MAX) {
      this.die("stream ids exhausted on this connection");
      return;
    }
    // Beyond the stream's window a body would wait for stream-level WINDOW_UPDATEs, which this client does not track.
    if (body.length > this.peerStreamWindow) {
      this.die(`request body of ${body.length} bytes exceeds the server's stream window`);
      return;
    }
    this.nextStreamId += 2;
    const headers = this.requestHeaders;
    // Stream 1 indexes the headers in the peer's table; all later streams refer to them.
    const block =
      headers.tableBytes > this.peerHeaderTableBytes ? headers.plain : streamId === 1 ? headers.first : headers.repeat;
    if (body.length > DEFAULT_FRAME_BYTES) {
      const headerFrame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + block.length);
      frameHeader(headerFrame, 0, block.length, FRAME_HEADERS, FLAG_END_HEADERS, streamId);
      block.copy(headerFrame, FRAME_HEADER_BYTES);
      this.streams.set(streamId, sink);
      this.queue(headerFrame);
      this.uploads.push({ streamId, body, offset: 0 });
      this.upload();
      return;
    }
    const frames = Buffer.allocUnsafe(2 * FRAME_HEADER_BYTES + block.length + body.length);
    frameHeader(frames, 0, block.length, FRAME_HEADERS, FLAG_END_HEADERS, streamId);
    block.copy(frames, FRAME_HEADER_BYTES);
    const dataAt = FRAME_HEADER_BYTES + block.length;
    frameHeader(frames, dataAt, body.length, FRAME_DATA, FLAG_END_STREAM, streamId);
    body.copy(frames, dataAt + FRAME_HEADER_BYTES);
    this.connectionSendWindow -= body.length;
    this.streams.set(streamId, sink);
    this.queue(frames);
  }

  /** Sends what the connection window allows of the large bodies, oldest first. */
  private upload(): void {
    while (this.uploads.length > 0 && this.connectionSendWindow > 0 && !this.dead) {
      const u = this.uploads[0];
      if (u === undefined) return;
      const length = Math.min(DEFAULT_FRAME_BYTES, u.body.length - u.offset, this.connectionSendWindow);
      const last = u.offset + length === u.body.length;
      const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + length);
      frameHeader(frame, 0, length, FRAME_DATA, last ? FLAG_END_STREAM : 0, u.streamId);
      u.body.copy(frame, FRAME_HEADER_BYTES, u.offset, u.offset + length);
      u.offset += length;
      this.connectionSendWindow -= length;
      this.queue(frame);
      if (last) this.uploads.shift();
    }
  }

  private pump(): void {
    while (this.pending.length > 0 && !this.dead) {
      const next = this.pending[0];
      if (next === undefined || !this.canSend(next.body.length)) return;
      this.pending.shift();
      this.send(next.body, next.sink);
    }
  }

  private queue(frame: Buffer): void {
    this.out.push(frame);
    this.outBytes += frame.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // Runs after the current socket read has been processed, so every request
      // issued in response to it leaves in one write.
      process.nextTick(this.flushBound);
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.dead || this.out.length === 0) return;
    const data = this.out.length === 1 ? this.out[0] : Buffer.concat(this.out, this.outBytes);
    this.out = [];
    this.outBytes = 0;
    if (data !== undefined) this.socket.write(data);
  }

  private die(message: string): void {
    if (this.dead) return;
    this.dead = true;
    this.socket.destroy();
    this.fatal(message);
  }

  private onData(chunk: Buffer): void {
    let buffer = chunk;
    if (this.inbox !== null) {
      buffer = Buffer.concat([this.inbox, chunk]);
      this.inbox = null;
    }
    let offset = 0;
    try {
      while (buffer.length - offset >= FRAME_HEADER_BYTES && !this.dead) {
        const length = buffer.readUIntBE(offset, 3);
        if (length > DEFAULT_FRAME_BYTES) {
          this.die(`frame of ${length} bytes exceeds the frame size we allow`);
          return;
        }
        if (buffer.length - offset - FRAME_HEADER_BYTES < length) break;
        const type = buffer[offset + 3] ?? 0;
        const flags = buffer[offset + 4] ?? 0;
        const streamId = buffer.readUInt32BE(offset + 5) & 0x7fffffff;
        const start = offset + FRAME_HEADER_BYTES;
        this.onFrame(buffer, start, start + length, type, flags, streamId);
        offset = start + length;
      }
    } catch (error) {
      if (error instanceof HpackError) {
        this.die(`HPACK: ${error.message}`);
        return;
      }
      throw error;
    }
    if (offset < buffer.length && !this.dead) this.inbox = buffer.subarray(offset);
  }

  private onFrame(buffer: Buffer, start: number, end: number, type: number, flags: number, streamId: number): void {
    if (this.continuation !== null && type !== FRAME_CONTINUATION) {
      this.die("expected CONTINUATION");
      return;
    }
    switch (type) {
      case FRAME_DATA: {
        this.receivedUnacknowledged += end - start;
        if (this.receivedUnacknowledged >= CONNECTION_WINDOW_REPLENISH_BYTES) {
          this.queue(windowUpdate(0, this.receivedUnacknowledged));
          this.receivedUnacknowledged = 0;
        }
        if (flags & FLAG_END_STREAM) this.endStream(streamId, null);
        return;
      }
      case FRAME_HEADERS: {
        let from = start;
        let to = end;
        if (flags & FLAG_PADDED) {
          to -= buffer[from] ?? 0;
          from += 1;
        }
        if (flags & FLAG_PRIORITY) from += 5;
        if (from > to) {
          this.die("malformed HEADERS padding");
          return;
        }
        const endStream = (flags & FLAG_END_STREAM) !== 0;
        if (flags & FLAG_END_HEADERS) {
          this.headerBlock(streamId, buffer, from, to, endStream);
        } else {
          const part = Buffer.from(buffer.subarray(from, to));
          this.continuation = { streamId, endStream, parts: [part], bytes: part.length };
        }
        return;
      }
      case FRAME_CONTINUATION: {
        const continuation = this.continuation;
        if (continuation === null || continuation.streamId !== streamId) {
          this.die("unexpected CONTINUATION");
          return;
        }
        continuation.parts.push(Buffer.from(buffer.subarray(start, end)));
        continuation.bytes += end - start;
        if (continuation.bytes > HEADER_BLOCK_BYTES_MAX) {
          this.die("header block too large");
          return;
        }
        if (flags & FLAG_END_HEADERS) {
          this.continuation = null;
          const block = Buffer.concat(continuation.parts);
          this.headerBlock(streamId, block, 0, block.length, continuation.endStream);
        }
        return;
      }
      case FRAME_RST_STREAM: {
        this.endStream(streamId, `RST_STREAM ${end - start >= 4 ? buffer.readUInt32BE(start) : "?"}`);
        return;
      }
      case FRAME_SETTINGS: {
        if (flags & FLAG_ACK) return;
        for (let at = start; at + SETTING_ENTRY_BYTES <= end; at += SETTING_ENTRY_BYTES) {
          const id = buffer.readUInt16BE(at);
          const value = buffer.readUInt32BE(at + 2);
          if (id === SETTINGS_MAX_CONCURRENT_STREAMS) this.peerMaxStreams = value;
          else if (id === SETTINGS_HEADER_TABLE_SIZE) {
            if (this.nextStreamId === 1) this.peerHeaderTableBytes = value;
            else if (value !== this.peerHeaderTableBytes) {
              // Our later requests refer to entries the first one put in the peer's table.
              this.die("server changed its HPACK table size mid-connection");
              return;
            }
          }
          else if (id === SETTINGS_INITIAL_WINDOW_SIZE) this.peerStreamWindow = value;
          else if (id === SETTINGS_MAX_FRAME_SIZE && value < DEFAULT_FRAME_BYTES) {
            this.die("server announced a frame size below the protocol minimum");
            return;
          }
        }
        this.queue(controlFrame(FRAME_SETTINGS, FLAG_ACK, 0, Buffer.alloc(0)));
        const seen = this.settingsSeen;
        this.settingsSeen = null;
        seen?.();
        this.pump();
        return;
      }
      case FRAME_PING: {
        if ((flags & FLAG_ACK) === 0) this.queue(controlFrame(FRAME_PING, FLAG_ACK, 0, Buffer.from(buffer.subarray(start, end))));
        return;
      }
      case FRAME_GOAWAY: {
        const code = end - start >= 8 ? buffer.readUInt32BE(start + 4) : -1;
        this.die(`server sent GOAWAY (code ${code})`);
        return;
      }
      case FRAME_WINDOW_UPDATE: {
        if (streamId === 0 && end - start >= 4) {
          this.connectionSendWindow += buffer.readUInt32BE(start) & 0x7fffffff;
          this.upload();
          this.pump();
        }
        return;
      }
      case FRAME_PUSH_PROMISE: {
        this.die("server push although we disabled it");
        return;
      }
      default:
        // PRIORITY and unknown frame types carry nothing we act on (RFC 9113 section 4.1: ignore unknown types).
        return;
    }
  }

  private headerBlock(streamId: number, block: Buffer, from: number, to: number, endStream: boolean): void {
    // Every block is decoded, even for streams we forgot, to keep the dynamic table in sync.
    this.decodingSink = this.streams.get(streamId) ?? null;
    try {
      this.decoder.decode(block, from, to, this);
    } finally {
      this.decodingSink = null;
    }
    if (endStream) this.endStream(streamId, null);
  }

  private endStream(streamId: number, error: string | null): void {
    const sink = this.streams.get(streamId);
    if (sink === undefined) return;
    this.streams.delete(streamId);
    sink.onCallEnd(error);
    if (this.pending.length > 0) this.pump();
  }
}
