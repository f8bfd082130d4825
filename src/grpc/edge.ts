// The gRPC edge: owns the listening socket and bounds what slow or hostile
// clients can hold. grpc-js alone keeps sockets that never send the HTTP/2
// preface, buffers responses for clients that never read and request bodies
// that never finish, and has no cap on connections or on received PINGs.
//
// We own the net.Server (maxConnections, the handshake deadline) and hand each
// socket to grpc-js through Server.createConnectionInjector.
// The injector's http2 server is captured when grpc-js creates it, so that we
// can watch sessions and streams: PING strikes, unfinished bodies (a byte budget
// per connection and in total, and a deadline), and responses that make no
// progress (a stall deadline, and a total budget for queued bytes).
// nghttp2 itself enforces the stream cap (SETTINGS_MAX_CONCURRENT_STREAMS).
// Under TLS (QM_TLS_CERT) grpc-js's injector is an http2 secure server: the
// handshake deadline then covers the TLS handshake and the HTTP/2 preface
// together, and every other protection watches the same sessions.
// grpc-node.max_session_memory is left unlimited, as grpc-js does by default:
// measured here, a session over it was torn down with INTERNAL_ERROR, failing
// the calls of clients that read normally. The byte budgets below replace it.

import http2 from "node:http2";
import { createServer, type Server as NetServer, type Socket } from "node:net";
import type { PeerCertificate, TLSSocket } from "node:tls";
import type { ChannelOptions, ConnectionInjector, Server, ServerCredentials } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { type Clock, systemClock } from "../clock";
import type { GrpcEdgeConfig } from "../config";
import type { DirectReserve } from "./direct_reserve";
import {
  GRPC_CONNECTION_PENDING_REQUEST_BYTES_MAX,
  GRPC_CONNECTION_QUEUED_RESPONSE_BYTES_MAX,
  GRPC_EDGE_SWEEP_INTERVAL_MS,
  GRPC_IDLE_PING_INTERVAL_MIN_MS,
  GRPC_KEEPALIVE_TIME_MS,
  GRPC_KEEPALIVE_TIMEOUT_MS,
  GRPC_PING_INTERVAL_MIN_MS,
  GRPC_PING_STRIKES_MAX,
} from "../limits";

/**
 * Bytes the connection must have written, beyond PING and SETTINGS acknowledgements, for a response
 * stuck behind a closed window not to count as stalled: one full DATA frame.
 */
const CONNECTION_PROGRESS_BYTES_MIN = 16 * 1024;
const TOO_MANY_PINGS = Buffer.from("too_many_pings");
const CREDENTIAL_REVOKED = Buffer.from("credential_revoked");
const { NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_NO_ERROR } = http2.constants;

/** Server options for grpc-js that the edge relies on; merged into the server's own. */
export function edgeServerOptions(config: GrpcEdgeConfig): ChannelOptions {
  return {
    "grpc.max_concurrent_streams": config.streamsPerConnectionMax,
    "grpc.max_connection_idle_ms": config.idleTimeoutMs,
    "grpc.keepalive_time_ms": GRPC_KEEPALIVE_TIME_MS,
    "grpc.keepalive_timeout_ms": GRPC_KEEPALIVE_TIMEOUT_MS,
  };
}

/** Why the edge closed a connection or reset a stream; each kind is counted and logged. */
export type EdgeDrop =
  | "connection_over_cap"
  | "handshake_timeout"
  | "tls_handshake_timeout"
  | "tls_handshake_failed"
  | "too_many_pings"
  | "request_body_timeout"
  | "request_bytes_over_budget"
  | "response_stalled"
  | "responses_over_budget";

interface Connection {
  pendingRequestBytes: number;
  queuedResponseBytes: number;
  openStreams: number;
  lastPingMs: number;
  pingStrikes: number;
  lastSweep: number;
  bytesWritten: number;
  /** Bytes written since the previous sweep reached CONNECTION_PROGRESS_BYTES_MIN. */
  progressed: boolean;
  readonly session: http2.ServerHttp2Session;
  /** The socket http2 writes to (the TLS socket under TLS), for bytesWritten: session.socket throws once the session has let it go. */
  readonly socket: Socket | undefined;
}

