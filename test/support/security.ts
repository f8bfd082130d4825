// Keys, tokens and QM_AUTH_CONFIG files made in the test: nothing secret is
// checked in. jose generates the key pairs and signs; the server verifies with
// the public halves written to a key set file next to the config.

import { writeFile } from "node:fs/promises";
import path from "node:path";
import { Metadata } from "@grpc/grpc-js";
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";

export const TEST_ISSUER = "https://id.test.example";
export const TEST_AUDIENCE = "quartermaster";

/** The roles of issue 11's example config. */
export const ISSUE_ROLES: Readonly<Record<string, readonly string[]>> = {
  reader: ["inventory.read", "orders.read"],
  checkout: ["inventory.read", "inventory.reserve", "orders.read", "orders.write"],
  warehouse: ["inventory.read", "inventory.write"],
  operator: ["inventory.read", "orders.read", "cluster.read", "admin"],
};

export interface TestKey {
  readonly kid: string;
  readonly alg: "RS256" | "ES256";
  readonly privateKey: CryptoKey;
  /** The public half as the key set file holds it. */
  readonly publicJwk: JWK;
}

export async function generateTestKey(kid: string, alg: "RS256" | "ES256" = "ES256"): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg, privateKey, publicJwk };
}

export interface TokenClaims {
  sub?: string;
  tenant?: unknown;
  roles?: unknown;
  iss?: string;
  aud?: string;
  /** Seconds from now; default 3600. */
  expInS?: number;
  /** Seconds from now; absent: no nbf claim. */
  nbfInS?: number;
  /** Seconds since the epoch that "now" is; default the wall clock. */
  nowS?: number;
  /** Header kid; default the key's. `null` leaves it out. */
  kid?: string | null;
  /** The token id claim; absent: none. */
  jti?: string;
  /** Seconds since the epoch of the iat claim; default "now". `null` leaves it out. */
  iat?: number | null;
}

/** A compact JWS signed with `key`, for the test issuer and audience unless the claims say otherwise. */
export async function signToken(key: TestKey, claims: TokenClaims = {}): Promise<string> {
  const now = claims.nowS ?? Math.floor(Date.now() / 1000);
  const payload: Record<string, unknown> = {};
  if (claims.tenant !== undefined) payload["tenant"] = claims.tenant;
  if (claims.roles !== undefined) payload["roles"] = claims.roles;
  const kid = claims.kid === undefined ? key.kid : claims.kid;
  let jwt = new SignJWT(payload)
    .setProtectedHeader(kid === null ? { alg: key.alg } : { alg: key.alg, kid })
    .setIssuer(claims.iss ?? TEST_ISSUER)
    .setAudience(claims.aud ?? TEST_AUDIENCE)
    .setExpirationTime(now + (claims.expInS ?? 3600));
  if (claims.iat !== null) jwt = jwt.setIssuedAt(claims.iat ?? now);
  if (claims.jti !== undefined) jwt = jwt.setJti(claims.jti);
  if (claims.sub !== undefined) jwt = jwt.setSubject(claims.sub);
  if (claims.nbfInS !== undefined) jwt = jwt.setNotBefore(now + claims.nbfInS);
  return jwt.sign(key.privateKey);
}

export function jwksText(keys: readonly TestKey[]): string {
  return JSON.stringify({ keys: keys.map((k) => k.publicJwk) });
}

export interface AuthFileOptions {
  readonly keys: readonly TestKey[];
  readonly roles?: Readonly<Record<string, readonly string[]>>;
  readonly principals?: readonly Record<string, unknown>[];
  readonly rateLimits?: Record<string, unknown>;
  /** The `revoked` list, as written. */
  readonly revoked?: readonly Record<string, unknown>[];
  /** Name of the key set file, relative to the config (default jwks.json). */
  readonly jwksName?: string;
}

/** Writes `auth.json` and its key set into `dir`; returns the config's path (the value of QM_AUTH_CONFIG). */
export async function writeAuthFiles(dir: string, options: AuthFileOptions): Promise<string> {
  const jwksName = options.jwksName ?? "jwks.json";
  await writeFile(path.join(dir, jwksName), jwksText(options.keys));
  const config = {
    tokens: { issuer: TEST_ISSUER, audience: TEST_AUDIENCE, jwks_file: jwksName },
    roles: options.roles ?? ISSUE_ROLES,
    principals: options.principals ?? [],
    ...(options.rateLimits === undefined ? {} : { rate_limits: options.rateLimits }),
    ...(options.revoked === undefined ? {} : { revoked: options.revoked }),
  };
  const file = path.join(dir, "auth.json");
  await writeFile(file, JSON.stringify(config, null, 2));
  return file;
}

/** Call metadata carrying `authorization: Bearer <token>`. */
export function bearer(token: string): Metadata {
  const metadata = new Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  return metadata;
}
