// Server reflection over every service and type the API uses. Reflection
// serves only the descriptors it is given: these are buf's, of every .proto
// under proto/ with its imports (src/gen/descriptor_set.ts, made by `npm run
// gen`), so our services, google.rpc.Status and its error details, and
// grpc.health.v1 (vendored under proto/ for this) are all there, with their
// real file names and imports. A new .proto under proto/ needs no change here.
//
// proto-loader's descriptors are not used: it merges files per package and
// drops their imports, so a client (grpcurl, a protobuf registry) cannot link them.

import type { Server } from "@grpc/grpc-js";
import type { EnumTypeDefinition, PackageDefinition } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { FILE_DESCRIPTOR_PROTOS } from "../gen/descriptor_set";

export function addReflection(server: Server): void {
  // @grpc/reflection reads only the fileDescriptorProtos of each definition it is given; the
  // smallest definition that carries them is an enum's.
  const all: EnumTypeDefinition = {
    format: "Protocol Buffer 3 EnumDescriptorProto",
    type: {} as EnumTypeDefinition["type"],
    fileDescriptorProtos: FILE_DESCRIPTOR_PROTOS.map((base64) => Buffer.from(base64, "base64")),
  };
  const definitions: PackageDefinition = { "": all };
  new ReflectionService(definitions).addToServer(server);
}
