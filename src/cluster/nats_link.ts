// Whether this node is connected to NATS now. Everything a cluster node does
// for a caller goes through NATS (the journal is JetStream, other owners are
// reached by request/reply), so while the connection is down an ask could
// only wait for its deadline and end with an unknown outcome. The router
// asks this first and refuses at once with UNAVAILABLE (reason
// NATS_DISCONNECTED), a definite "nothing was done" the caller can retry.
// The client keeps reconnecting for as long as the node runs.

import { Events, type NatsConnection } from "nats";
import type { Logger } from "pino";
import { QmError } from "../errors";

export class NatsLink {
  private connected = true;
  private watching: Promise<void> | undefined;
  private readonly listeners: ((connected: boolean) => void)[] = [];

  constructor(
    private readonly nc: NatsConnection,
    private readonly logger: Logger,
  ) {}

  /**
   * Follows the connection's status. Not awaited on stop: the status
   * iterator of a closed connection does not end, and nothing else would keep
   * the process alive while it waits.
   */
  start(): void {
    this.watching ??= (async () => {
      for await (const status of this.nc.status()) {
        if (status.type === Events.Disconnect && this.connected) {
          this.connected = false;
          this.logger.error({ server: status.data }, "disconnected from NATS: refusing asks with UNAVAILABLE until it reconnects");
          for (const listener of this.listeners) listener(false);
        } else if (status.type === Events.Reconnect && !this.connected) {
          this.connected = true;
          this.logger.warn({ server: status.data }, "reconnected to NATS");
          for (const listener of this.listeners) listener(true);
        }
      }
    })();
  }

  /** Called on every disconnect (false) and reconnect (true); registered at assembly, so the list is as short as the node's parts. */
  onChange(listener: (connected: boolean) => void): void {
    this.listeners.push(listener);
  }

  unavailable(): QmError | undefined {
    if (this.connected && !this.nc.isClosed()) return undefined;
    return new QmError("UNAVAILABLE", "this node is not connected to NATS (its journal and the other nodes are behind it); retry shortly", {
      reason: "NATS_DISCONNECTED",
    });
  }
}
