// Tenant isolation end to end: a real server process with QM_AUTH_CONFIG,
// callers named by signed tokens whose `tenant` claim is their tenant.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { expect } from "chai";
import { AdjustmentReason } from "../../src/gen/quartermaster/v1/inventory";
import { OrderState } from "../../src/gen/quartermaster/v1/order";
import { expectFailure } from "../support/fixtures";
import { call, type CallOpts, type Clients, createClients, type ServerProcess, startServer } from "../support/server_process";
import { bearer, generateTestKey, signToken, writeAuthFiles } from "../support/security";

/** Code, message and every metadata entry but the HTTP date, as bytes: all a caller learns from a failure. */
function statusBytes(error: ServiceError): string {
  const metadata = Object.entries(error.metadata.getMap())
    .filter(([k]) => k !== "date")
    .map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString("base64") : String(v)])
    .sort(([a], [b]) => String(a).localeCompare(String(b)));
  return JSON.stringify({ code: error.code, details: error.details, metadata });
}

describe("Tenancy with QM_AUTH_CONFIG (integration, tokens name the tenant)", function () {
  this.timeout(60_000);
  let dir: string;
  let server: ServerProcess;
  let c: Clients;
  let acme: CallOpts;
  let globex: CallOpts;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "qm-tenancy-auth-"));
    const key = await generateTestKey("k1");
    const file = await writeAuthFiles(dir, { keys: [key] });
    const token = (sub: string, tenant: string): Promise<string> => signToken(key, { sub, tenant, roles: ["warehouse", "checkout"] });
    acme = { metadata: bearer(await token("acme-ops", "acme")) };
    globex = { metadata: bearer(await token("globex-ops", "globex")) };
    server = await startServer({ env: { QM_AUTH_CONFIG: file } });
    c = createClients(server.addr);
  });

  after(async () => {
    c?.close();
    await server?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  async function seed(skuId: string, onHand: number, who: CallOpts): Promise<void> {
    const sku = { skuId, title: skuId, priceMinor: 100, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: {}, updateMask: undefined };
    await call(c.inventory, "upsertSku", sku, who);
    const adjust = { skuId, locationId: "wh-1", delta: onHand, reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED, note: "", idempotencyKey: "" };
    await call(c.inventory, "adjustStock", adjust, who);
  }

  it("gives each tenant its own SKU of the same id, and the audit names the token's subject and tenant", async () => {
    await seed("mug", 10, acme);
    await seed("mug", 3, globex);
    expect((await call(c.inventory, "getSku", { skuId: "mug" }, acme)).onHand).to.equal(10);
    expect((await call(c.inventory, "getSku", { skuId: "mug" }, globex)).onHand).to.equal(3);
    const log = await call(c.inventory, "listAdjustments", { skuId: "mug", pageSize: 0, pageToken: "" }, globex);
    expect(log.adjustments.map((a) => [a.delta, a.subject, a.tenant])).to.deep.equal([[3, "globex-ops", "globex"]]);
  });

  it("answers another tenant's SKU and order as it answered before they existed (NOT_FOUND), and leaves them unchanged", async () => {
    const reserve = { skuId: "acme-only", reservationId: "r-1", quantity: 1, locationId: "", ttl: undefined };
    const ship = { orderId: "acme-o", shipmentId: "s-1", lines: [], carrier: "dhl", trackingNumber: "" };
    const probes: Record<string, () => Promise<unknown>> = {
      getSku: () => call(c.inventory, "getSku", { skuId: "acme-only" }, globex),
      reserve: () => call(c.inventory, "reserve", { ...reserve, reservationId: "steal" }, globex),
      adjustStock: () =>
        call(c.inventory, "adjustStock", { skuId: "acme-only", locationId: "wh-1", delta: -1, reason: AdjustmentReason.ADJUSTMENT_REASON_DAMAGED, note: "", idempotencyKey: "" }, globex),
      getOrder: () => call(c.order, "getOrder", { orderId: "acme-o" }, globex),
      confirmPayment: () => call(c.order, "confirmPayment", { orderId: "acme-o", paymentReference: "x" }, globex),
      createShipment: () => call(c.order, "createShipment", ship, globex),
    };
    const before = new Map<string, string>();
    for (const [name, probe] of Object.entries(probes)) before.set(name, statusBytes(await expectFailure(probe(), GrpcStatus.NOT_FOUND)));
    await seed("acme-only", 5, acme);
    await call(c.order, "createOrder", { orderId: "acme-o", customerId: "c", lines: [{ skuId: "acme-only", quantity: 2 }], paymentTimeout: undefined }, acme);
    for (const [name, probe] of Object.entries(probes)) {
      expect(statusBytes(await expectFailure(probe(), GrpcStatus.NOT_FOUND)), name).to.equal(before.get(name));
    }
    // A globex order for acme's SKU is rejected: its saga sees only globex's SKUs.
    const g = await call(c.order, "createOrder", { orderId: "g-o", customerId: "c", lines: [{ skuId: "acme-only", quantity: 1 }], paymentTimeout: undefined }, globex);
    expect([g.state, g.rejectionReasons.map((r) => r.reason)]).to.deep.equal([OrderState.ORDER_STATE_REJECTED, ["SKU_NOT_FOUND"]]);
    const sku = await call(c.inventory, "getSku", { skuId: "acme-only" }, acme);
    expect([sku.onHand, sku.reserved, sku.committed]).to.deep.equal([5, 2, 0]);
    const order = await call(c.order, "getOrder", { orderId: "acme-o" }, acme);
    expect([order.state, order.history.map((h) => h.subject)]).to.deep.equal([OrderState.ORDER_STATE_AWAITING_PAYMENT, ["acme-ops", "acme-ops"]]);
  });
});
