import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { expect } from "chai";
import { exportJWK } from "jose";
import { ConfigError, loadConfig } from "../../src/config";
import { TOKEN_ID_LENGTH_MAX } from "../../src/limits";
import { type AuthConfig, AuthConfigError, loadAuthConfig, parseRevocationEntry, rateLimitPolicy } from "../../src/security/auth_config";
import { ANONYMOUS_CALLER, type Caller } from "../../src/security/caller";
import { makeTempDir } from "../support/server_process";
import { generateTestKey, jwksText, type TestKey, TEST_AUDIENCE, TEST_ISSUER } from "../support/security";

/** The issue's example, with a second principal that has its own rate limit. */
function issueExample(jwksFile = "jwks.json"): Record<string, unknown> {
  return {
    tokens: { issuer: "https://id.example", audience: "quartermaster", jwks_file: jwksFile },
    roles: {
      reader: ["inventory.read", "orders.read"],
      checkout: ["inventory.read", "inventory.reserve", "orders.read", "orders.write"],
      warehouse: ["inventory.read", "inventory.write"],
      operator: ["inventory.read", "orders.read", "cluster.read", "admin"],
    },
    principals: [
      { subject: "checkout-svc", tenant: "acme", roles: ["checkout"] },
      { subject: "bulk-importer", tenant: "acme", roles: ["warehouse"], rate_per_second: 50 },
    ],
    rate_limits: { default: { per_second: 1000, burst: 2000 } },
  };
}

function caller(subject: string): Caller {
  return { subject, tenant: "acme", roles: [], authenticated: true };
}

