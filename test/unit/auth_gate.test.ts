import { writeFile } from "node:fs/promises";
import path from "node:path";
import { Writable } from "node:stream";
import { Metadata } from "@grpc/grpc-js";
import { expect } from "chai";
import { ManualClock } from "../../src/clock";
import { QmError } from "../../src/errors";
import { AUTH_REVOKED_MAX, TOKEN_CLOCK_SKEW_S } from "../../src/limits";
import { createLogger } from "../../src/observability/logger";
import { loadAuthConfig } from "../../src/security/auth_config";
import { AuthGate } from "../../src/security/auth_gate";
import type { AuthContext, GateCall } from "../../src/security/call_gate";
import type { Caller } from "../../src/security/caller";
import { TokenCache, TokenVerifier } from "../../src/security/tokens";
import { makeTempDir } from "../support/server_process";
import { bearer, generateTestKey, jwksText, signToken, type TestKey, type TokenClaims, writeAuthFiles } from "../support/security";

const RESERVE = "/quartermaster.v1.InventoryService/Reserve";
const GET_SKU = "/quartermaster.v1.InventoryService/GetSku";

function gateCall(callPath: string, metadata = new Metadata(), auth: AuthContext = {}): GateCall {
  return { path: callPath, metadata, authContext: () => auth };
}

/** The QmError the gate refuses with, whether it throws or rejects. */
async function refusal(gate: AuthGate, call: GateCall): Promise<QmError> {
  try {
    await gate.admit(call);
  } catch (error) {
    expect(error).to.be.instanceOf(QmError);
    return error as QmError;
  }
  return expect.fail("the gate admitted the call");
}

/** A verified client certificate of `cn`, valid from `validFrom` (as node formats it: "Dec  2 04:30:00 2026 GMT"); default long ago. */
function certificate(cn: string, validFrom = new Date(Date.UTC(2020, 0, 1))): AuthContext {
  const [, month, day, year, time] = validFrom.toUTCString().split(" ");
  const valid_from = `${month} ${(day ?? "").replace(/^0/, " ")} ${time} ${year} GMT`;
  return { transportSecurityType: "ssl", sslPeerCertificate: { subject: { CN: cn }, valid_from } } as unknown as AuthContext;
}

