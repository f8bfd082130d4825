// `node dist/src/health_probe.js`: exits 0 when this machine's server answers
// the standard gRPC health check with SERVING, 1 otherwise. The container's
// HEALTHCHECK, for images that ship no grpc_health_probe binary. It reads
// QM_LISTEN like the server; a wildcard host is probed on loopback. Under
// TLS (QM_TLS_CERT) it speaks TLS to its own listener without verifying it:
// it dials this machine's server, and asks whether it is alive, not who it
// is. Under mutual TLS (QM_TLS_CLIENT_CA) it presents the node's own
// certificate, so that certificate must also be valid for client use and
// signed by the client CA (or use grpc_health_probe with its own flags).

import { BinaryReader, BinaryWriter } from "@bufbuild/protobuf/wire";
import { type ChannelCredentials, Client, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { ConfigError, type ListenerTlsConfig, loadConfig } from "./config";
import { HEALTH_PROBE_DEADLINE_MS } from "./limits";

const SERVING = 1;

function probeAddress(listen: string): string {
  const colon = listen.lastIndexOf(":");
  const host = listen.slice(0, colon);
  const port = listen.slice(colon + 1);
  if (host === "0.0.0.0") return `127.0.0.1:${port}`;
  if (host === "[::]") return `[::1]:${port}`;
  return listen;
}

function probeCredentials(tls: ListenerTlsConfig | undefined): ChannelCredentials {
  if (tls === undefined) return credentials.createInsecure();
  const own = tls.clientCa === undefined ? [null, null] as const : [tls.key.bytes, tls.cert.bytes] as const;
  return credentials.createSsl(null, own[0], own[1], { rejectUnauthorized: false });
}

function check(address: string, tls: ListenerTlsConfig | undefined): Promise<number> {
  const client = new Client(address, probeCredentials(tls));
  return new Promise<number>((resolve, reject) => {
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      // HealthCheckRequest { string service = 1 }: the empty service is the whole server.
      () => Buffer.from(new BinaryWriter().finish()),
      (bytes: Buffer) => {
        const reader = new BinaryReader(bytes);
        let status = 0;
        while (reader.pos < reader.len) {
          const [field, wireType] = reader.tag();
          if (field === 1 && wireType === 0) status = reader.int32();
          else reader.skip(wireType);
        }
        return status;
      },
      undefined,
      new Metadata(),
      { deadline: new Date(Date.now() + HEALTH_PROBE_DEADLINE_MS) },
      (error: ServiceError | null, status?: number) => (error === null ? resolve(status ?? 0) : reject(error)),
    );
  }).finally(() => client.close());
}

async function main(): Promise<void> {
  let listen: string;
  let tls: ListenerTlsConfig | undefined;
  try {
    // The probe needs only the address and the listener's TLS: a QM_AUTH_CONFIG edited (and refused by SIGHUP) on a running node must not fail its health check.
    ({ listen, tls } = loadConfig({ ...process.env, QM_AUTH_CONFIG: "" }));
  } catch (error) {
    process.stderr.write(`health probe: ${error instanceof ConfigError ? error.message : String(error)}\n`);
    process.exit(2);
  }
  const address = probeAddress(listen);
  try {
    // Node's DEP0123 (an IP address as the TLS server name) would otherwise fill the container's health log.
    process.noDeprecation = true;
    const status = await check(address, tls);
    process.stdout.write(`${address}: ${status === SERVING ? "SERVING" : `status ${status}`}\n`);
    process.exit(status === SERVING ? 0 : 1);
  } catch (error) {
    process.stdout.write(`${address}: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}

void main();
