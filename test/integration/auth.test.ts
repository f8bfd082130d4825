// Authentication and per-method permissions against a real server process
// with QM_AUTH_CONFIG: every RPC with a token whose only permission is the
// method's (let through to its handler) and with a token holding every other
// permission (PERMISSION_DENIED naming the permission); each kind of bad token
// (UNAUTHENTICATED with its reason); a reader's Reserve changing nothing; key
// rotation by SIGHUP; a bad file at start (exit 2) and on reload (kept); qmctl's
// --token and exit codes. Keys are generated here (test/support/security.ts).

import { writeFile } from "node:fs/promises";
import path from "node:path";
import {
  type ClientDuplexStream,
  type ClientReadableStream,
  credentials,
  loadPackageDefinition,
  Metadata,
  type ServiceClientConstructor,
  status as GrpcStatus,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { expect } from "chai";
import { isServiceError } from "../../src/cli/rpc";
import { AdminServiceClient, BackupRequest } from "../../src/gen/quartermaster/v1/admin";
import { ActorKind, DrainNodeRequest, GetClusterStatusRequest, LocateKeyRequest, UndrainNodeRequest } from "../../src/gen/quartermaster/v1/cluster";
import {
  AdjustmentReason,
  AdjustStockRequest,
  CommitReservationRequest,
  GetAvailabilityRequest,
  GetReservationRequest,
  GetSkuRequest,
  ListAdjustmentsRequest,
  ReleaseReservationRequest,
  ReserveBatchRequest,
  ReserveRequest,
  UpsertSkuRequest,
} from "../../src/gen/quartermaster/v1/inventory";
import {
  CancelOrderRequest,
  ConfirmPaymentRequest,
  CreateOrderRequest,
  CreateShipmentRequest,
  GetOrderRequest,
  RecordTrackingEventRequest,
  ReturnItemsRequest,
} from "../../src/gen/quartermaster/v1/order";
import { type Permission, PERMISSIONS } from "../../src/security/permissions";
import {
  call,
  type Clients,
  createClients,
  decodeStatusDetails,
  HEALTH_SERVING,
  healthStatus,
  makeTempDir,
  REPO_ROOT,
  SERVER_MAIN,
  type ServerProcess,
  startServer,
} from "../support/server_process";
import { bearer, generateTestKey, ISSUE_ROLES, jwksText, signToken, type TestKey, type TokenClaims, writeAuthFiles } from "../support/security";
import { runProcess, runQmctl } from "../support/run_process";

/** How long a SIGHUP may take to show: the reload is synchronous, so this only bounds a stalled machine. */
const RELOAD_DEADLINE_MS = 10_000;
const POLL_INTERVAL_MS = 50;

/** A role per permission holding only it, and one holding all but it. */
function permissionRoles(): Record<string, readonly string[]> {
  const roles: Record<string, readonly string[]> = { ...ISSUE_ROLES };
  for (const p of PERMISSIONS) {
    roles[`only.${p}`] = [p];
    roles[`all-but.${p}`] = PERMISSIONS.filter((q) => q !== p);
  }
  return roles;
}

interface Outcome {
  readonly code: GrpcStatus;
  readonly reason: string | undefined;
  readonly permission: string | undefined;
  readonly details: string;
}

async function outcomeOf(promise: Promise<unknown>): Promise<Outcome> {
  try {
    await promise;
    return { code: GrpcStatus.OK, reason: undefined, permission: undefined, details: "" };
  } catch (error) {
    if (!isServiceError(error)) throw error;
    const info = decodeStatusDetails(error).errorInfo;
    return { code: error.code, reason: info?.reason, permission: info?.metadata["permission"], details: error.details };
  }
}

/** Reads a server stream to its end. */
function drain(stream: ClientReadableStream<unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.on("data", () => undefined);
    stream.on("error", reject);
    stream.on("end", resolve);
  });
}

interface ReflectionClient {
  serverReflectionInfo(metadata: Metadata): ClientDuplexStream<object, object>;
  close(): void;
}

function reflectionClient(addr: string, version: "v1" | "v1alpha"): ReflectionClient {
  const definition = loadSync(path.join(REPO_ROOT, `node_modules/@grpc/reflection/build/proto/grpc/reflection/${version}/reflection.proto`));
  const pkg = loadPackageDefinition(definition) as unknown as { grpc: { reflection: Record<string, { ServerReflection: ServiceClientConstructor }> } };
  const Client = pkg.grpc.reflection[version]?.ServerReflection;
  if (Client === undefined) throw new Error(`no ServerReflection in ${version}`);
  return new Client(addr, credentials.createInsecure()) as unknown as ReflectionClient;
}