/** A connection between accept and the client's first SETTINGS. */
interface Handshake {
  readonly socket: Socket;
  readonly done: () => void;
  /** Under TLS: the TLS socket once its handshake has finished. */
  tlsSocket: TLSSocket | undefined;
  /** Already counted as a drop: a socket is counted once. */
  counted: boolean;
}

interface Watch {
  readonly stream: http2.ServerHttp2Stream;
  readonly connection: Connection;
  readonly openedMs: number;
  pendingRequestBytes: number;
  bodyDone: boolean;
  /** Response bytes written to the stream and not yet taken by nghttp2 (the write callbacks not yet called). */
  queuedBytes: number;
  /** queuedBytes at the last sweep. */
  sweptQueuedBytes: number;
  /** Since when queuedBytes has not moved and the connection has not progressed; undefined while nothing is queued. */
  stalledSinceMs: number | undefined;
  closed: boolean;
}

type WriteCallback = (error?: Error | null) => void;
type StreamWrite = (chunk: unknown, encodingOrCallback?: unknown, callback?: unknown) => boolean;
type StreamPush = (chunk: unknown, encoding?: BufferEncoding) => boolean;
interface StreamMethods {
  push: StreamPush;
  write: StreamWrite;
}

/** The edge and the watch of each stream whose push and write it counts. */
const HOOKED = new WeakMap<object, { readonly edge: GrpcEdge; readonly watch: Watch }>();

export interface GrpcEdgeOptions {
  readonly config: GrpcEdgeConfig;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Called for every drop, e.g. to count it in a metric. */
  readonly onDrop?: (drop: EdgeDrop) => void;
}

export class GrpcEdge {
  private readonly config: GrpcEdgeConfig;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly onDrop: ((drop: EdgeDrop) => void) | undefined;
  private readonly netServer: NetServer;
  private injector: ConnectionInjector | undefined;
  private readonly handshaking = new Set<Socket>();
  /** The plaintext socket being injected, for the session it is about to become (synchronously). */
  private accepting: Handshake | undefined;
  /**
   * Under TLS the session comes after the TLS handshake, asynchronously: it finds its handshake by the
   * peer's address and port, which the TLS socket shares with the raw one. At most connectionsMax entries.
   */
  private readonly handshakingByPeer = new Map<string, Handshake>();
  private tls = false;
  private readonly watches = new Set<Watch>();
  /** Open sessions, to close those of a certificate revoked later; at most connectionsMax (the net server's cap). */
  private readonly connections = new Set<Connection>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweepNo = 0;
  private readonly sweepMs: number;
  private pendingRequestBytes = 0;
  private queuedResponseBytes = 0;
  private readonly drops: Record<EdgeDrop, number> = {
    connection_over_cap: 0,
    handshake_timeout: 0,
    tls_handshake_timeout: 0,
    tls_handshake_failed: 0,
    too_many_pings: 0,
    request_body_timeout: 0,
    request_bytes_over_budget: 0,
    response_stalled: 0,
    responses_over_budget: 0,
  };

  constructor(options: GrpcEdgeOptions) {
    this.config = options.config;
    this.logger = options.logger;
    this.clock = options.clock ?? systemClock;
    this.onDrop = options.onDrop;
    this.netServer = createServer((socket) => this.onConnection(socket));
    this.netServer.maxConnections = this.config.connectionsMax;
    this.netServer.on("drop", () => this.count("connection_over_cap"));
    this.sweepMs = Math.max(
      10,
      Math.min(GRPC_EDGE_SWEEP_INTERVAL_MS, Math.floor(Math.min(this.config.requestBodyTimeoutMs, this.config.sendStallTimeoutMs) / 4)),
    );
  }

