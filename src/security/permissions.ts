// Which permission each RPC needs: one table naming every method the server
// serves, by its full path, after gRPC's A43 per-method authorization. A path
// the table does not name is refused (fail closed), and a unit test fails when
// a service defines a method this table lacks, so a new RPC cannot ship open
// by accident. The permissions are coarse on purpose: roles in QM_AUTH_CONFIG
// group them, and an operator reasons about seven words, not twenty methods.

export const PERMISSIONS = [
  "inventory.read",
  "inventory.write",
  "inventory.reserve",
  "orders.read",
  "orders.write",
  "cluster.read",
  "admin",
] as const;

export type Permission = (typeof PERMISSIONS)[number];

/** Health checking answers anyone: load balancers and orchestrators probe without credentials. */
export const OPEN = "open";

export type MethodRule = Permission | typeof OPEN;

export const METHOD_PERMISSIONS: ReadonlyMap<string, MethodRule> = new Map<string, MethodRule>([
  ["/quartermaster.v1.InventoryService/GetSku", "inventory.read"],
  ["/quartermaster.v1.InventoryService/GetAvailability", "inventory.read"],
  ["/quartermaster.v1.InventoryService/ListAdjustments", "inventory.read"],
  ["/quartermaster.v1.InventoryService/GetReservation", "inventory.read"],
  ["/quartermaster.v1.InventoryService/UpsertSku", "inventory.write"],
  ["/quartermaster.v1.InventoryService/AdjustStock", "inventory.write"],
  ["/quartermaster.v1.InventoryService/Reserve", "inventory.reserve"],
  ["/quartermaster.v1.InventoryService/ReserveBatch", "inventory.reserve"],
  ["/quartermaster.v1.InventoryService/CommitReservation", "inventory.reserve"],
  ["/quartermaster.v1.InventoryService/ReleaseReservation", "inventory.reserve"],
  ["/quartermaster.v1.OrderService/GetOrder", "orders.read"],
  ["/quartermaster.v1.OrderService/CreateOrder", "orders.write"],
  ["/quartermaster.v1.OrderService/ConfirmPayment", "orders.write"],
  ["/quartermaster.v1.OrderService/CancelOrder", "orders.write"],
  ["/quartermaster.v1.OrderService/CreateShipment", "orders.write"],
  ["/quartermaster.v1.OrderService/RecordTrackingEvent", "orders.write"],
  ["/quartermaster.v1.OrderService/ReturnItems", "orders.write"],
  ["/quartermaster.v1.ClusterService/GetClusterStatus", "cluster.read"],
  ["/quartermaster.v1.ClusterService/LocateKey", "cluster.read"],
  ["/quartermaster.v1.ClusterService/DrainNode", "admin"],
  ["/quartermaster.v1.ClusterService/UndrainNode", "admin"],
  ["/quartermaster.v1.AdminService/Backup", "admin"],
  // Reflection lists every service and type: a map of the API, so it is not for anonymous callers.
  ["/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "cluster.read"],
  ["/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "cluster.read"],
  ["/grpc.health.v1.Health/Check", OPEN],
  ["/grpc.health.v1.Health/Watch", OPEN],
  ["/grpc.health.v1.Health/List", OPEN],
]);

/** The rule for a full method path; undefined for a path no table names, which the gate refuses. */
export function ruleFor(path: string): MethodRule | undefined {
  return METHOD_PERMISSIONS.get(path);
}

export function isPermission(name: string): name is Permission {
  return (PERMISSIONS as readonly string[]).includes(name);
}
