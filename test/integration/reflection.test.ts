// Server reflection as grpcurl uses it, with a reflection client written here
// (Debian has no grpcurl): list the services, fetch the file of every service
// and of every method's input and output type by file_containing_symbol, and
// of google.rpc.Status and its details; build a registry from nothing but what
// the server returned, and decode a real error's grpc-status-details-bin with it.

import path from "node:path";
import { create, createFileRegistry, fromBinary, type FileRegistry } from "@bufbuild/protobuf";
import {
  anyUnpack,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import { credentials, loadPackageDefinition, Metadata, type ServiceClientConstructor, type ServiceError, status as GrpcStatus } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { expect } from "chai";
import { call, type Clients, createClients, REPO_ROOT, type ServerProcess, startServer } from "../support/server_process";

interface ReflectionResponse {
  listServicesResponse?: { service: { name: string }[] };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}

interface DuplexLike {
  write(message: object): boolean;
  end(): void;
  on(event: "data", listener: (response: ReflectionResponse) => void): this;
  on(event: "error", listener: (error: Error) => void): this;
}

/** One ServerReflectionInfo stream; requests are answered in order, so each ask awaits the next response. */
class ReflectionSession {
  private readonly waiting: ((response: ReflectionResponse) => void)[] = [];
  private failure: Error | undefined;

  constructor(private readonly stream: DuplexLike) {
    stream.on("data", (response) => this.waiting.shift()?.(response));
    stream.on("error", (error) => {
      this.failure = error;
    });
  }

  ask(request: object): Promise<ReflectionResponse> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.stream.write(request);
    });
  }

  files(symbol: string): Promise<FileDescriptorProto[]> {
    return this.fileRequest({ fileContainingSymbol: symbol }, `file_containing_symbol ${symbol}`);
  }

  file(name: string): Promise<FileDescriptorProto[]> {
    return this.fileRequest({ fileByFilename: name }, `file_by_filename ${name}`);
  }

  private async fileRequest(request: object, what: string): Promise<FileDescriptorProto[]> {
    const response = await this.ask(request);
    expect(response.errorResponse, what).to.equal(undefined);
    const files = response.fileDescriptorResponse?.fileDescriptorProto ?? [];
    expect(files.length, what).to.be.greaterThan(0);
    return files.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
  }

  end(): void {
    this.stream.end();
  }
}

const EXPECTED_SERVICES = [
  "quartermaster.v1.InventoryService",
  "quartermaster.v1.OrderService",
  "quartermaster.v1.ClusterService",
  "quartermaster.v1.AdminService",
  "grpc.health.v1.Health",
];

function declares(file: FileDescriptorProto, fullName: string): boolean {
  const prefix = file.package === "" ? "" : `${file.package}.`;
  return (
    file.messageType.some((m) => prefix + m.name === fullName) ||
    file.service.some((s) => prefix + s.name === fullName) ||
    file.enumType.some((e) => prefix + e.name === fullName)
  );
}

/** Imports of the collected files that are not collected yet. */
function imports(files: Map<string, FileDescriptorProto>): string[] {
  return [...new Set([...files.values()].flatMap((f) => f.dependency))].filter((name) => !files.has(name));
}

/** The files, each after its imports, as a registry is built. */
function importsFirst(files: Map<string, FileDescriptorProto>): FileDescriptorProto[] {
  const out: FileDescriptorProto[] = [];
  const placed = new Set<string>();
  const place = (f: FileDescriptorProto): void => {
    if (placed.has(f.name)) return;
    placed.add(f.name);
    for (const name of f.dependency) {
      const dep = files.get(name);
      if (dep !== undefined) place(dep);
    }
    out.push(f);
  };
  for (const f of files.values()) place(f);
  return out;
}