  /**
   * Creates the injector on `server`, listens on host:port and returns the bound address.
   * With secure credentials the handshake deadline runs from accept to the client's first
   * SETTINGS, after the TLS handshake: a client that never finishes either is closed by it.
   */
  start(server: Server, credentials: ServerCredentials, listen: string, direct?: DirectReserve): Promise<string> {
    const { injector, http2Server } = injectorWithServer(server, credentials);
    this.injector = injector;
    // Installed before any session exists; its streams pass the same session watch as grpc-js's (onStream).
    if (direct !== undefined) {
      if (direct.install(http2Server, server)) this.logger.info("Reserve is answered on the raw HTTP/2 stream (QM_GRPC_DIRECT_RESERVE=1)");
      else this.logger.warn("grpc-js lacks the stream hook the direct Reserve path needs: Reserve stays on grpc-js");
    }
    this.tls = credentials._isSecure();
    http2Server.on("session", (session: http2.ServerHttp2Session) => this.onSession(session));
    if (this.tls) {
      // Prepended: http2's own listener creates the session, whose handler needs the TLS socket.
      http2Server.prependListener("secureConnection", (tlsSocket: TLSSocket) => this.onTlsDone(tlsSocket));
      http2Server.on("tlsClientError", (error: NodeJS.ErrnoException, tlsSocket: TLSSocket) => this.onTlsError(error, tlsSocket));
    }
    this.sweepTimer = setInterval(() => this.sweep(), this.sweepMs);
    this.sweepTimer.unref();
    const colon = listen.lastIndexOf(":");
    const host = listen.slice(0, colon);
    const port = Number(listen.slice(colon + 1));
    return new Promise((resolve, reject) => {
      this.netServer.once("error", reject);
      this.netServer.listen({ host: host.replace(/^\[(.*)\]$/, "$1"), port }, () => {
        this.netServer.off("error", reject);
        const address = this.netServer.address();
        resolve(`${host}:${typeof address === "object" && address !== null ? address.port : port}`);
      });
    });
  }

  /** Stops accepting and closes sockets still in the handshake; grpc-js drains the sessions. Idempotent. */
  stop(): void {
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    if (this.netServer.listening) this.netServer.close();
    for (const socket of this.handshaking) socket.destroy();
    this.handshaking.clear();
    this.handshakingByPeer.clear();
  }

  private count(drop: EdgeDrop, cause?: string): void {
    this.drops[drop]++;
    this.onDrop?.(drop);
    // Hostile traffic must not turn into a log flood: one line per kind per power of two.
    const n = this.drops[drop];
    if ((n & (n - 1)) === 0) this.logger.warn({ drop, count: n, ...(cause === undefined ? {} : { cause }) }, "grpc edge dropped a connection or call");
  }

  /**
   * Hands the socket to grpc-js at once, and closes it unless the client's first SETTINGS (which must
   * follow the preface, and under TLS the TLS handshake) arrives within the handshake deadline;
   * nghttp2 itself rejects a wrong preface, and the TLS server a failed handshake.
   * Reading the preface in JavaScript first and unshifting it would be simpler, but then http2 no
   * longer reads the socket natively: measured here, +35% CPU per call (bench/edge_cost.ts).
   */
  private onConnection(socket: Socket): void {
    this.handshaking.add(socket);
    const peer = this.tls ? peerKey(socket) : "";
    const timer = setTimeout(() => {
      if (!this.handshaking.delete(socket)) return;
      this.forgetPeer(peer, handshake);
      handshake.counted = true;
      // Destroying the raw socket also ends a TLS socket still in its handshake.
      this.count(this.tls && handshake.tlsSocket === undefined ? "tls_handshake_timeout" : "handshake_timeout");
      socket.destroy();
    }, this.config.handshakeTimeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      this.handshaking.delete(socket);
      this.forgetPeer(peer, handshake);
    };
    const handshake: Handshake = { socket, done, tlsSocket: undefined, counted: false };
    socket.once("close", done);
    if (this.tls) {
      socket.once("close", () => this.onClosedInTls(handshake));
      this.handshakingByPeer.set(peer, handshake);
      this.injector?.injectConnection(socket);
      return;
    }
    // grpc-js creates the session, and the http2 server emits 'session', synchronously inside injectConnection.
    this.accepting = handshake;
    try {
      this.injector?.injectConnection(socket);
    } finally {
      this.accepting = undefined;
    }
  }

  private forgetPeer(peer: string, handshake: Handshake): void {
    if (this.tls && this.handshakingByPeer.get(peer) === handshake) this.handshakingByPeer.delete(peer);
  }

  private onTlsDone(tlsSocket: TLSSocket): void {
    const handshake = this.handshakingByPeer.get(peerKey(tlsSocket));
    if (handshake !== undefined) handshake.tlsSocket = tlsSocket;
    memoizePeerCertificate(tlsSocket);
  }

  /**
   * A refused TLS handshake: a plaintext client, no or an untrusted client certificate. Counted while the
   * deadline still runs (a socket the deadline closed reports a reset here too), and a client that left is none.
   */
  private onTlsError(error: NodeJS.ErrnoException, tlsSocket: TLSSocket): void {
    const handshake = this.handshakingByPeer.get(peerKey(tlsSocket));
    if (handshake === undefined || handshake.counted || error.code === "ECONNRESET") return;
    handshake.counted = true;
    this.count("tls_handshake_failed", error.message.trim());
  }