/** One list_services exchange; resolves with the service names or rejects with the stream's status. */
function listServices(client: ReflectionClient, metadata: Metadata): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const stream = client.serverReflectionInfo(metadata);
    stream.on("data", (response: { listServicesResponse?: { service: { name: string }[] } }) => {
      resolve(response.listServicesResponse?.service.map((s) => s.name) ?? []);
      stream.end();
    });
    stream.on("error", reject);
    stream.write({ listServices: "" });
  });
}

type Invoke = (c: Clients, admin: AdminServiceClient, addr: string, metadata: Metadata) => Promise<unknown>;

/** Every RPC the server serves, with the permission issue 11 gives it (written out here, not read from the table). */
const RPCS: readonly [string, Permission, Invoke][] = [
  ["InventoryService/GetSku", "inventory.read", (c, _a, _r, m) => call(c.inventory, "getSku", GetSkuRequest.fromPartial({ skuId: "P-1" }), { metadata: m })],
  ["InventoryService/GetAvailability", "inventory.read", (c, _a, _r, m) => call(c.inventory, "getAvailability", GetAvailabilityRequest.fromPartial({ skuIds: ["P-1"] }), { metadata: m })],
  ["InventoryService/ListAdjustments", "inventory.read", (c, _a, _r, m) => call(c.inventory, "listAdjustments", ListAdjustmentsRequest.fromPartial({ skuId: "P-1" }), { metadata: m })],
  ["InventoryService/GetReservation", "inventory.read", (c, _a, _r, m) => call(c.inventory, "getReservation", GetReservationRequest.fromPartial({ skuId: "P-1", reservationId: "r-1" }), { metadata: m })],
  [
    "InventoryService/UpsertSku",
    "inventory.write",
    (c, _a, _r, m) => call(c.inventory, "upsertSku", UpsertSkuRequest.fromPartial({ skuId: "P-1", title: "Mug", currency: "USD", updateMask: ["title", "currency"] }), { metadata: m }),
  ],
  [
    "InventoryService/AdjustStock",
    "inventory.write",
    (c, _a, _r, m) =>
      call(c.inventory, "adjustStock", AdjustStockRequest.fromPartial({ skuId: "P-1", locationId: "WH1", delta: 5, reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED }), { metadata: m }),
  ],
  ["InventoryService/Reserve", "inventory.reserve", (c, _a, _r, m) => call(c.inventory, "reserve", ReserveRequest.fromPartial({ skuId: "P-1", reservationId: "r-1", quantity: 1 }), { metadata: m })],
  [
    "InventoryService/ReserveBatch",
    "inventory.reserve",
    (c, _a, _r, m) => call(c.inventory, "reserveBatch", ReserveBatchRequest.fromPartial({ items: [{ skuId: "P-1", reservationId: "r-2", quantity: 1 }] }), { metadata: m }),
  ],
  ["InventoryService/CommitReservation", "inventory.reserve", (c, _a, _r, m) => call(c.inventory, "commitReservation", CommitReservationRequest.fromPartial({ skuId: "P-1", reservationId: "r-1" }), { metadata: m })],
  ["InventoryService/ReleaseReservation", "inventory.reserve", (c, _a, _r, m) => call(c.inventory, "releaseReservation", ReleaseReservationRequest.fromPartial({ skuId: "P-1", reservationId: "r-2" }), { metadata: m })],
  ["OrderService/GetOrder", "orders.read", (c, _a, _r, m) => call(c.order, "getOrder", GetOrderRequest.fromPartial({ orderId: "o-1" }), { metadata: m })],
  [
    "OrderService/CreateOrder",
    "orders.write",
    (c, _a, _r, m) => call(c.order, "createOrder", CreateOrderRequest.fromPartial({ orderId: "o-1", customerId: "c-1", lines: [{ skuId: "P-1", quantity: 1 }] }), { metadata: m }),
  ],
  ["OrderService/ConfirmPayment", "orders.write", (c, _a, _r, m) => call(c.order, "confirmPayment", ConfirmPaymentRequest.fromPartial({ orderId: "o-1", paymentReference: "pay-1" }), { metadata: m })],
  ["OrderService/CreateShipment", "orders.write", (c, _a, _r, m) => call(c.order, "createShipment", CreateShipmentRequest.fromPartial({ orderId: "o-1", shipmentId: "s-1" }), { metadata: m })],
  ["OrderService/RecordTrackingEvent", "orders.write", (c, _a, _r, m) => call(c.order, "recordTrackingEvent", RecordTrackingEventRequest.fromPartial({ orderId: "o-1", shipmentId: "s-1" }), { metadata: m })],
  ["OrderService/ReturnItems", "orders.write", (c, _a, _r, m) => call(c.order, "returnItems", ReturnItemsRequest.fromPartial({ orderId: "o-1", returnId: "ret-1" }), { metadata: m })],
  ["OrderService/CancelOrder", "orders.write", (c, _a, _r, m) => call(c.order, "cancelOrder", CancelOrderRequest.fromPartial({ orderId: "o-1" }), { metadata: m })],
  ["ClusterService/GetClusterStatus", "cluster.read", (c, _a, _r, m) => call(c.cluster, "getClusterStatus", GetClusterStatusRequest.fromPartial({}), { metadata: m })],
  ["ClusterService/LocateKey", "cluster.read", (c, _a, _r, m) => call(c.cluster, "locateKey", LocateKeyRequest.fromPartial({ kind: ActorKind.ACTOR_KIND_SKU, id: "P-1" }), { metadata: m })],
  ["ClusterService/DrainNode", "admin", (c, _a, _r, m) => call(c.cluster, "drainNode", DrainNodeRequest.fromPartial({ nodeId: "nobody" }), { metadata: m })],
  ["ClusterService/UndrainNode", "admin", (c, _a, _r, m) => call(c.cluster, "undrainNode", UndrainNodeRequest.fromPartial({ nodeId: "nobody" }), { metadata: m })],
  ["AdminService/Backup", "admin", (_c, a, _r, m) => drain(a.backup(BackupRequest.fromPartial({}), m, { deadline: Date.now() + 30_000 }))],
  [
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "cluster.read",
    async (_c, _a, addr, m) => {
      const client = reflectionClient(addr, "v1");
      try {
        return await listServices(client, m);
      } finally {
        client.close();
      }
    },
  ],
  [
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "cluster.read",
    async (_c, _a, addr, m) => {
      const client = reflectionClient(addr, "v1alpha");
      try {
        return await listServices(client, m);
      } finally {
        client.close();
      }
    },
  ],
];

