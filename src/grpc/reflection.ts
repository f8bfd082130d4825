// Server reflection over every service and type the API uses. Reflection
// serves only the descriptors it is given: these are buf's, of every .proto
// under proto/ with its imports (src/gen/descriptor_set.ts, made by `npm run
// gen`), so our services, google.rpc.Status and its error details, and
// grpc.health.v1 (vendored under proto/ for this) are all there, with their
// real file names and imports. A new .proto under proto/ needs no change here.
//
// proto-loader's descriptors are not used: it merges files per package and
// drops their imports, so a client (grpcurl, a protobuf registry) cannot link them.

import type { Server, ServerDuplexStream, ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import type { EnumTypeDefinition, PackageDefinition } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { FILE_DESCRIPTOR_PROTOS } from "../gen/descriptor_set";
import type { CallGate } from "../security/call_gate";
import { toServiceError } from "./status_mapping";
import { admit } from "./unary";

/**
 * Reflection is a map of the whole API, so it passes the gate like every RPC
 * (permissions.ts: cluster.read). @grpc/reflection adds its own services; it
 * is handed a server whose addService wraps each handler in the gate.
 */
export function addReflection(server: Server, gate: CallGate): void {
  // @grpc/reflection reads only the fileDescriptorProtos of each definition it is given; the
  // smallest definition that carries them is an enum's.
  const all: EnumTypeDefinition = {
    format: "Protocol Buffer 3 EnumDescriptorProto",
    type: {} as EnumTypeDefinition["type"],
    fileDescriptorProtos: FILE_DESCRIPTOR_PROTOS.map((base64) => Buffer.from(base64, "base64")),
  };
  const definitions: PackageDefinition = { "": all };
  const gated = {
    addService(service: ServiceDefinition, implementation: UntypedServiceImplementation): void {
      server.addService(service, gatedStreams(implementation, gate));
    },
  };
  new ReflectionService(definitions).addToServer(gated as unknown as Server);
}

type DuplexHandler = (call: ServerDuplexStream<unknown, unknown>) => void;

/** Every handler of a streaming implementation runs only once the gate admits its call; a refusal ends the stream with the gate's status. */
function gatedStreams(implementation: UntypedServiceImplementation, gate: CallGate): UntypedServiceImplementation {
  const out: Record<string, DuplexHandler> = {};
  for (const [name, handler] of Object.entries(implementation)) {
    const run = handler as DuplexHandler;
    // Messages that arrive before the gate answers wait in the stream's buffer: its data listener is added by `run`.
    out[name] = (call) =>
      admit(
        gate,
        call,
        () => run(call),
        (error) => call.emit("error", toServiceError(error)),
      );
  }
  return out as unknown as UntypedServiceImplementation;
}
