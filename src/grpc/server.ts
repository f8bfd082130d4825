// The gRPC server: both services, standard health checking (NOT_SERVING until
// recovery is done) and server reflection, so grpcurl and grpc_health_probe work.
// Connections come in through the edge (edge.ts), which bounds slow and hostile clients.

import type { PeerCertificate } from "node:tls";
import { type ChannelOptions, Server, ServerCredentials } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import type { Logger } from "pino";
import type { ActorRouter } from "../actors/runtime/behavior";
import type { DataDirBackup } from "../backup/data_dir_backup";
import { AdminServiceService } from "../gen/quartermaster/v1/admin";
import type { GrpcEdgeConfig, ListenerTlsConfig } from "../config";
import { OrderServiceService } from "../gen/quartermaster/v1/order";
import { ClusterServiceService } from "../gen/quartermaster/v1/cluster";
import type { ClusterView } from "../cluster/cluster_view";
import { clusterService } from "./cluster_service";
import { GRPC_MESSAGE_BYTES_MAX } from "../limits";
import { adminService } from "./admin_service";
import { inventoryServiceDefinition } from "./attribute_map";
import { type EdgeDrop, edgeServerOptions, GrpcEdge } from "./edge";
import { DirectReserve } from "./direct_reserve";
import { inventoryService, reserveHandler } from "./inventory_service";
import { orderService } from "./order_service";
import { addReflection } from "./reflection";
import { type CallGate, OPEN_GATE } from "../security/call_gate";
import { asImplementation, type CallObserver, unaryFactory, withSafeDecoding } from "./unary";

const SERVICE_NAMES = ["", "quartermaster.v1.InventoryService", "quartermaster.v1.OrderService", "quartermaster.v1.ClusterService"];

export interface GrpcServerOptions {
  readonly listen: string;
  readonly router: ActorRouter;
  readonly cluster: ClusterView;
  readonly logger: Logger;
  readonly observe: CallObserver;
  readonly reservationGraceMs: number;
  /** The embedded node's data-directory backups; absent in cluster mode. */
  readonly backups?: DataDirBackup;
  readonly edge: GrpcEdgeConfig;
  readonly onEdgeDrop?: (drop: EdgeDrop) => void;
  /** Who may call what (src/security/); the open gate when absent. */
  readonly gate?: CallGate;
  /** TLS (and mutual TLS) on the listener; plaintext when absent. */
  readonly tls?: ListenerTlsConfig | undefined;
  /** The listener's credentials, when the caller keeps them to replace the certificate (security/listener_tls.ts); wins over tls. */
  readonly credentials?: ServerCredentials | undefined;
}

/**
 * The listener's credentials. With a client CA, a client must present a certificate that chains to it
 * (checkClientCertificate): one without, or from another CA, is refused in the TLS handshake, before
 * any call exists.
 */
export function listenerCredentials(tls: ListenerTlsConfig | undefined): ServerCredentials {
  if (tls === undefined) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(tls.clientCa?.bytes ?? null, [{ cert_chain: tls.cert.bytes, private_key: tls.key.bytes }], tls.clientCa !== undefined);
}

export class GrpcServer {
  private readonly server: Server;
  private readonly edge: GrpcEdge;
  /** Reserve off grpc-js, on the raw stream (direct_reserve.ts), when QM_GRPC_DIRECT_RESERVE is on. */
  private readonly direct: DirectReserve | undefined;
  private readonly health = new HealthImplementation(Object.fromEntries(SERVICE_NAMES.map((s) => [s, "NOT_SERVING" as const])));
  private ready = false;
  private stopped = false;

  constructor(private readonly options: GrpcServerOptions) {
    const channelOptions: ChannelOptions = {
      "grpc.max_receive_message_length": GRPC_MESSAGE_BYTES_MAX,
      "grpc.max_send_message_length": GRPC_MESSAGE_BYTES_MAX,
      // grpc-js tracks every call for channelz by default (a tracker of closures and two
      // Date.now() per call); nothing here serves channelz, so the tracking is pure cost.
      "grpc.enable_channelz": 0,
      ...edgeServerOptions(options.edge),
    };
    this.server = new Server(channelOptions);
    this.edge = new GrpcEdge({ config: options.edge, logger: options.logger, onDrop: options.onEdgeDrop });
    const gate = options.gate ?? OPEN_GATE;
    const unary = unaryFactory(options.logger, options.observe, () => this.ready, gate);
    if (options.edge.directReserve) {
      this.direct = new DirectReserve({ logger: options.logger, observe: options.observe, isReady: () => this.ready, gate }, reserveHandler(options.router));
    }
    this.server.addService(withSafeDecoding(inventoryServiceDefinition), asImplementation(inventoryService(options.router, unary)));
    this.server.addService(
      withSafeDecoding(OrderServiceService),
      asImplementation(orderService(options.router, unary, options.reservationGraceMs)),
    );
    this.server.addService(withSafeDecoding(ClusterServiceService), asImplementation(clusterService(options.cluster, unary)));
    this.server.addService(
      withSafeDecoding(AdminServiceService),
      adminService(options.backups, options.logger, options.observe, () => this.ready, gate),
    );
    this.health.addToServer(this.server);
    addReflection(this.server, gate);
  }

  /** Binds and returns the bound address (the port is chosen by the OS when given as 0). */
  start(): Promise<string> {
    return this.edge.start(this.server, this.options.credentials ?? listenerCredentials(this.options.tls), this.options.listen, this.direct);
  }

  /** Health turns SERVING and requests are accepted. */
  setReady(ready: boolean): void {
    this.ready = ready;
    for (const s of SERVICE_NAMES) this.health.setStatus(s, ready ? "SERVING" : "NOT_SERVING");
  }

  /** Closes the connections whose verified client certificate `revoked` names (edge.ts); returns how many. */
  closeConnectionsWhere(revoked: (certificate: PeerCertificate) => boolean): number {
    return this.edge.closeSessionsWhere(revoked);
  }

  /** Stops accepting calls and lets calls in flight finish, up to graceMs. Idempotent. */
  async stop(graceMs: number): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.setReady(false);
    this.edge.stop();
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  }
}