describe("authentication and permissions (integration)", () => {
  let dir: string;
  let key: TestKey;
  let server: ServerProcess;
  let c: Clients;
  let admin: AdminServiceClient;
  const tokenFor = (claims: TokenClaims, k = key): Promise<string> => signToken(k, claims);
  const as = async (roles: string[], subject = "tester"): Promise<Metadata> => bearer(await tokenFor({ sub: subject, tenant: "acme", roles }));

  before(async () => {
    dir = await makeTempDir("qm-auth-it-");
    key = await generateTestKey("k-1", "ES256");
    const file = await writeAuthFiles(dir, { keys: [key], roles: permissionRoles() });
    server = await startServer({ env: { QM_AUTH_CONFIG: file } });
    c = createClients(server.addr);
    admin = new AdminServiceClient(server.addr, credentials.createInsecure());
  });

  after(async () => {
    c?.close();
    admin?.close();
    await server?.stop();
  });

  it("answers health without credentials", async () => {
    expect(await healthStatus(server.addr)).to.equal(HEALTH_SERVING);
  });

  for (const [method, permission, invoke] of RPCS) {
    it(`${method}: let through with only ${permission}, PERMISSION_DENIED naming it with every other permission`, async function () {
      this.timeout(60_000);
      const allowed = await outcomeOf(invoke(c, admin, server.addr, await as([`only.${permission}`])));
      expect([GrpcStatus.UNAUTHENTICATED, GrpcStatus.PERMISSION_DENIED], `${method} with ${permission}: ${allowed.details}`).not.to.include(allowed.code);
      const denied = await outcomeOf(invoke(c, admin, server.addr, await as([`all-but.${permission}`])));
      expect(denied.code, `${method} without ${permission}: ${denied.details}`).to.equal(GrpcStatus.PERMISSION_DENIED);
      expect(denied.reason).to.equal("MISSING_PERMISSION");
      expect(denied.permission).to.equal(permission);
      expect(denied.details).to.contain(permission);
      const anonymous = await outcomeOf(invoke(c, admin, server.addr, new Metadata()));
      expect(anonymous.code).to.equal(GrpcStatus.UNAUTHENTICATED);
      expect(anonymous.reason).to.equal("TOKEN_MISSING");
    });
  }

  it("refuses a reader's Reserve with PERMISSION_DENIED and leaves the stock as it was", async () => {
    const warehouse = await as(["warehouse"], "scanner");
    await call(c.inventory, "upsertSku", UpsertSkuRequest.fromPartial({ skuId: "R-1", title: "Cup", currency: "USD", updateMask: ["title", "currency"] }), { metadata: warehouse });
    await call(
      c.inventory,
      "adjustStock",
      AdjustStockRequest.fromPartial({ skuId: "R-1", locationId: "WH1", delta: 10, reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED }),
      { metadata: warehouse },
    );
    const reader = await as(["reader"], "dashboard");
    const refused = await outcomeOf(call(c.inventory, "reserve", ReserveRequest.fromPartial({ skuId: "R-1", reservationId: "r-reader", quantity: 3 }), { metadata: reader }));
    expect(refused.code).to.equal(GrpcStatus.PERMISSION_DENIED);
    expect(refused.permission).to.equal("inventory.reserve");
    const after = await call(c.inventory, "getAvailability", GetAvailabilityRequest.fromPartial({ skuIds: ["R-1"] }), { metadata: reader });
    expect(after.items[0]).to.include({ onHand: 10, reserved: 0, available: 10 });
    const missing = await outcomeOf(call(c.inventory, "getReservation", GetReservationRequest.fromPartial({ skuId: "R-1", reservationId: "r-reader" }), { metadata: reader }));
    expect(missing.code).to.equal(GrpcStatus.NOT_FOUND);
    // The same call from a checkout caller does change the stock: the refusal above is the gate's, not the request's.
    await call(c.inventory, "reserve", ReserveRequest.fromPartial({ skuId: "R-1", reservationId: "r-checkout", quantity: 3 }), { metadata: await as(["checkout"], "checkout-svc") });
    const reserved = await call(c.inventory, "getAvailability", GetAvailabilityRequest.fromPartial({ skuIds: ["R-1"] }), { metadata: reader });
    expect(reserved.items[0]).to.include({ reserved: 3, available: 7 });
  });

  describe("bad tokens", () => {
    let stranger: TestKey;
    before(async () => {
      stranger = await generateTestKey("k-1", "ES256");
    });

    const cases: [string, () => Promise<Metadata>, string][] = [
      ["missing", async () => new Metadata(), "TOKEN_MISSING"],
      ["malformed", async () => bearer("eyJhbGciOiJFUzI1NiJ9.not-json.sig"), "TOKEN_MALFORMED"],
      ["signed by another key under the same kid", async () => bearer(await tokenFor({ sub: "x", tenant: "acme", roles: ["reader"] }, stranger)), "TOKEN_INVALID"],
      ["expired", async () => bearer(await tokenFor({ sub: "x", tenant: "acme", roles: ["reader"], expInS: -3600 })), "TOKEN_EXPIRED"],
      ["not yet valid", async () => bearer(await tokenFor({ sub: "x", tenant: "acme", roles: ["reader"], nbfInS: 3600 })), "TOKEN_NOT_YET_VALID"],
      ["from another issuer", async () => bearer(await tokenFor({ sub: "x", tenant: "acme", roles: ["reader"], iss: "https://other.example" })), "TOKEN_INVALID"],
      ["for another audience", async () => bearer(await tokenFor({ sub: "x", tenant: "acme", roles: ["reader"], aud: "billing" })), "TOKEN_INVALID"],
      ["with an unknown kid", async () => bearer(await tokenFor({ sub: "x", tenant: "acme", roles: ["reader"], kid: "k-0" })), "TOKEN_KEY_UNKNOWN"],
    ];
    for (const [what, metadata, reason] of cases) {
      it(`answers a token ${what} with UNAUTHENTICATED, reason ${reason}`, async () => {
        const outcome = await outcomeOf(call(c.inventory, "getSku", GetSkuRequest.fromPartial({ skuId: "P-1" }), { metadata: await metadata() }));
        expect(outcome.code).to.equal(GrpcStatus.UNAUTHENTICATED);
        expect(outcome.reason).to.equal(reason);
        expect(outcome.details).not.to.match(/id\.test\.example|k-1|stack|at /);
      });
    }
  });

  describe("qmctl", () => {
    it("sends --token or QM_TOKEN, and exits 7 and 8 with one line naming the reason or the permission", async () => {
      const reader = await tokenFor({ sub: "cli", tenant: "acme", roles: ["reader"] });
      const ok = await runQmctl(["--addr", server.addr, "sku", "get", "R-1", "--json"], { QM_TOKEN: reader });
      expect(ok.code, ok.stderr).to.equal(0);
      expect(JSON.parse(ok.stdout)).to.have.property("skuId", "R-1");
      const flag = await runQmctl(["--addr", server.addr, "--token", reader, "sku", "get", "R-1"]);
      expect(flag.code, flag.stderr).to.equal(0);

      const none = await runQmctl(["--addr", server.addr, "sku", "get", "R-1"]);
      expect(none.code).to.equal(7);
      expect(none.stderr).to.equal("error: UNAUTHENTICATED (TOKEN_MISSING): no credentials: send authorization: Bearer <token> (pass --token or set QM_TOKEN)\n");
      const expired = await runQmctl(["--addr", server.addr, "sku", "get", "R-1"], { QM_TOKEN: await tokenFor({ sub: "cli", tenant: "acme", expInS: -3600 }) });
      expect(expired.code).to.equal(7);
      expect(expired.stderr).to.equal("error: UNAUTHENTICATED (TOKEN_EXPIRED): the token has expired\n");
      const denied = await runQmctl(["--addr", server.addr, "reserve", "--sku", "R-1", "--qty", "1", "--id", "r-cli"], { QM_TOKEN: reader });
      expect(denied.code).to.equal(8);
      expect(denied.stderr).to.equal(
        "error: PERMISSION_DENIED (needs inventory.reserve): InventoryService/Reserve needs the permission inventory.reserve, which no role of this caller grants\n",
      );
    });
  });
});

