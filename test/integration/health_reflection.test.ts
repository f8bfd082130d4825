// The standard services that grpcurl and grpc_health_probe rely on.

import path from "node:path";
import { credentials, loadPackageDefinition, type ServiceClientConstructor } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { expect } from "chai";
import { HEALTH_SERVING, healthStatus, REPO_ROOT, type ServerProcess, startServer } from "../support/server_process";

interface ReflectionResponse {
  listServicesResponse?: { service: { name: string }[] };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
}

describe("health and reflection (integration)", () => {
  let server: ServerProcess;

  before(async () => {
    server = await startServer();
  });

  after(async () => {
    await server?.stop();
  });

  it("reports SERVING for the whole server and for each service", async () => {
    expect(await healthStatus(server.addr)).to.equal(HEALTH_SERVING);
    expect(await healthStatus(server.addr, { service: "quartermaster.v1.InventoryService" })).to.equal(HEALTH_SERVING);
    expect(await healthStatus(server.addr, { service: "quartermaster.v1.OrderService" })).to.equal(HEALTH_SERVING);
  });

  it("lists both services and serves their descriptors through server reflection", async () => {
    const definition = loadSync(path.join(REPO_ROOT, "node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto"), {
      keepCase: false,
    });
    const pkg = loadPackageDefinition(definition) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: ServiceClientConstructor } } };
    };
    const client = new pkg.grpc.reflection.v1.ServerReflection(server.addr, credentials.createInsecure());
    try {
      const ask = (request: object): Promise<ReflectionResponse> =>
        new Promise((resolve, reject) => {
          const open = client.serverReflectionInfo as () => unknown;
          const stream = open.call(client) as NodeJS.ReadWriteStream & { end(): void };
          stream.on("data", (d: ReflectionResponse) => resolve(d));
          stream.on("error", reject);
          stream.write(request as never);
          stream.end();
        });
      const listed = await ask({ listServices: "" });
      const names = (listed.listServicesResponse?.service ?? []).map((s) => s.name);
      expect(names).to.include.members(["quartermaster.v1.InventoryService", "quartermaster.v1.OrderService"]);
      const file = await ask({ fileContainingSymbol: "quartermaster.v1.InventoryService" });
      const descriptors = file.fileDescriptorResponse?.fileDescriptorProto ?? [];
      expect(descriptors.length).to.be.greaterThan(0);
      expect(Buffer.concat(descriptors).toString("latin1")).to.contain("Reserve");
    } finally {
      client.close();
    }
  });
});