  /**
   * Node's TLS server closes a connection whose client certificate does not verify without any event
   * (TLS 1.3 checks it after the handshake, and 'secureConnection' never comes). A socket that sent
   * bytes and closed before its TLS handshake finished is that, or a client that gave up mid-handshake.
   */
  private onClosedInTls(handshake: Handshake): void {
    if (handshake.counted || handshake.tlsSocket !== undefined || handshake.socket.bytesRead === 0) return;
    handshake.counted = true;
    this.count("tls_handshake_failed", "closed before the TLS handshake finished (an untrusted client certificate, or a client that gave up)");
  }

  private onSession(session: http2.ServerHttp2Session): void {
    const accepted = this.accepting ?? (this.tls ? this.handshakingByPeer.get(peerKey(session.socket)) : undefined);
    if (accepted !== undefined) session.once("remoteSettings", accepted.done);
    const connection: Connection = {
      pendingRequestBytes: 0,
      queuedResponseBytes: 0,
      openStreams: 0,
      lastPingMs: Number.NEGATIVE_INFINITY,
      pingStrikes: 0,
      lastSweep: -1,
      bytesWritten: 0,
      progressed: false,
      session,
      socket: accepted?.tlsSocket ?? accepted?.socket,
    };
    this.connections.add(connection);
    session.once("close", () => this.connections.delete(connection));
    session.on("ping", () => this.onPing(connection));
    session.on("stream", (stream: http2.ServerHttp2Stream) => this.onStream(connection, stream));
  }

  /**
   * Sends GOAWAY to every session whose verified client certificate `revoked` names, and destroys it: its calls in
   * flight end (a Backup stream must not outlive the revocation), and the client must connect again, which its
   * certificate then no longer lets it do usefully. Only mutual TLS connections have one. Returns how many closed.
   */
  closeSessionsWhere(revoked: (certificate: PeerCertificate) => boolean): number {
    if (!this.tls) return 0;
    let closed = 0;
    for (const connection of this.connections) {
      const session = connection.session;
      if (session.destroyed) continue;
      const certificate = peerCertificateOf(session);
      if (certificate === undefined || !revoked(certificate)) continue;
      session.goaway(NGHTTP2_NO_ERROR, session.state.lastProcStreamID ?? 0, CREDENTIAL_REVOKED);
      session.destroy();
      this.connections.delete(connection);
      closed++;
    }
    return closed;
  }

  /** gRPC core's ping abuse policy: too-early PINGs are strikes, and past the limit the connection goes. */
  private onPing(connection: Connection): void {
    const now = this.clock.monotonicMs();
    const intervalMin = connection.openStreams === 0 ? GRPC_IDLE_PING_INTERVAL_MIN_MS : GRPC_PING_INTERVAL_MIN_MS;
    if (now - connection.lastPingMs < intervalMin) connection.pingStrikes++;
    connection.lastPingMs = now;
    if (connection.pingStrikes <= GRPC_PING_STRIKES_MAX) return;
    const session = connection.session;
    if (session.destroyed) return;
    this.count("too_many_pings");
    session.goaway(NGHTTP2_ENHANCE_YOUR_CALM, session.state.lastProcStreamID ?? 0, TOO_MANY_PINGS);
    session.destroy();
  }

  private onStream(connection: Connection, stream: http2.ServerHttp2Stream): void {
    const watch: Watch = {
      stream,
      connection,
      openedMs: this.clock.monotonicMs(),
      pendingRequestBytes: 0,
      bodyDone: false,
      queuedBytes: 0,
      sweptQueuedBytes: 0,
      stalledSinceMs: undefined,
      closed: false,
    };
    connection.openStreams++;
    connection.pingStrikes = 0;
    this.watches.add(watch);
    // Read now: Node drops the stream's reference to its handle when it destroys the stream, before 'close'.
    const handle = nativeHandleOf(stream);
    stream.once("close", () => {
      this.onStreamClosed(watch);
      // The closed stream outlives its call until a full collection (see releaseClosedStream);
      // without its entry the watch, and through it the connection, no longer ride along.
      HOOKED.delete(stream);
      releaseClosedStream(stream, handle);
    });
    // Request bytes are counted as http2 pushes them into the stream (null ends the body), and
    // responses as grpc-js writes them, so that a budget holds at once, even for a burst of calls
    // admitted before any response existed. The same two functions serve every stream: a closure
    // per stream in these fields cost about 20% more server CPU per echo call, and so did a second
    // 'data' listener; the shared functions cost nothing measurable (bench/edge_cost.ts).
    HOOKED.set(stream, { edge: this, watch });
    const fields = stream as unknown as { push: StreamPush; write: StreamWrite };
    fields.push = GrpcEdge.countedPush;
    fields.write = GrpcEdge.countedWrite;
  }