describe("QM_AUTH_CONFIG reload and start-up (integration)", () => {
  let dir: string;
  let server: ServerProcess | undefined;

  beforeEach(async () => {
    dir = await makeTempDir("qm-auth-reload-");
  });

  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });

  it("takes a rotated key set on SIGHUP, and keeps it when a later file is bad", async () => {
    const oldKey = await generateTestKey("2026-01", "RS256");
    const file = await writeAuthFiles(dir, { keys: [oldKey] });
    server = await startServer({ env: { QM_AUTH_CONFIG: file } });
    const running = server;
    const clients = createClients(running.addr);
    try {
      const getSku = async (k: TestKey): Promise<Outcome> =>
        outcomeOf(call(clients.inventory, "getSku", GetSkuRequest.fromPartial({ skuId: "X" }), { metadata: bearer(await signToken(k, { sub: "s", tenant: "t", roles: ["reader"] })) }));
      expect((await getSku(oldKey)).code).to.equal(GrpcStatus.NOT_FOUND);

      const newKey = await generateTestKey("2026-02", "ES256");
      await writeFile(path.join(dir, "jwks.json"), jwksText([newKey]));
      process.kill(running.pid, "SIGHUP");
      await until(async () => (await getSku(newKey)).code === GrpcStatus.NOT_FOUND, "the new key to be accepted");
      const old = await getSku(oldKey);
      expect(old.code).to.equal(GrpcStatus.UNAUTHENTICATED);
      expect(old.reason).to.equal("TOKEN_KEY_UNKNOWN");

      await writeFile(file, "{ not json");
      process.kill(running.pid, "SIGHUP");
      await until(async () => running.logs().includes("QM_AUTH_CONFIG reload failed: keeping the previous config"), "the failed reload to be logged");
      expect(running.logs()).to.contain("the file is not valid JSON");
      expect((await getSku(newKey)).code).to.equal(GrpcStatus.NOT_FOUND);
    } finally {
      clients.close();
    }
  });

  it("revokes by jti and by subject on SIGHUP without a restart: revoked tokens get UNAUTHENTICATED and change no stock, newer ones still work", async () => {
    const key = await generateTestKey("k-rev", "ES256");
    const file = await writeAuthFiles(dir, { keys: [key] });
    server = await startServer({ env: { QM_AUTH_CONFIG: file, QM_LOG_LEVEL: "info" } });
    const running = server;
    const clients = createClients(running.addr);
    try {
      const nowS = Math.floor(Date.now() / 1000);
      const metadataOf = async (claims: TokenClaims): Promise<Metadata> => bearer(await signToken(key, { tenant: "acme", ...claims }));
      const warehouse = await metadataOf({ sub: "scanner", roles: ["warehouse"], jti: "scanner-1" });
      const leaked = await metadataOf({ sub: "checkout-svc", roles: ["checkout"], jti: "leaked-7" });
      const oldCheckout = await metadataOf({ sub: "cashier", roles: ["checkout"], jti: "cashier-old", iat: nowS - 120 });
      const reserve = (metadata: Metadata, reservationId: string): Promise<Outcome> =>
        outcomeOf(call(clients.inventory, "reserve", ReserveRequest.fromPartial({ skuId: "REV-1", reservationId, quantity: 2 }), { metadata }));
      const available = async (): Promise<number | undefined> =>
        (await call(clients.inventory, "getAvailability", GetAvailabilityRequest.fromPartial({ skuIds: ["REV-1"] }), { metadata: warehouse })).items[0]?.available;

      await call(clients.inventory, "upsertSku", UpsertSkuRequest.fromPartial({ skuId: "REV-1", title: "Cup", currency: "USD", updateMask: ["title", "currency"] }), { metadata: warehouse });
      await call(clients.inventory, "adjustStock", AdjustStockRequest.fromPartial({ skuId: "REV-1", locationId: "WH1", delta: 10, reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED }), {
        metadata: warehouse,
      });
      // Both tokens work, and are remembered by the node, before the revocation.
      expect((await reserve(leaked, "r-1")).code).to.equal(GrpcStatus.OK);
      expect((await reserve(oldCheckout, "r-2")).code).to.equal(GrpcStatus.OK);
      expect(await available()).to.equal(6);

      await writeAuthFiles(dir, {
        keys: [key],
        revoked: [
          { jti: "leaked-7", note: "pasted into a chat" },
          { subject: "cashier", issued_before: new Date((nowS - 60) * 1000).toISOString() },
        ],
      });
      process.kill(running.pid, "SIGHUP");
      // Polled with a read, so that no Reserve lands before the reload does.
      const read = (metadata: Metadata): Promise<Outcome> => outcomeOf(call(clients.inventory, "getSku", GetSkuRequest.fromPartial({ skuId: "REV-1" }), { metadata }));
      await until(async () => (await read(leaked)).code === GrpcStatus.UNAUTHENTICATED, "the jti revocation to take effect");
      const byJti = await reserve(leaked, "r-4");
      expect(byJti).to.deep.include({ code: GrpcStatus.UNAUTHENTICATED, reason: "TOKEN_REVOKED", details: "the token was revoked (its jti is on the revoked list)" });
      const bySubject = await reserve(oldCheckout, "r-5");
      expect(bySubject).to.deep.include({ code: GrpcStatus.UNAUTHENTICATED, reason: "TOKEN_REVOKED" });
      expect(bySubject.details).to.equal("the token was revoked: its subject's tokens issued before the revocation time are refused");
      expect(await available()).to.equal(6);

      // Issued after the subject's time, or of another jti: accepted.
      expect((await reserve(await metadataOf({ sub: "cashier", roles: ["checkout"], jti: "cashier-new" }), "r-6")).code).to.equal(GrpcStatus.OK);
      expect((await reserve(await metadataOf({ sub: "checkout-svc", roles: ["checkout"], jti: "reissued-8" }), "r-7")).code).to.equal(GrpcStatus.OK);
      expect(await available()).to.equal(2);
      expect(running.logs()).to.match(/"revoked":\{"tokenIds":1,"subjects":1\}.*"msg":"QM_AUTH_CONFIG reloaded"/);
    } finally {
      clients.close();
    }
  });

  it("refuses to start with a bad file: exit 2 and the JSON path of the mistake", async () => {
    const key = await generateTestKey("k", "ES256");
    const file = await writeAuthFiles(dir, { keys: [key], roles: { reader: ["inventory.read", "orders.raed"] } });
    const exit = await runProcess([process.execPath, SERVER_MAIN], { QM_AUTH_CONFIG: file, QM_DATA_DIR: dir, QM_LISTEN: "127.0.0.1:0", QM_METRICS_LISTEN: "" });
    expect(exit.code).to.equal(2);
    expect(exit.stderr).to.equal(`quartermaster: QM_AUTH_CONFIG=${file}: roles.reader[1]: unknown permission "orders.raed" (known: ${PERMISSIONS.join(", ")})\n`);
  });
});

async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + RELOAD_DEADLINE_MS;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
  throw new Error(`timed out after ${RELOAD_DEADLINE_MS} ms waiting for ${what}`);
}

