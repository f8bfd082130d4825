// A raw HTTP/2 client on node:net for the edge tests: it sends exactly the
// frames a test asks for, so it can do what node:http2 refuses to (open more
// streams than the server's SETTINGS allow), and it records what the server
// answers per stream (HEADERS, RST_STREAM with its code, GOAWAY).

import { connect, type Socket } from "node:net";
import { readFileSync } from "node:fs";

export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const FRAME_DATA = 0x0;
const FRAME_HEADERS = 0x1;
const FRAME_RST_STREAM = 0x3;
const FRAME_SETTINGS = 0x4;
const FRAME_PING = 0x6;
const FRAME_GOAWAY = 0x7;
const FLAG_ACK = 0x1;
const FLAG_END_STREAM = 0x1;
const FLAG_END_HEADERS = 0x4;
export const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
export const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
export const RST_REFUSED_STREAM = 0x7;

/** The resident set of a process, from /proc: the figure the memory tests bound. */
export function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (match === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

/** Polls `done` every 20 ms until it holds, or fails naming `what` once deadlineMs has passed. */
export async function pollUntil(what: string, deadlineMs: number, done: () => boolean, onTick?: () => void): Promise<void> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    onTick?.();
    if (done()) return;
    if (Date.now() > end) throw new Error(`${what}: not within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([header, payload]);
}

function hpackInteger(out: number[], prefixBits: number, firstByte: number, value: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(firstByte | value);
    return;
  }
  out.push(firstByte | max);
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
}

/** A header block of literals without indexing and new names: valid whatever the server's table holds. */
export function headerBlock(headers: readonly (readonly [string, string])[]): Buffer {
  const out: number[] = [];
  for (const [name, value] of headers) {
    out.push(0x00);
    hpackInteger(out, 7, 0x00, name.length);
    for (const c of Buffer.from(name, "latin1")) out.push(c);
    hpackInteger(out, 7, 0x00, value.length);
    for (const c of Buffer.from(value, "latin1")) out.push(c);
  }
  return Buffer.from(out);
}

export function grpcRequestHeaders(path: string, authority: string): Buffer {
  return headerBlock([
    [":method", "POST"],
    [":scheme", "http"],
    [":path", path],
    [":authority", authority],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
  ]);
}

/** A gRPC length-prefixed message. */
export function grpcFrame(message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** The frames that open stream `id`: HEADERS, and with a body one DATA frame (it must fit the window). */
export function streamFrames(id: number, block: Buffer, opts: { body?: Buffer; endStream?: boolean } = {}): Buffer {
  const endStream = opts.endStream ?? false;
  const headersFlags = FLAG_END_HEADERS | (endStream && opts.body === undefined ? FLAG_END_STREAM : 0);
  const frames = [frame(FRAME_HEADERS, headersFlags, id, block)];
  if (opts.body !== undefined) frames.push(frame(FRAME_DATA, endStream ? FLAG_END_STREAM : 0, id, opts.body));
  return Buffer.concat(frames);
}

export class RawH2Client {
  readonly headersOn = new Set<number>();
  readonly resets = new Map<number, number>();
  /** Every GOAWAY's error code and debug data, in order. */
  readonly goaways: { code: number; debug: string }[] = [];
  closed = false;
  serverSettings: Map<number, number> | undefined;
  private buffered: Buffer = Buffer.alloc(0);

  private constructor(private readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", () => undefined);
    socket.on("close", () => {
      this.closed = true;
    });
  }

  /**
   * Connects, sends the preface and our SETTINGS, and waits for the server's SETTINGS (which it
   * acknowledges). With `before`, those frames go out in the same write as the preface, before the
   * server's SETTINGS can have been seen, let alone acknowledged.
   */
  static async open(
    addr: string,
    settings: readonly (readonly [number, number])[] = [],
    deadlineMs = 10_000,
    before: readonly Buffer[] = [],
  ): Promise<RawH2Client> {
    const colon = addr.lastIndexOf(":");
    const socket = connect({ host: addr.slice(0, colon), port: Number(addr.slice(colon + 1)) });
    const client = new RawH2Client(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const payload = Buffer.alloc(6 * settings.length);
    settings.forEach(([id, value], i) => {
      payload.writeUInt16BE(id, 6 * i);
      payload.writeUInt32BE(value, 6 * i + 2);
    });
    socket.write(Buffer.concat([PREFACE, frame(FRAME_SETTINGS, 0, 0, payload), ...before]));
    await pollUntil("server SETTINGS", deadlineMs, () => client.serverSettings !== undefined || client.closed);
    if (client.serverSettings === undefined) throw new Error("connection closed before the server's SETTINGS");
    return client;
  }

  /** Opens stream `id` with request headers; with a body, sends it in one DATA frame (it must fit the window). */
  openStream(id: number, block: Buffer, opts: { body?: Buffer; endStream?: boolean } = {}): void {
    this.socket.write(streamFrames(id, block, opts));
  }

  ping(): void {
    this.socket.write(frame(FRAME_PING, 0, 0, Buffer.alloc(8)));
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    while (this.buffered.length >= 9) {
      const length = this.buffered.readUIntBE(0, 3);
      if (this.buffered.length < 9 + length) return;
      const type = this.buffered[3];
      const flags = this.buffered[4] ?? 0;
      const streamId = this.buffered.readUInt32BE(5) & 0x7fffffff;
      const payload = this.buffered.subarray(9, 9 + length);
      this.buffered = this.buffered.subarray(9 + length);
      if (type === FRAME_SETTINGS && (flags & FLAG_ACK) === 0) {
        const settings = new Map<number, number>();
        for (let at = 0; at + 6 <= payload.length; at += 6) settings.set(payload.readUInt16BE(at), payload.readUInt32BE(at + 2));
        this.serverSettings = settings;
        this.socket.write(frame(FRAME_SETTINGS, FLAG_ACK, 0, Buffer.alloc(0)));
      } else if (type === FRAME_HEADERS) {
        this.headersOn.add(streamId);
      } else if (type === FRAME_RST_STREAM) {
        this.resets.set(streamId, payload.readUInt32BE(0));
      } else if (type === FRAME_GOAWAY) {
        this.goaways.push({ code: payload.readUInt32BE(4), debug: payload.subarray(8).toString("latin1") });
      }
    }
  }
}