for (const version of ["v1", "v1alpha"] as const) {
  describe(`server reflection ${version} (integration)`, () => {
    let server: ServerProcess;
    let c: Clients;
    let session: ReflectionSession;
    let close: () => void;

    before(async () => {
      server = await startServer();
      c = createClients(server.addr);
      const definition = loadSync(path.join(REPO_ROOT, `node_modules/@grpc/reflection/build/proto/grpc/reflection/${version}/reflection.proto`));
      const pkg = loadPackageDefinition(definition) as unknown as {
        grpc: { reflection: Record<string, { ServerReflection: ServiceClientConstructor }> };
      };
      const Client = pkg.grpc.reflection[version]?.ServerReflection;
      if (Client === undefined) throw new Error(`no ServerReflection in ${version}`);
      const client = new Client(server.addr, credentials.createInsecure());
      const open = client.serverReflectionInfo as () => DuplexLike;
      session = new ReflectionSession(open.call(client));
      close = () => {
        session.end();
        client.close();
      };
    });

    after(async () => {
      close?.();
      c?.close();
      await server?.stop();
    });

    it("lists every service, and resolves every method's types, the google.rpc details and their imports into a registry that decodes a real error", async () => {
      const listed = await session.ask({ listServices: "*" });
      const names = (listed.listServicesResponse?.service ?? []).map((s) => s.name);
      expect([...names].sort()).to.deep.equal([...EXPECTED_SERVICES].sort());

      const files = new Map<string, FileDescriptorProto>();
      const collect = async (symbol: string): Promise<void> => {
        const got = await session.files(symbol);
        expect(got.some((f) => declares(f, symbol)), `${symbol} declared in ${got.map((f) => f.name).join(", ")}`).to.equal(true);
        for (const f of got) files.set(f.name, f);
      };
      const methodTypes: string[] = [];
      for (const service of EXPECTED_SERVICES) {
        await collect(service);
        const file = [...files.values()].find((f) => declares(f, service));
        const shortName = service.slice(service.lastIndexOf(".") + 1);
        const methods = file?.service.find((s) => s.name === shortName)?.method ?? [];
        expect(methods.length, `methods of ${service}`).to.be.greaterThan(0);
        for (const m of methods) methodTypes.push(m.inputType.replace(/^\./, ""), m.outputType.replace(/^\./, ""));
      }
      for (const type of new Set(methodTypes)) await collect(type);
      for (const type of ["google.rpc.Status", "google.rpc.ErrorInfo", "google.rpc.BadRequest"]) await collect(type);

      // As grpcurl does, fetch by name every import not returned yet, until the set is closed.
      for (let missing = imports(files); missing.length > 0; missing = imports(files)) {
        for (const name of missing) for (const f of await session.file(name)) files.set(f.name, f);
      }
      const registry: FileRegistry = createFileRegistry(create(FileDescriptorSetSchema, { file: importsFirst(files) }));
      for (const type of methodTypes) expect(registry.getMessage(type), type).to.not.equal(undefined);
      expect(registry.getService("grpc.health.v1.Health")?.methods.map((m) => m.name)).to.include("Check");

      const error = await call(c.inventory, "getSku", { skuId: "not a valid id!" }).then(
        () => undefined,
        (e: ServiceError) => e,
      );
      expect(error?.code).to.equal(GrpcStatus.INVALID_ARGUMENT);
      const detailsBin = (error?.metadata ?? new Metadata()).get("grpc-status-details-bin")[0];
      expect(Buffer.isBuffer(detailsBin)).to.equal(true);
      const statusDesc = registry.getMessage("google.rpc.Status");
      if (statusDesc === undefined) throw new Error("google.rpc.Status not in the registry");
      const statusMessage = fromBinary(statusDesc, detailsBin as Buffer) as unknown as { code: number; details: Parameters<typeof anyUnpack>[0][] };
      expect(statusMessage.code).to.equal(GrpcStatus.INVALID_ARGUMENT);
      const unpacked = statusMessage.details.map((any) => anyUnpack(any, registry) as unknown as { $typeName: string } & Record<string, unknown>);
      const errorInfo = unpacked.find((d) => d?.$typeName === "google.rpc.ErrorInfo");
      expect(errorInfo?.reason).to.equal("INVALID_ARGUMENT");
      const badRequest = unpacked.find((d) => d?.$typeName === "google.rpc.BadRequest") as { fieldViolations?: { field: string }[] } | undefined;
      expect(badRequest?.fieldViolations?.map((v) => v.field)).to.deep.equal(["sku_id"]);
    });
  });
}