  private static countedPush(this: StreamMethods, chunk: unknown, encoding?: BufferEncoding): boolean {
    const hooked = HOOKED.get(this);
    if (hooked !== undefined) {
      if (chunk === null) hooked.edge.onBodyDone(hooked.watch);
      else if (Buffer.isBuffer(chunk)) hooked.edge.onRequestBytes(hooked.watch, chunk.length);
    }
    return (Object.getPrototypeOf(this) as StreamMethods).push.call(this, chunk, encoding);
  }

  /** grpc-js writes (chunk, callback); other forms pass uncounted. */
  private static countedWrite(this: StreamMethods, chunk: unknown, encodingOrCallback?: unknown, callback?: unknown): boolean {
    const write = (Object.getPrototypeOf(this) as StreamMethods).write;
    const hooked = HOOKED.get(this);
    if (hooked === undefined || !Buffer.isBuffer(chunk) || typeof encodingOrCallback !== "function" || callback !== undefined) {
      return write.call(this, chunk, encodingOrCallback, callback);
    }
    const { edge, watch } = hooked;
    const done = encodingOrCallback as WriteCallback;
    if (!edge.admitResponse(watch, chunk.length)) return false;
    return write.call(this, chunk, (error?: Error | null) => {
      edge.onResponseTaken(watch, chunk.length);
      done(error);
    });
  }

  /** Counts a response about to be queued, or resets its stream if no budget can make room. */
  private admitResponse(watch: Watch, bytes: number): boolean {
    // A closed stream's write fails by itself, and nothing would release what it counted.
    if (watch.closed) return true;
    const connection = watch.connection;
    if (connection.queuedResponseBytes + bytes > GRPC_CONNECTION_QUEUED_RESPONSE_BYTES_MAX) {
      this.reset(watch, NGHTTP2_ENHANCE_YOUR_CALM, "responses_over_budget");
      return false;
    }
    if (this.queuedResponseBytes + bytes > this.config.queuedResponseBytesMax) {
      this.resetStalledResponses();
      if (this.queuedResponseBytes + bytes > this.config.queuedResponseBytesMax) {
        this.reset(watch, NGHTTP2_ENHANCE_YOUR_CALM, "responses_over_budget");
        return false;
      }
    }
    watch.queuedBytes += bytes;
    connection.queuedResponseBytes += bytes;
    this.queuedResponseBytes += bytes;
    return true;
  }

  private onResponseTaken(watch: Watch, bytes: number): void {
    if (watch.closed) return;
    watch.queuedBytes -= bytes;
    watch.connection.queuedResponseBytes -= bytes;
    this.queuedResponseBytes -= bytes;
  }

  /** Frees the total budget from responses that have not moved for at least one sweep interval. */
  private resetStalledResponses(): void {
    const now = this.clock.monotonicMs();
    for (const watch of this.watches) {
      if (watch.stalledSinceMs !== undefined && now - watch.stalledSinceMs >= this.sweepMs) {
        this.reset(watch, NGHTTP2_ENHANCE_YOUR_CALM, "responses_over_budget");
      }
    }
  }

  private onRequestBytes(watch: Watch, bytes: number): void {
    if (watch.bodyDone) return;
    watch.pendingRequestBytes += bytes;
    watch.connection.pendingRequestBytes += bytes;
    this.pendingRequestBytes += bytes;
    if (
      watch.connection.pendingRequestBytes > GRPC_CONNECTION_PENDING_REQUEST_BYTES_MAX ||
      this.pendingRequestBytes > this.config.pendingRequestBytesMax
    ) {
      this.reset(watch, NGHTTP2_ENHANCE_YOUR_CALM, "request_bytes_over_budget");
    }
  }

