// The permission table against what the server really serves: every method of
// every service in the descriptor set (proto/), every handler the GrpcServer
// registers (reflection's included), and the table the issue asks for, written
// out again here so that a change to the table is a deliberate change to this
// test too.

import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { expect } from "chai";
import pino from "pino";
import type { ActorRouter } from "../../src/actors/runtime/behavior";
import type { ClusterView } from "../../src/cluster/cluster_view";
import { loadConfig } from "../../src/config";
import { FILE_DESCRIPTOR_PROTOS } from "../../src/gen/descriptor_set";
import { AdminServiceService } from "../../src/gen/quartermaster/v1/admin";
import { ClusterServiceService } from "../../src/gen/quartermaster/v1/cluster";
import { InventoryServiceService } from "../../src/gen/quartermaster/v1/inventory";
import { OrderServiceService } from "../../src/gen/quartermaster/v1/order";
import { GrpcServer } from "../../src/grpc/server";
import { METHOD_PERMISSIONS, OPEN, PERMISSIONS } from "../../src/security/permissions";

/** Issue 11's table, by method. */
const EXPECTED: Readonly<Record<string, string>> = {
  "/quartermaster.v1.InventoryService/GetSku": "inventory.read",
  "/quartermaster.v1.InventoryService/GetAvailability": "inventory.read",
  "/quartermaster.v1.InventoryService/ListAdjustments": "inventory.read",
  "/quartermaster.v1.InventoryService/GetReservation": "inventory.read",
  "/quartermaster.v1.InventoryService/UpsertSku": "inventory.write",
  "/quartermaster.v1.InventoryService/AdjustStock": "inventory.write",
  "/quartermaster.v1.InventoryService/Reserve": "inventory.reserve",
  "/quartermaster.v1.InventoryService/ReserveBatch": "inventory.reserve",
  "/quartermaster.v1.InventoryService/CommitReservation": "inventory.reserve",
  "/quartermaster.v1.InventoryService/ReleaseReservation": "inventory.reserve",
  "/quartermaster.v1.OrderService/GetOrder": "orders.read",
  "/quartermaster.v1.OrderService/CreateOrder": "orders.write",
  "/quartermaster.v1.OrderService/ConfirmPayment": "orders.write",
  "/quartermaster.v1.OrderService/CancelOrder": "orders.write",
  "/quartermaster.v1.OrderService/CreateShipment": "orders.write",
  "/quartermaster.v1.OrderService/RecordTrackingEvent": "orders.write",
  "/quartermaster.v1.OrderService/ReturnItems": "orders.write",
  "/quartermaster.v1.ClusterService/GetClusterStatus": "cluster.read",
  "/quartermaster.v1.ClusterService/LocateKey": "cluster.read",
  "/quartermaster.v1.ClusterService/DrainNode": "admin",
  "/quartermaster.v1.ClusterService/UndrainNode": "admin",
  "/quartermaster.v1.AdminService/Backup": "admin",
  "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": "cluster.read",
  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": "cluster.read",
  "/grpc.health.v1.Health/Check": "open",
  "/grpc.health.v1.Health/Watch": "open",
  "/grpc.health.v1.Health/List": "open",
};

/** Every method of every service in the descriptor set the build serves reflection from. */
function describedMethods(): string[] {
  return FILE_DESCRIPTOR_PROTOS.flatMap((base64) => {
    const file = fromBinary(FileDescriptorProtoSchema, Buffer.from(base64, "base64"));
    return file.service.flatMap((s) => s.method.map((m) => `/${file.package}.${s.name}/${m.name}`));
  });
}

/** The paths a real GrpcServer registers (grpc-js keeps them in a private map; nothing is bound or started). */
function registeredPaths(): string[] {
  const server = new GrpcServer({
    listen: "127.0.0.1:0",
    router: {} as ActorRouter,
    cluster: {} as ClusterView,
    logger: pino({ level: "silent" }),
    observe: () => undefined,
    reservationGraceMs: 0,
    edge: loadConfig({}).grpcEdge,
  });
  const inner = (server as unknown as { server: { handlers: Map<string, unknown> } }).server;
  return [...inner.handlers.keys()];
}

describe("permission table", () => {
  it("names every method of every service in the descriptor set", () => {
    const methods = describedMethods();
    expect(methods).to.include("/quartermaster.v1.InventoryService/Reserve");
    expect(methods.filter((m) => !METHOD_PERMISSIONS.has(m)), "methods with no permission").to.deep.equal([]);
  });

  it("names every handler the server registers, reflection's included", () => {
    const paths = registeredPaths();
    expect(paths).to.include.members(["/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "/quartermaster.v1.AdminService/Backup"]);
    expect(paths.filter((p) => !METHOD_PERMISSIONS.has(p)), "handlers with no permission").to.deep.equal([]);
  });

  it("names every method of the generated service definitions", () => {
    const generated = [InventoryServiceService, OrderServiceService, ClusterServiceService, AdminServiceService].flatMap((d) =>
      Object.values(d).map((m) => m.path),
    );
    expect(generated.filter((p) => !METHOD_PERMISSIONS.has(p))).to.deep.equal([]);
  });

  it("is exactly the issue's table, with no stale entries and only known permissions", () => {
    expect(Object.fromEntries(METHOD_PERMISSIONS)).to.deep.equal(EXPECTED);
    const served = new Set([...describedMethods(), ...registeredPaths()]);
    expect([...METHOD_PERMISSIONS.keys()].filter((p) => !served.has(p)), "entries for methods nobody serves").to.deep.equal([]);
    for (const rule of METHOD_PERMISSIONS.values()) expect([...PERMISSIONS, OPEN]).to.include(rule);
  });
});
