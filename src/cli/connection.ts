// qmctl's one connection to a server. Every service client of an invocation
// shares one channel, so that "did we ever reach the server?" has one answer:
// grpc-js reports a refused connection, a name that does not resolve and a
// server that answered UNAVAILABLE itself with the same status code, and only
// the channel's state tells them apart.

import {
  Channel,
  type ChannelCredentials,
  type ClientOptions,
  connectivityState,
  credentials,
  type Interceptor,
  InterceptingCall,
  type ServiceError,
  status as GrpcStatus,
} from "@grpc/grpc-js";
import { ClusterServiceClient } from "../gen/quartermaster/v1/cluster";
import type { InventoryServiceClient } from "../gen/quartermaster/v1/inventory";
import { OrderServiceClient } from "../gen/quartermaster/v1/order";
import type { ServerAddress } from "./address";
import { type Clients, InventoryClient } from "./rpc";
import { type ClientTls, tlsCredentials, tlsFailureCause } from "./tls";

/** The shape of every ts-proto generated grpc-js client. */
export type ClientConstructor<C> = new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>) => C;

export class Connection implements Clients {
  private channel: Channel | undefined;
  // One entry per service type a command uses: a handful at most, never per call.
  private readonly clients = new Map<ClientConstructor<unknown>, unknown>();
  private closed = false;

  private channelCredentials: ChannelCredentials | undefined;

  /** `tls` undefined: plaintext, for a server on loopback or a private network. */
  constructor(
    readonly addr: ServerAddress,
    /** Sent as `authorization: Bearer <token>` on every call of every client. */
    private readonly token?: string,
    readonly tls?: ClientTls,
  ) {}

  /** Reads the TLS files now, so that a missing one is reported before any call (a UsageError naming its setting). */
  prepare(): void {
    this.channelCredentials ??= this.tls === undefined ? credentials.createInsecure() : tlsCredentials(this.tls);
  }

  /** A client of any generated service on the shared channel; the channel opens on first use, so offline commands never connect. */
  client<C>(ctor: ClientConstructor<C>): C {
    if (this.closed) throw new Error("connection closed");
    const existing = this.clients.get(ctor);
    if (existing !== undefined) return existing as C;
    this.prepare();
    const creds = this.channelCredentials ?? credentials.createInsecure();
    this.channel ??= new Channel(this.addr.target, creds, {});
    const created = new ctor(this.addr.target, creds, {
      channelOverride: this.channel,
      ...(this.token === undefined ? {} : { interceptors: [bearerInterceptor(this.token)] }),
    });
    this.clients.set(ctor, created);
    return created;
  }

  get inventory(): InventoryServiceClient {
    return this.client(InventoryClient);
  }

  get order(): OrderServiceClient {
    return this.client(OrderServiceClient);
  }

  get cluster(): ClusterServiceClient {
    return this.client(ClusterServiceClient);
  }

  /**
   * True when a failed call never got to a server: the channel is not READY.
   * A server that answers UNAVAILABLE (shutting down) or lets a deadline pass
   * leaves the channel READY, so its own message is printed instead.
   */
  neverReached(err: ServiceError): boolean {
    if (err.code !== GrpcStatus.UNAVAILABLE && err.code !== GrpcStatus.DEADLINE_EXCEEDED) return false;
    return this.channel === undefined || this.channel.getConnectivityState(false) !== connectivityState.READY;
  }

  /**
   * True when whatever answered at the address is not a gRPC server: grpc-js
   * turns a plain HTTP reply (a web server, a proxy) into UNIMPLEMENTED with
   * "Received HTTP status code 404", which reads like a missing method.
   */
  static answeredNotGrpc(err: ServiceError): boolean {
    return err.code === GrpcStatus.UNIMPLEMENTED && /Received HTTP status code \d+/.test(err.details);
  }

  /** Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.channel?.close();
  }
}

/**
 * Adds the bearer token to each call's metadata. grpc-js refuses call
 * credentials on a plaintext channel, and a server on loopback may well run
 * QM_AUTH_CONFIG without TLS, so the header is set here instead.
 */
function bearerInterceptor(token: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}

/** grpc-js's text for a failed connection, shortened to the cause a user can act on. */
export function connectionFailureCause(err: ServiceError, deadlineMs: number, tls = false): string {
  const text = err.details;
  const tlsCause = tlsFailureCause(text, tls);
  if (tlsCause !== undefined) return tlsCause;
  const httpStatus = /Received HTTP status code (\d+)/.exec(text)?.[1];
  if (err.code === GrpcStatus.UNIMPLEMENTED && httpStatus !== undefined) return `it answers HTTP ${httpStatus}, not gRPC`;
  if (/ECONNREFUSED/.test(text)) return "connection refused";
  if (/Name resolution failed|ENOTFOUND|EAI_AGAIN/.test(text)) return "the host name does not resolve";
  if (/EHOSTUNREACH|ENETUNREACH/.test(text)) return "no route to the host";
  if (/ETIMEDOUT/.test(text)) return "the connection attempt timed out";
  if (err.code === GrpcStatus.DEADLINE_EXCEEDED) return `no connection within the ${deadlineMs} ms deadline`;
  // Whatever else grpc-js says, without its empty "Resolution note: " tail.
  return text.replace(/\.?\s*Resolution note:\s*$/, "");
}