  private onBodyDone(watch: Watch): void {
    if (watch.bodyDone) return;
    watch.bodyDone = true;
    watch.connection.pendingRequestBytes -= watch.pendingRequestBytes;
    this.pendingRequestBytes -= watch.pendingRequestBytes;
    watch.pendingRequestBytes = 0;
  }

  private onStreamClosed(watch: Watch): void {
    if (watch.closed) return;
    watch.closed = true;
    this.watches.delete(watch);
    this.onBodyDone(watch);
    watch.connection.openStreams--;
    watch.connection.queuedResponseBytes -= watch.queuedBytes;
    this.queuedResponseBytes -= watch.queuedBytes;
    watch.queuedBytes = 0;
  }

  private reset(watch: Watch, code: number, drop: EdgeDrop): void {
    this.count(drop);
    if (!watch.stream.closed && !watch.stream.destroyed) watch.stream.close(code);
    this.onStreamClosed(watch);
  }

  /** Body deadlines and response stalls, for every open stream. */
  private sweep(): void {
    const now = this.clock.monotonicMs();
    const sweepNo = ++this.sweepNo;
    for (const watch of this.watches) {
      if (!watch.bodyDone && now - watch.openedMs >= this.config.requestBodyTimeoutMs) {
        this.reset(watch, NGHTTP2_CANCEL, "request_body_timeout");
        continue;
      }
      const bytes = watch.queuedBytes;
      if (bytes === 0) {
        watch.stalledSinceMs = undefined;
      } else if (watch.stalledSinceMs === undefined || bytes !== watch.sweptQueuedBytes || this.progressed(watch.connection, sweepNo)) {
        watch.stalledSinceMs = now;
      } else if (now - watch.stalledSinceMs >= this.config.sendStallTimeoutMs) {
        this.reset(watch, NGHTTP2_CANCEL, "response_stalled");
      }
      watch.sweptQueuedBytes = bytes;
    }
  }

  /** Whether the connection wrote a DATA frame's worth since the previous sweep; computed once per sweep. */
  private progressed(connection: Connection, sweepNo: number): boolean {
    if (connection.lastSweep !== sweepNo) {
      connection.lastSweep = sweepNo;
      const written = connection.socket?.bytesWritten ?? connection.bytesWritten;
      connection.progressed = written - connection.bytesWritten >= CONNECTION_PROGRESS_BYTES_MIN;
      if (connection.progressed || written < connection.bytesWritten) connection.bytesWritten = written;
    }
    return connection.progressed;
  }
}

/**
 * A closed stream's listeners are the only path from the stream to its grpc-js call (the call
 * object, its decoder, metadata, the handler's closures). Node keeps the stream itself reachable
 * until a full collection, not just until it closes, so without this cut every call's objects
 * survive the young-generation collections that follow its end: measured here, V8 promoted about
 * 2 MB per scavenge of the hot load, and the call objects made up most of it (bench/README.md,
 * "Hot SKU: why the garbage is promoted"). 'close' is the stream's last event; an 'error' listener
 * stays, so that a late error on a dead stream is not thrown from the emitter.
 */
function releaseClosedStream(stream: http2.ServerHttp2Stream, handle: object | undefined): void {
  stream.removeAllListeners();
  stream.on("error", ignoreError);
  // The native handle is what a scavenge keeps (an API wrapper is a root until a full collection),
  // and it names its stream as its owner. Once the stream is closed with no write outstanding,
  // the callbacks Node may still make through that owner (onStreamClose, afterShutdown) check for
  // a missing one; a write's completion does not, so a stream with one outstanding keeps its owner.
  // Cut, the closed stream and all it still holds (respond's headers, its states) die in the next
  // scavenge instead of being promoted.
  if (OWNER_CUT_VERIFIED && handle !== undefined && stream.writableLength === 0) {
    const owner = symbolNamed(handle, "owner_symbol", OWNER_SYMBOL);
    if (owner !== undefined) (handle as Record<symbol, unknown>)[owner] = undefined;
  }
}

/**
 * The owner cut reaches into Node's private http2 internals: on Node 20 every callback a destroyed
 * stream's handle can still make was read and checked (bench/README "Hot SKU, stop 9"). Another
 * major may call back without that check and throw from native code, which would take the whole
 * process down for a saving of about a tenth of a call's CPU; so elsewhere the stream keeps its owner
 * until that major is read and tested too (test/unit/grpc_edge_release.test.ts fails without the cut).
 */