describe("QM_AUTH_CONFIG", () => {
  let dir: string;
  let key: TestKey;

  before(async () => {
    key = await generateTestKey("k1", "RS256");
  });

  beforeEach(async () => {
    dir = await makeTempDir("qm-auth-config-");
    await writeFile(path.join(dir, "jwks.json"), jwksText([key]));
  });

  async function write(config: unknown, name = "auth.json"): Promise<string> {
    const file = path.join(dir, name);
    await writeFile(file, typeof config === "string" ? config : JSON.stringify(config));
    return file;
  }

  async function failure(config: unknown): Promise<string> {
    const file = await write(config);
    try {
      loadAuthConfig(file);
    } catch (error) {
      expect(error).to.be.instanceOf(AuthConfigError);
      return (error as Error).message;
    }
    return expect.fail("the config was accepted");
  }

  it("reads the issue's example into roles, principals, tokens and rate limits, with the key set relative to the file", async () => {
    const config: AuthConfig = loadAuthConfig(await write(issueExample()));
    expect(config.tokens?.issuer).to.equal("https://id.example");
    expect(config.tokens?.audience).to.equal("quartermaster");
    expect(config.tokens?.jwksFile).to.equal(path.join(dir, "jwks.json"));
    expect(config.tokens?.keys.map((k) => k.kid)).to.deep.equal(["k1"]);
    expect([...(config.roles.get("checkout") ?? [])]).to.deep.equal(["inventory.read", "inventory.reserve", "orders.read", "orders.write"]);
    expect(config.principals.get("checkout-svc")).to.deep.equal({ subject: "checkout-svc", tenant: "acme", roles: ["checkout"], rateLimit: undefined });
    expect(config.rateLimits.default).to.deep.equal({ perSecond: 1000, burst: 2000 });
  });

  it("finds a key set in a subdirectory relative to the config file, not to the working directory", async () => {
    await mkdir(path.join(dir, "keys"));
    await writeFile(path.join(dir, "keys", "set.json"), jwksText([key]));
    const config = loadAuthConfig(await write(issueExample("keys/set.json")));
    expect(config.tokens?.jwksFile).to.equal(path.join(dir, "keys", "set.json"));
  });

  it("gives the rate limit engineer a bucket per caller: the principal's own (gaps filled from the default), else the default", async () => {
    const policy = rateLimitPolicy(loadAuthConfig(await write(issueExample())));
    expect(policy(caller("bulk-importer"))).to.deep.equal({ perSecond: 50, burst: 2000 });
    expect(policy(caller("checkout-svc"))).to.deep.equal({ perSecond: 1000, burst: 2000 });
    expect(policy(caller("someone-with-a-token"))).to.deep.equal({ perSecond: 1000, burst: 2000 });
    const noLimits = { ...issueExample(), rate_limits: undefined, principals: [] };
    expect(rateLimitPolicy(loadAuthConfig(await write(noLimits)))(ANONYMOUS_CALLER)).to.equal(undefined);
  });

  const refusals: [string, (c: Record<string, unknown>) => unknown, RegExp][] = [
    ["an unknown permission", (c) => ({ ...c, roles: { reader: ["inventory.read", "inventory.raed"] } }), /^roles\.reader\[1\]: unknown permission "inventory\.raed"/],
    ["an unknown role of a principal", (c) => ({ ...c, principals: [{ subject: "s", tenant: "t", roles: ["admin"] }] }), /^principals\[0\]\.roles\[0\]: unknown role "admin"/],
    ["a rate limit that is not a number", (c) => ({ ...c, rate_limits: { default: { per_second: "1000", burst: 2000 } } }), /^rate_limits\.default\.per_second: expected a number/],
    ["a fractional burst", (c) => ({ ...c, rate_limits: { default: { per_second: 10, burst: 2.5 } } }), /^rate_limits\.default\.burst: expected a whole number/],
    ["a default without its burst", (c) => ({ ...c, rate_limits: { default: { per_second: 10 } } }), /^rate_limits\.default\.burst: is required/],
    ["a principal's zero rate", (c) => ({ ...c, principals: [{ subject: "s", tenant: "t", rate_per_second: 0 }] }), /^principals\[0\]\.rate_per_second: expected a number/],
    [
      "a principal's half limit with no default to fill it",
      (c) => ({ ...c, rate_limits: {}, principals: [{ subject: "s", tenant: "t", burst: 5 }] }),
      /^principals\[0\]\.rate_per_second: is required when the other is given/,
    ],
    ["a misspelt key", (c) => ({ ...c, rate_limit: {} }), /^rate_limit: unknown key/],
    ["a misspelt key inside tokens", (c) => ({ ...c, tokens: { issuer: "i", audience: "a", jwks: "jwks.json" } }), /^tokens\.jwks: unknown key/],
    ["a missing key set file", (c) => ({ ...c, tokens: { issuer: "i", audience: "a", jwks_file: "nope.json" } }), /cannot read tokens\.jwks_file \(.*nope\.json\): ENOENT/],
    ["a missing issuer", (c) => ({ ...c, tokens: { audience: "a", jwks_file: "jwks.json" } }), /^tokens\.issuer: is required/],
    ["a subject listed twice", (c) => ({ ...c, principals: [{ subject: "s", tenant: "t" }, { subject: "s", tenant: "t" }] }), /^principals\[1\]\.subject: "s" is listed twice/],
    ["a tenant with a colon", (c) => ({ ...c, principals: [{ subject: "s", tenant: "a:b" }] }), /^principals\[0\]\.tenant: 1-64 letters/],
    ["no roles at all", (c) => ({ ...c, roles: undefined }), /^roles: is required/],
    ["text that is not JSON", () => "{ roles: ", /^the file is not valid JSON/],
    ["a revocation with neither jti nor subject", (c) => ({ ...c, revoked: [{ note: "x" }] }), /^revoked\[0\]: needs exactly one of jti \(one token\) and subject/],
    ["a revocation with both jti and subject", (c) => ({ ...c, revoked: [{ jti: "a", subject: "s", issued_before: "2026-12-02T04:30:00Z" }] }), /^revoked\[0\]: needs exactly one/],
    ["a subject revocation without issued_before", (c) => ({ ...c, revoked: [{ subject: "s" }] }), /^revoked\[0\]\.issued_before: is required/],
    ["an issued_before without a zone", (c) => ({ ...c, revoked: [{ subject: "s", issued_before: "2026-12-02T04:30:00" }] }), /^revoked\[0\]\.issued_before: "2026-12-02T04:30:00" is not an RFC 3339 time with a zone/],
    ["an issued_before that is no date", (c) => ({ ...c, revoked: [{ subject: "s", issued_before: "2026-13-45T99:00:00Z" }] }), /^revoked\[0\]\.issued_before: .* is not an RFC 3339 time/],
    ["an issued_before on a jti", (c) => ({ ...c, revoked: [{ jti: "a", issued_before: "2026-12-02T04:30:00Z" }] }), /^revoked\[0\]\.issued_before: applies to a subject/],
    ["a jti listed twice", (c) => ({ ...c, revoked: [{ jti: "a" }, { jti: "a" }] }), /^revoked\[1\]\.jti: "a" is listed twice/],
    ["a jti that is a number", (c) => ({ ...c, revoked: [{ jti: 7 }] }), /^revoked\[0\]\.jti: expected a non-empty string/],
    ["a misspelt key in a revocation", (c) => ({ ...c, revoked: [{ jti: "a", reason: "x" }] }), /^revoked\[0\]\.reason: unknown key/],
    ["revoked that is not a list", (c) => ({ ...c, revoked: { jti: "a" } }), /^revoked: expected an array/],
  ];
  for (const [what, edit, message] of refusals) {
    it(`refuses ${what}, naming the JSON path`, async () => {
      expect(await failure(edit(issueExample()))).to.match(message);
    });
  }

  it("reads the revoked list: token ids, and per subject the instant before which its credentials are refused", async () => {
    const file = await write({
      ...issueExample(),
      revoked: [
        { jti: "7f3c-leaked", note: "INC-1234: token pasted into a chat" },
        { subject: "checkout-svc", issued_before: "2026-12-02T04:30:00+01:00" },
      ],
    });
    const config = loadAuthConfig(file);
    expect([...config.revoked.tokenIds]).to.deep.equal(["7f3c-leaked"]);
    expect([...config.revoked.subjectsIssuedBeforeMs]).to.deep.equal([["checkout-svc", Date.UTC(2026, 11, 2, 3, 30, 0)]]);
    expect(loadAuthConfig(await write(issueExample())).revoked.tokenIds.size).to.equal(0);
  });

  describe("the key set", () => {
    async function keySetFailure(keys: unknown[]): Promise<string> {
      await writeFile(path.join(dir, "jwks.json"), JSON.stringify({ keys }));
      return failure(issueExample());
    }

    it("refuses a private key, a symmetric key, two keys with one kid, a key without kid and a broken key", async () => {
      const privateKey = await exportJWK((await generateTestKey("p", "ES256")).privateKey);
      expect(await keySetFailure([{ ...privateKey, kid: "p" }])).to.match(/keys\[0\]: is a private key/);
      expect(await keySetFailure([{ kty: "oct", k: "c2VjcmV0", kid: "h" }])).to.match(/keys\[0\]\.kty: a symmetric key/);
      expect(await keySetFailure([key.publicJwk, key.publicJwk])).to.match(/keys\[1\]\.kid: kid "k1" is used by two keys/);
      expect(await keySetFailure([{ ...key.publicJwk, kid: undefined }])).to.match(/keys\[0\]\.kid: is required/);
      expect(await keySetFailure([{ ...key.publicJwk, n: "AQAB", e: 5 }])).to.match(/keys\[0\]: not a usable public key/);
      expect(await keySetFailure([{ ...key.publicJwk, alg: "HS256" }])).to.match(/keys\[0\]\.alg: "HS256" is not accepted/);
    });
  });

  it("reads one revocation from JSON text (an etcd value) with the file's checks, naming what is wrong", () => {
    expect(parseRevocationEntry('{"jti":"t-1","note":"INC-1"}')).to.deep.equal({ kind: "jti", jti: "t-1" });
    expect(parseRevocationEntry('{"subject":"scanner","issued_before":"2026-12-02T04:30:00+01:00"}')).to.deep.equal({
      kind: "subject",
      subject: "scanner",
      issuedBeforeMs: Date.parse("2026-12-02T03:30:00Z"),
    });
    const failures: [string, string][] = [
      ["{oops", "the value is not valid JSON"],
      ["[]", "the top level: expected an object"],
      ['{"jti":"a","subject":"b"}', "the top level: needs exactly one of jti (one token) and subject (with issued_before)"],
      ['{"subject":"b","issued_before":"2026-12-02T04:30:00"}', 'issued_before: "2026-12-02T04:30:00" is not an RFC 3339 time with a zone'],
      ['{"jti":"a","reason":"x"}', "reason: unknown key (known here: jti, subject, issued_before, note)"],
      [`{"jti":"${"j".repeat(TOKEN_ID_LENGTH_MAX + 1)}"}`, `jti: at most ${TOKEN_ID_LENGTH_MAX} characters`],
    ];
    for (const [text, message] of failures) {
      expect(() => parseRevocationEntry(text), text).to.throw(AuthConfigError, message);
    }
  });

  it("stops the start through loadConfig with a ConfigError naming the variable, the file and the path", async () => {
    const file = await write({ ...issueExample(), roles: { reader: ["nope"] } });
    expect(() => loadConfig({ QM_AUTH_CONFIG: file })).to.throw(ConfigError, `QM_AUTH_CONFIG=${file}: roles.reader[0]: unknown permission "nope"`);
    expect(loadConfig({}).auth).to.equal(undefined);
  });

  it("accepts the helper's files, which the integration tests use", async () => {
    const file = await write({
      tokens: { issuer: TEST_ISSUER, audience: TEST_AUDIENCE, jwks_file: "jwks.json" },
      roles: {},
    });
    expect(loadAuthConfig(file).principals.size).to.equal(0);
  });
});