describe("AuthGate", () => {
  const clock = new ManualClock(1_800_000_000_000);
  const nowS = (): number => Math.floor(clock.nowMs() / 1000);
  let dir: string;
  let rsa: TestKey;
  let ec: TestKey;
  let stranger: TestKey;
  let logLines: string[];
  let gate: AuthGate;

  before(async () => {
    [rsa, ec, stranger] = await Promise.all([generateTestKey("rsa-1", "RS256"), generateTestKey("ec-1", "ES256"), generateTestKey("rsa-1", "RS256")]);
  });

  beforeEach(async () => {
    dir = await makeTempDir("qm-auth-gate-");
    const file = await writeAuthFiles(dir, {
      keys: [rsa, ec],
      principals: [
        { subject: "checkout-svc", tenant: "acme", roles: ["checkout"] },
        { subject: "scanner", tenant: "acme", roles: ["warehouse"] },
        { subject: "roles-only", roles: ["reader"] },
      ],
    });
    logLines = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        logLines.push(chunk.toString("utf8"));
        done();
      },
    });
    gate = new AuthGate({ config: loadAuthConfig(file), clock, logger: createLogger("info", sink) });
  });

  const token = (key: TestKey, claims: TokenClaims): Promise<string> => signToken(key, { nowS: nowS(), ...claims });
  const admitWith = async (key: TestKey, claims: TokenClaims, callPath = GET_SKU): Promise<Caller> =>
    gate.admit(gateCall(callPath, bearer(await token(key, claims))));
  const refusedWith = async (key: TestKey, claims: TokenClaims, callPath = GET_SKU): Promise<QmError> =>
    refusal(gate, gateCall(callPath, bearer(await token(key, claims))));

  it("names the caller from an RS256 or an ES256 token: sub, tenant claim, roles claim", async () => {
    for (const key of [rsa, ec]) {
      const caller = await admitWith(key, { sub: "web-42", tenant: "globex", roles: ["checkout"] }, RESERVE);
      expect(caller).to.deep.equal({ subject: "web-42", tenant: "globex", roles: ["checkout"], authenticated: true });
    }
  });

  const tokenCases: [string, () => Promise<QmError>, string, RegExp][] = [
    ["no credentials", () => refusal(gate, gateCall(GET_SKU)), "TOKEN_MISSING", /no credentials/],
    ["a Basic credential", () => refusal(gate, gateCall(GET_SKU, metadataOf("Basic dXNlcjpwYXNz"))), "TOKEN_MALFORMED", /Bearer/],
    ["a bearer value that is not a JWT", () => refusal(gate, gateCall(GET_SKU, bearer("not-a-jwt"))), "TOKEN_MALFORMED", /not a JWT/],
    ["a bad signature (another key under a known kid)", () => refusedWith(stranger, { sub: "x", tenant: "t" }), "TOKEN_INVALID", /signature does not verify/],
    ["an expired token", () => refusedWith(rsa, { sub: "x", tenant: "t", expInS: -(TOKEN_CLOCK_SKEW_S + 1) }), "TOKEN_EXPIRED", /expired/],
    ["a token not valid yet", () => refusedWith(rsa, { sub: "x", tenant: "t", nbfInS: TOKEN_CLOCK_SKEW_S + 60 }), "TOKEN_NOT_YET_VALID", /not valid yet/],
    ["another issuer", () => refusedWith(rsa, { sub: "x", tenant: "t", iss: "https://evil.example" }), "TOKEN_INVALID", /issuer is not accepted$/],
    ["another audience", () => refusedWith(rsa, { sub: "x", tenant: "t", aud: "billing" }), "TOKEN_INVALID", /audience is not accepted$/],
    ["an unknown kid", () => refusedWith(rsa, { sub: "x", tenant: "t", kid: "rsa-0" }), "TOKEN_KEY_UNKNOWN", /kid/],
    ["no kid", () => refusedWith(rsa, { sub: "x", tenant: "t", kid: null }), "TOKEN_INVALID", /no kid/],
    ["no sub", () => refusedWith(rsa, { tenant: "t" }), "TOKEN_INVALID", /sub claim/],
    ["no tenant and no principals entry", () => refusedWith(rsa, { sub: "x" }), "TOKEN_INVALID", /no tenant/],
    ["a tenant the principals entry contradicts", () => refusedWith(rsa, { sub: "checkout-svc", tenant: "globex" }), "TOKEN_INVALID", /differs/],
    ["a tenant with a slash", () => refusedWith(rsa, { sub: "x", tenant: "a/b" }), "TOKEN_INVALID", /tenant claim/],
    ["roles that are not an array", () => refusedWith(rsa, { sub: "x", tenant: "t", roles: "admin" }), "TOKEN_INVALID", /roles claim/],
  ];
  for (const [what, refuse, reason, message] of tokenCases) {
    it(`refuses ${what} with UNAUTHENTICATED, reason ${reason}, and nothing of the config in the message`, async () => {
      const error = await refuse();
      expect(error.code).to.equal("UNAUTHENTICATED");
      expect(error.metadata).to.deep.equal({ reason });
      expect(error.message).to.match(message);
      expect(error.message).not.to.match(/id\.test\.example|quartermaster|rsa-1|ec-1/);
    });
  }

  it("accepts exp and nbf that are off by less than the clock skew", async () => {
    expect((await admitWith(rsa, { sub: "x", tenant: "t", roles: ["reader"], expInS: -(TOKEN_CLOCK_SKEW_S - 5) })).subject).to.equal("x");
    expect((await admitWith(rsa, { sub: "y", tenant: "t", roles: ["reader"], nbfInS: TOKEN_CLOCK_SKEW_S - 5 })).subject).to.equal("y");
  });

  it("ignores role names the config does not define, and unites the token's roles with the principals entry's", async () => {
    const caller = await admitWith(rsa, { sub: "scanner", roles: ["reader", "superuser"] });
    expect(caller).to.deep.equal({ subject: "scanner", tenant: "acme", roles: ["reader", "warehouse"], authenticated: true });
    const roleless = await admitWith(rsa, { sub: "roles-only", tenant: "initech" });
    expect(roleless.roles).to.deep.equal(["reader"]);
  });

  it("refuses a caller without the method's permission with PERMISSION_DENIED naming the permission", async () => {
    const error = await refusedWith(rsa, { sub: "web", tenant: "t", roles: ["reader", "superuser"] }, RESERVE);
    expect(error.code).to.equal("PERMISSION_DENIED");
    expect(error.metadata).to.deep.equal({ reason: "MISSING_PERMISSION", permission: "inventory.reserve" });
    expect(error.message).to.equal("InventoryService/Reserve needs the permission inventory.reserve, which no role of this caller grants");
  });

  it("answers a repeated token from its cache without a promise, until the token expires", async () => {
    const jwt = await token(ec, { sub: "web", tenant: "t", roles: ["reader"], expInS: 60 });
    const first = gate.admit(gateCall(GET_SKU, bearer(jwt)));
    expect(first).to.be.instanceOf(Promise);
    await first;
    const second = gate.admit(gateCall(GET_SKU, bearer(jwt)));
    expect(second).not.to.be.instanceOf(Promise);
    expect((second as Caller).subject).to.equal("web");
    // The cache answers permission checks too: the cached caller is still refused what its roles do not grant.
    expect((await refusal(gate, gateCall(RESERVE, bearer(jwt)))).code).to.equal("PERMISSION_DENIED");
    clock.advance((60 + TOKEN_CLOCK_SKEW_S) * 1000);
    expect((await refusal(gate, gateCall(GET_SKU, bearer(jwt)))).metadata["reason"]).to.equal("TOKEN_EXPIRED");
  });

  it("verifies a token once for many calls that arrive with it before the first check is done", async () => {
    const jwt = await token(ec, { sub: "burst", tenant: "t", roles: ["reader"] });
    const original = TokenVerifier.prototype.verify;
    let verifications = 0;
    TokenVerifier.prototype.verify = function (this: TokenVerifier, t: string) {
      verifications++;
      return original.call(this, t);
    };
    try {
      const callers = await Promise.all(Array.from({ length: 20 }, () => gate.admit(gateCall(GET_SKU, bearer(jwt)))));
      expect(callers.map((c) => c.subject)).to.deep.equal(Array(20).fill("burst"));
      expect(verifications).to.equal(1);
    } finally {
      TokenVerifier.prototype.verify = original;
    }
  });

  it("names a certificate caller by its principals entry, refuses an unknown one, and lets a token win over a certificate", async () => {
    expect(await gate.admit(gateCall(RESERVE, new Metadata(), certificate("checkout-svc")))).to.deep.equal({
      subject: "checkout-svc",
      tenant: "acme",
      roles: ["checkout"],
      authenticated: true,
    });
    const unknown = await refusal(gate, gateCall(GET_SKU, new Metadata(), certificate("intruder")));
    expect(unknown.metadata).to.deep.equal({ reason: "PRINCIPAL_UNKNOWN" });
    // An entry without a tenant names token callers' roles only: no tenant, no certificate login.
    expect((await refusal(gate, gateCall(GET_SKU, new Metadata(), certificate("roles-only")))).metadata["reason"]).to.equal("PRINCIPAL_UNKNOWN");
    const jwt = await token(rsa, { sub: "web", tenant: "t", roles: ["reader"] });
    expect((await gate.admit(gateCall(GET_SKU, bearer(jwt), certificate("checkout-svc")))).subject).to.equal("web");
  });

  it("lets health through without credentials and refuses a method the table does not name", async () => {
    expect((await gate.admit(gateCall("/grpc.health.v1.Health/Check"))).authenticated).to.equal(false);
    const jwt = await token(rsa, { sub: "web", tenant: "t", roles: ["operator"] });
    const error = await refusal(gate, gateCall("/quartermaster.v1.InventoryService/Teleport", bearer(jwt)));
    expect(error.code).to.equal("PERMISSION_DENIED");
    expect(error.metadata["reason"]).to.equal("METHOD_NOT_IN_PERMISSION_TABLE");
  });

  it("takes a rotated key set on reload, forgetting remembered tokens, and keeps the old config when the new file is bad", async () => {
    const oldJwt = await token(rsa, { sub: "web", tenant: "t", roles: ["reader"] });
    await gate.admit(gateCall(GET_SKU, bearer(oldJwt)));
    const rotated = await generateTestKey("rsa-2", "RS256");
    await writeFile(path.join(dir, "jwks.json"), jwksText([rotated]));
    expect(gate.reload()).to.equal(true);
    expect((await refusal(gate, gateCall(GET_SKU, bearer(oldJwt)))).metadata["reason"]).to.equal("TOKEN_KEY_UNKNOWN");
    const newJwt = await token(rotated, { sub: "web", tenant: "t", roles: ["reader"] });
    expect((await gate.admit(gateCall(GET_SKU, bearer(newJwt)))).subject).to.equal("web");

    await writeFile(path.join(dir, "auth.json"), JSON.stringify({ roles: { reader: ["inventory.raed"] } }));
    expect(gate.reload()).to.equal(false);
    expect((await gate.admit(gateCall(GET_SKU, bearer(newJwt)))).subject).to.equal("web");
    const failed = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l["msg"] === "QM_AUTH_CONFIG reload failed: keeping the previous config");
    expect(failed?.["error"]).to.equal('roles.reader[0]: unknown permission "inventory.raed" (known: inventory.read, inventory.write, inventory.reserve, orders.read, orders.write, cluster.read, admin)');
    expect(logLines.join("")).not.to.contain(newJwt);
  });

  describe("revocation", () => {
    const cutoffS = (): number => nowS() - 600;
    const revoke = async (revoked: readonly Record<string, unknown>[]): Promise<void> => {
      await writeAuthFiles(dir, { keys: [rsa, ec], principals: [{ subject: "checkout-svc", tenant: "acme", roles: ["checkout"] }], revoked });
      expect(gate.reload()).to.equal(true);
    };

    it("refuses a token whose jti is revoked with TOKEN_REVOKED, even one it had remembered, and admits other jtis", async () => {
      const leaked = await token(rsa, { sub: "web", tenant: "t", roles: ["reader"], jti: "leaked-1" });
      expect((await gate.admit(gateCall(GET_SKU, bearer(leaked)))).subject).to.equal("web");
      await revoke([{ jti: "leaked-1", note: "INC-1" }]);
      const refused = await refusal(gate, gateCall(GET_SKU, bearer(leaked)));
      expect(refused.code).to.equal("UNAUTHENTICATED");
      expect(refused.metadata).to.deep.equal({ reason: "TOKEN_REVOKED" });
      expect(refused.message).to.equal("the token was revoked (its jti is on the revoked list)");
      expect((await admitWith(rsa, { sub: "web", tenant: "t", roles: ["reader"], jti: "fresh-2" })).subject).to.equal("web");
      expect((await admitWith(rsa, { sub: "web", tenant: "t", roles: ["reader"] })).subject).to.equal("web");
    });

    it("refuses a subject's tokens issued before its time and without iat, and admits those issued at or after it and other subjects'", async () => {
      await revoke([{ subject: "web", issued_before: new Date(cutoffS() * 1000).toISOString() }]);
      const before = await refusedWith(rsa, { sub: "web", tenant: "t", roles: ["reader"], iat: cutoffS() - 1 });
      expect(before.metadata).to.deep.equal({ reason: "TOKEN_REVOKED" });
      expect(before.message).to.equal("the token was revoked: its subject's tokens issued before the revocation time are refused");
      const noIat = await refusedWith(ec, { sub: "web", tenant: "t", roles: ["reader"], iat: null });
      expect(noIat.metadata).to.deep.equal({ reason: "TOKEN_REVOKED" });
      expect(noIat.message).to.match(/and it has no iat$/);
      expect((await admitWith(rsa, { sub: "web", tenant: "t", roles: ["reader"], iat: cutoffS() })).subject).to.equal("web");
      expect((await admitWith(rsa, { sub: "web", tenant: "t", roles: ["reader"], iat: cutoffS() + 1 })).subject).to.equal("web");
      expect((await admitWith(rsa, { sub: "other", tenant: "t", roles: ["reader"], iat: cutoffS() - 1 })).subject).to.equal("other");
    });

    it("refuses a subject's client certificates valid from before its time, and admits a newer one", async () => {
      const cutoff = new Date(cutoffS() * 1000);
      await revoke([{ subject: "checkout-svc", issued_before: cutoff.toISOString() }]);
      const older = certificate("checkout-svc", new Date(cutoff.getTime() - 1000));
      const refused = await refusal(gate, gateCall(RESERVE, new Metadata(), older));
      expect(refused.metadata).to.deep.equal({ reason: "CERTIFICATE_REVOKED" });
      expect((await refusal(gate, gateCall(RESERVE, new Metadata(), certificate("checkout-svc")))).metadata["reason"]).to.equal("CERTIFICATE_REVOKED");
      const newer = certificate("checkout-svc", new Date(cutoff.getTime() + 1000));
      expect((await gate.admit(gateCall(RESERVE, new Metadata(), newer))).subject).to.equal("checkout-svc");
    });

    it("logs the revoked list's size on reload, and a bad list keeps the previous one", async () => {
      await revoke([{ jti: "a" }, { jti: "b" }, { subject: "web", issued_before: "2026-01-01T00:00:00Z" }]);
      const reloaded = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l["msg"] === "QM_AUTH_CONFIG reloaded");
      expect(reloaded.at(-1)?.["revoked"]).to.deep.equal({ tokenIds: 2, subjects: 1 });
      await writeAuthFiles(dir, { keys: [rsa], revoked: [{ subject: "web", issued_before: "yesterday" }] });
      expect(gate.reload()).to.equal(false);
      expect(gate.config.revoked.tokenIds.size).to.equal(2);
      expect(logLines.join("")).to.contain('revoked[0].issued_before: \\"yesterday\\" is not an RFC 3339 time with a zone');
    });
  });

  describe("the cluster's revocations (setSharedRevocations)", () => {
    const cutoffMs = (): number => clock.nowMs() - 600_000;

    it("refuses a remembered token the shared list names, keeps the other remembered tokens cached, and admits it again once lifted", async () => {
      const leaked = await token(rsa, { sub: "web", tenant: "t", roles: ["reader"], jti: "leaked-9" });
      const other = await token(rsa, { sub: "web", tenant: "t", roles: ["reader"], jti: "fine-9" });
      await gate.admit(gateCall(GET_SKU, bearer(leaked)));
      await gate.admit(gateCall(GET_SKU, bearer(other)));
      gate.setSharedRevocations([{ kind: "jti", jti: "leaked-9" }]);
      expect((await refusal(gate, gateCall(GET_SKU, bearer(leaked)))).metadata).to.deep.equal({ reason: "TOKEN_REVOKED" });
      // Still remembered: answered without a promise, so no signature check after the change.
      expect(gate.admit(gateCall(GET_SKU, bearer(other)))).not.to.be.instanceOf(Promise);
      gate.setSharedRevocations([]);
      expect((await gate.admit(gateCall(GET_SKU, bearer(leaked)))).subject).to.equal("web");
    });

    it("unites the shared list with the file's: a subject in both keeps the later time, and a reload keeps the shared entries", async () => {
      const early = new Date(cutoffMs() - 300_000);
      await writeAuthFiles(dir, { keys: [rsa, ec], principals: [{ subject: "checkout-svc", tenant: "acme", roles: ["checkout"] }], revoked: [{ subject: "checkout-svc", issued_before: early.toISOString() }, { jti: "file-1" }] });
      expect(gate.reload()).to.equal(true);
      const between = certificate("checkout-svc", new Date(cutoffMs() - 1000));
      expect((await gate.admit(gateCall(RESERVE, new Metadata(), between))).subject).to.equal("checkout-svc");
      gate.setSharedRevocations([{ kind: "subject", subject: "checkout-svc", issuedBeforeMs: cutoffMs() }]);
      expect((await refusal(gate, gateCall(RESERVE, new Metadata(), between))).metadata).to.deep.equal({ reason: "CERTIFICATE_REVOKED" });
      expect((await refusedWith(rsa, { sub: "web", tenant: "t", roles: ["reader"], jti: "file-1" })).metadata).to.deep.equal({ reason: "TOKEN_REVOKED" });
      expect(gate.reload()).to.equal(true);
      expect((await refusal(gate, gateCall(RESERVE, new Metadata(), between))).metadata, "after a reload").to.deep.equal({ reason: "CERTIFICATE_REVOKED" });
      expect(gate.certificateRevoked("checkout-svc", cutoffMs())).to.equal(false);
      expect(gate.certificateRevoked("checkout-svc", cutoffMs() - 1)).to.equal(true);
      expect(gate.certificateRevoked("checkout-svc", Number.NaN)).to.equal(true);
    });

    it("counts the file's entries and the shared ones against AUTH_REVOKED_MAX, keeping the first shared ones in key order", async () => {
      await writeAuthFiles(dir, { keys: [rsa, ec], revoked: [{ jti: "file-1" }, { jti: "file-2" }] });
      expect(gate.reload()).to.equal(true);
      const shared = Array.from({ length: AUTH_REVOKED_MAX }, (_, i) => ({ kind: "jti" as const, jti: `shared-${String(i).padStart(5, "0")}` }));
      gate.setSharedRevocations(shared);
      expect(gate.revocationSummary()).to.deep.equal({ tokenIds: AUTH_REVOKED_MAX, subjects: 0, shared: AUTH_REVOKED_MAX });
      expect((await refusedWith(rsa, { sub: "web", tenant: "t", roles: ["reader"], jti: `shared-${String(AUTH_REVOKED_MAX - 3).padStart(5, "0")}` })).metadata).to.deep.equal({ reason: "TOKEN_REVOKED" });
      // The last two did not fit beside the file's two.
      expect((await admitWith(rsa, { sub: "web", tenant: "t", roles: ["reader"], jti: `shared-${String(AUTH_REVOKED_MAX - 1).padStart(5, "0")}` })).subject).to.equal("web");
      expect(logLines.join("")).to.contain('"ignored":2');
    });

    it("tells its listeners of every change of the list in force", async () => {
      let told = 0;
      const off = gate.onRevocationsChange(() => told++);
      gate.setSharedRevocations([{ kind: "jti", jti: "x" }]);
      expect(gate.reload()).to.equal(true);
      expect(told).to.equal(2);
      off();
      gate.setSharedRevocations([]);
      expect(told).to.equal(2);
    });
  });

  it("follows a reload in the rate limit policy it hands out", async () => {
    const policy = gate.rateLimitPolicy();
    const caller: Caller = { subject: "web", tenant: "t", roles: [], authenticated: true };
    expect(policy(caller)).to.equal(undefined);
    await writeAuthFiles(dir, { keys: [rsa], rateLimits: { default: { per_second: 5, burst: 10 } } });
    expect(gate.reload()).to.equal(true);
    expect(policy(caller)).to.deep.equal({ perSecond: 5, burst: 10 });
  });
});

describe("TokenCache", () => {
  it("holds at most its capacity, dropping the least recently used first", () => {
    const clock = new ManualClock(1_800_000_000_000);
    const cache = new TokenCache<string>(clock, 2);
    const exp = 1_800_000_000 + 3600;
    cache.set("a", exp, "A");
    cache.set("b", exp, "B");
    expect(cache.get("a")).to.equal("A");
    cache.set("c", exp, "C");
    expect(cache.size).to.equal(2);
    expect(cache.get("b")).to.equal(undefined);
    expect(cache.get("a")).to.equal("A");
    expect(cache.get("c")).to.equal("C");
  });
});

function metadataOf(authorization: string): Metadata {
  const metadata = new Metadata();
  metadata.set("authorization", authorization);
  return metadata;
}