const OWNER_CUT_VERIFIED = process.versions.node.split(".")[0] === "20";

/** Node's per-process symbols, found once by their description (they are not exported). */
const HANDLE_SYMBOL: { value?: symbol } = {};
const OWNER_SYMBOL: { value?: symbol } = {};

function symbolNamed(target: object, description: string, cache: { value?: symbol }): symbol | undefined {
  cache.value ??= Object.getOwnPropertySymbols(target).find((s) => s.description === description);
  return cache.value;
}

/** The stream's node::http2::Http2Stream wrapper, or undefined where Node keeps it elsewhere. */
function nativeHandleOf(stream: http2.ServerHttp2Stream): object | undefined {
  const key = symbolNamed(stream, "kHandle", HANDLE_SYMBOL);
  const handle = key === undefined ? undefined : (stream as unknown as Record<symbol, unknown>)[key];
  return typeof handle === "object" && handle !== null ? handle : undefined;
}

function ignoreError(): void {}

/**
 * grpc-js reads the peer certificate for every call's auth context, and Node builds it anew each
 * time: measured here, 35-55 µs per call under mutual TLS, about a fifth of a call's server CPU.
 * HTTP/2 forbids TLS renegotiation (RFC 9113, 9.2.1), so it is refused, and the certificate is
 * then the same for the connection's life: built once, frozen, and handed to every call.
 */
function memoizePeerCertificate(tlsSocket: TLSSocket): void {
  tlsSocket.disableRenegotiation();
  const read = tlsSocket.getPeerCertificate.bind(tlsSocket);
  let brief: ReturnType<TLSSocket["getPeerCertificate"]> | undefined;
  const memoized = (detailed?: boolean): ReturnType<TLSSocket["getPeerCertificate"]> => {
    if (detailed === true) return read(true);
    brief ??= Object.freeze(read());
    return brief;
  };
  Object.defineProperty(tlsSocket, "getPeerCertificate", { value: memoized });
}

/** The session's verified client certificate (memoized, see above), or undefined without one or once the socket is gone. */
function peerCertificateOf(session: http2.ServerHttp2Session): PeerCertificate | undefined {
  try {
    const socket = session.socket as TLSSocket;
    if (typeof socket.getPeerCertificate !== "function" || socket.authorized !== true) return undefined;
    const certificate = socket.getPeerCertificate();
    return certificate !== null && typeof certificate === "object" && certificate.subject !== undefined ? certificate : undefined;
  } catch {
    return undefined;
  }
}

/** A connection's peer, the same for the raw socket and the TLS socket over it. */
function peerKey(socket: { readonly remoteAddress?: string | undefined; readonly remotePort?: number | undefined }): string {
  return `${socket.remoteAddress ?? ""}|${socket.remotePort ?? ""}`;
}

/**
 * grpc-js keeps the http2 server behind its injector private; the edge needs its 'session' events.
 * grpc-js creates that server with http2.createServer inside createConnectionInjector, so the call
 * (http2.createSecureServer with secure credentials) inside createConnectionInjector, so the call
 * is observed for that one synchronous moment. A grpc-js that stops doing so fails here, at start,
 * and not silently later.
 */
function injectorWithServer(
  server: Server,
  credentials: ServerCredentials,
): { injector: ConnectionInjector; http2Server: http2.Http2Server } {
  type Create = (...args: unknown[]) => http2.Http2Server;
  const mutable = http2 as unknown as { createServer: Create; createSecureServer: Create };
  const original = { createServer: mutable.createServer, createSecureServer: mutable.createSecureServer };
  let created: http2.Http2Server | undefined;
  mutable.createServer = (...args: unknown[]): http2.Http2Server => {
    created = original.createServer(...args);
    return created;
  };
  mutable.createSecureServer = (...args: unknown[]): http2.Http2Server => {
    created = original.createSecureServer(...args);
    return created;
  };
  let injector: ConnectionInjector;
  try {
    injector = server.createConnectionInjector(credentials);
  } finally {
    mutable.createServer = original.createServer;
    mutable.createSecureServer = original.createSecureServer;
  }
  if (created === undefined) throw new Error("grpc-js did not create its injector's server with http2.createServer");
  return { injector, http2Server: created };
}
