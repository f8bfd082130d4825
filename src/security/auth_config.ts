// QM_AUTH_CONFIG: who may call, read and checked whole at start (a mistake
// stops the start, exit 2) and again on SIGHUP (a mistake is logged and the
// running config kept). Every error names the JSON path of the offending value,
// e.g. `roles.reader[1]: unknown permission "inventory.raed"`. Unknown keys are
// refused too: a misspelt "rate_limit" silently ignored would be a limit that
// does not exist. Relative paths in the file are relative to the file.

import { createPublicKey, type JsonWebKey } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import path from "node:path";
import {
  AUTH_FILE_BYTES_MAX,
  AUTH_KEYS_MAX,
  AUTH_PRINCIPALS_MAX,
  AUTH_REVOKED_MAX,
  AUTH_ROLES_MAX,
  RATE_BURST_MAX,
  RATE_PER_SECOND_MAX,
  REVOCATION_NOTE_LENGTH_MAX,
  SUBJECT_LENGTH_MAX,
  TENANT_LENGTH_MAX,
  TOKEN_ID_LENGTH_MAX,
} from "../limits";
import type { Caller } from "./caller";
import { isPermission, type Permission, PERMISSIONS } from "./permissions";
import { isValidTenant } from "./tenancy";

/**
 * Signature algorithms a token may use: asymmetric only. A symmetric (HS*) key
 * in a key set would let every node that verifies tokens also mint them, and
 * "none" is no signature at all.
 */
export const TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"] as const;

export class AuthConfigError extends Error {
  override readonly name = "AuthConfigError";
}

/** One JSON Web Key as the key set file holds it (public members only). */
export interface PublicJwk {
  readonly kty: string;
  readonly kid: string;
  readonly alg?: string;
  readonly [member: string]: unknown;
}

export interface TokenSettings {
  readonly issuer: string;
  readonly audience: string;
  /** Absolute path of the key set file. */
  readonly jwksFile: string;
  readonly keys: readonly PublicJwk[];
}

export interface RateLimit {
  readonly perSecond: number;
  readonly burst: number;
}

export interface Principal {
  readonly subject: string;
  /** Required for a certificate caller; a token caller may carry its tenant in the `tenant` claim instead. */
  readonly tenant: string | undefined;
  readonly roles: readonly string[];
  /** This principal's own bucket, with rate_limits.default filling whichever of the two it leaves out. */
  readonly rateLimit: RateLimit | undefined;
}

/**
 * Credentials cut off before they expire. A jti names one token; a subject's
 * time cuts off every token it was issued before (iat) and every client
 * certificate of that CN valid from before it (notBefore), so a leaked token
 * or key pair stops working while the ones issued after the time still do.
 */
export interface Revocations {
  readonly tokenIds: ReadonlySet<string>;
  /** Subject → epoch milliseconds: credentials issued before it are refused. */
  readonly subjectsIssuedBeforeMs: ReadonlyMap<string, number>;
}

export interface AuthConfig {
  /** Absolute path of the file, re-read on SIGHUP. */
  readonly file: string;
  /** Absent: bearer tokens are refused and only certificate callers (mTLS) with a principals entry get in. */
  readonly tokens: TokenSettings | undefined;
  readonly roles: ReadonlyMap<string, ReadonlySet<Permission>>;
  readonly principals: ReadonlyMap<string, Principal>;
  readonly rateLimits: { readonly default: RateLimit | undefined };
  readonly revoked: Revocations;
}

const ROLE_NAME = /^[A-Za-z0-9._-]{1,64}$/;
/** A subject is written to logs and the audit trail: any text but control characters. */
const SUBJECT_TEXT = /^[^\p{Cc}]+$/u;

// One rule for tenant names, shared with the actor ids that carry them.
export { isValidTenant };

export function isValidSubject(subject: string): boolean {
  return subject.length >= 1 && subject.length <= SUBJECT_LENGTH_MAX && SUBJECT_TEXT.test(subject);
}

/** Reads and checks the file and its key set. Throws AuthConfigError naming the file and the JSON path. */
export function loadAuthConfig(file: string): AuthConfig {
  const absolute = path.resolve(file);
  const text = readBounded(absolute, "the file");
  return parseAuthConfig(text, absolute, (jwksFile) => readBounded(jwksFile, `tokens.jwks_file (${jwksFile})`));
}

/** Parses the file's text; `readJwks` reads the key set file by its absolute path. */
export function parseAuthConfig(text: string, file: string, readJwks: (absolutePath: string) => string): AuthConfig {
  const root = parseJson(text, "the file");
  const at = new Reader();
  const top = at.object(root, "", ["tokens", "roles", "principals", "rate_limits", "revoked"]);
  const roles = readRoles(at, top["roles"]);
  const tokensValue = top["tokens"];
  const tokens = tokensValue === undefined ? undefined : readTokens(at, tokensValue, path.dirname(file), readJwks);
  const rateLimits = readRateLimits(at, top["rate_limits"]);
  const principals = readPrincipals(at, top["principals"], roles, rateLimits.default);
  const revoked = readRevoked(at, top["revoked"]);
  return { file, tokens, roles, principals, rateLimits, revoked };
}

/**
 * The rate limit engineer's view of the config: the bucket of a caller, by
 * subject — its principals entry's own, else rate_limits.default, else none.
 */
export function rateLimitPolicy(config: AuthConfig): (caller: Caller) => RateLimit | undefined {
  return (caller) => config.principals.get(caller.subject)?.rateLimit ?? config.rateLimits.default;
}

function readTokens(at: Reader, value: unknown, dir: string, readJwks: (absolutePath: string) => string): TokenSettings {
  const t = at.object(value, "tokens", ["issuer", "audience", "jwks_file"]);
  const issuer = at.text(t["issuer"], "tokens.issuer");
  const audience = at.text(t["audience"], "tokens.audience");
  const jwksFile = path.resolve(dir, at.text(t["jwks_file"], "tokens.jwks_file"));
  let jwksText: string;
  try {
    jwksText = readJwks(jwksFile);
  } catch (error) {
    throw error instanceof AuthConfigError ? error : new AuthConfigError(`tokens.jwks_file: cannot read ${jwksFile}: ${messageOf(error)}`);
  }
  return { issuer, audience, jwksFile, keys: readKeySet(jwksText, jwksFile) };
}

/** The key set: public keys only, each with a distinct kid, each one node's crypto accepts. */
export function readKeySet(text: string, file: string): PublicJwk[] {
  const where = `tokens.jwks_file (${file})`;
  const at = new Reader(`${where}: `);
  const set = at.object(parseJson(text, where), "", null);
  const keys = at.array(set["keys"], "keys", AUTH_KEYS_MAX);
  const kids = new Set<string>();
  return keys.map((key, i) => {
    const p = `keys[${i}]`;
    const jwk = at.object(key, p, null);
    const kid = at.text(jwk["kid"], `${p}.kid`);
    if (kids.has(kid)) throw at.error(`${p}.kid`, `kid ${JSON.stringify(kid)} is used by two keys: a token's kid must name one key`);
    kids.add(kid);
    const kty = at.text(jwk["kty"], `${p}.kty`);
    if (kty === "oct") throw at.error(`${p}.kty`, "a symmetric key would let this node mint tokens; the key set holds public keys only");
    if ("d" in jwk) throw at.error(p, "is a private key: the key set holds public keys only (remove d, p, q, dp, dq, qi)");
    const alg = jwk["alg"];
    if (alg !== undefined && !(TOKEN_ALGORITHMS as readonly unknown[]).includes(alg)) {
      throw at.error(`${p}.alg`, `${JSON.stringify(alg)} is not accepted (accepted: ${TOKEN_ALGORITHMS.join(", ")})`);
    }
    if (jwk["use"] !== undefined && jwk["use"] !== "sig") throw at.error(`${p}.use`, `must be "sig" when given`);
    try {
      createPublicKey({ key: jwk as JsonWebKey, format: "jwk" });
    } catch (error) {
      throw at.error(p, `not a usable public key: ${messageOf(error)}`);
    }
    return { ...jwk, kty, kid } as PublicJwk;
  });
}

function readRoles(at: Reader, value: unknown): Map<string, ReadonlySet<Permission>> {
  const roles = new Map<string, ReadonlySet<Permission>>();
  if (value === undefined) throw at.error("roles", "is required (role name → permissions)");
  const entries = Object.entries(at.object(value, "roles", null));
  if (entries.length > AUTH_ROLES_MAX) throw at.error("roles", `has ${entries.length} roles; at most ${AUTH_ROLES_MAX}`);
  for (const [name, permissions] of entries) {
    const p = `roles.${name}`;
    if (!ROLE_NAME.test(name)) throw at.error(p, "a role name is 1-64 letters, digits and . _ -");
    const granted = new Set<Permission>();
    at.array(permissions, p, PERMISSIONS.length * 4).forEach((permission, i) => {
      const text = at.text(permission, `${p}[${i}]`);
      if (!isPermission(text)) throw at.error(`${p}[${i}]`, `unknown permission ${JSON.stringify(text)} (known: ${PERMISSIONS.join(", ")})`);
      granted.add(text);
    });
    roles.set(name, granted);
  }
  return roles;
}

function readPrincipals(at: Reader, value: unknown, roles: ReadonlyMap<string, unknown>, defaultLimit: RateLimit | undefined): Map<string, Principal> {
  const principals = new Map<string, Principal>();
  if (value === undefined) return principals;
  at.array(value, "principals", AUTH_PRINCIPALS_MAX).forEach((entry, i) => {
    const p = `principals[${i}]`;
    const o = at.object(entry, p, ["subject", "tenant", "roles", "rate_per_second", "burst"]);
    const subject = at.text(o["subject"], `${p}.subject`);
    if (!isValidSubject(subject)) throw at.error(`${p}.subject`, `1-${SUBJECT_LENGTH_MAX} characters, no control characters`);
    if (principals.has(subject)) throw at.error(`${p}.subject`, `${JSON.stringify(subject)} is listed twice`);
    const tenantValue = o["tenant"];
    const tenant = tenantValue === undefined ? undefined : at.text(tenantValue, `${p}.tenant`);
    if (tenant !== undefined && !isValidTenant(tenant)) {
      throw at.error(`${p}.tenant`, `1-${TENANT_LENGTH_MAX} letters, digits, _ and -`);
    }
    const names = o["roles"] === undefined ? [] : at.array(o["roles"], `${p}.roles`, AUTH_ROLES_MAX);
    const principalRoles = names.map((name, j) => {
      const text = at.text(name, `${p}.roles[${j}]`);
      if (!roles.has(text)) throw at.error(`${p}.roles[${j}]`, `unknown role ${JSON.stringify(text)} (defined: ${[...roles.keys()].join(", ")})`);
      return text;
    });
    principals.set(subject, { subject, tenant, roles: [...new Set(principalRoles)], rateLimit: principalLimit(at, o, p, defaultLimit) });
  });
  return principals;
}

function principalLimit(at: Reader, o: Record<string, unknown>, p: string, defaultLimit: RateLimit | undefined): RateLimit | undefined {
  const perSecond = o["rate_per_second"] === undefined ? undefined : at.rate(o["rate_per_second"], `${p}.rate_per_second`);
  const burst = o["burst"] === undefined ? undefined : at.burst(o["burst"], `${p}.burst`);
  if (perSecond === undefined && burst === undefined) return undefined;
  const merged = { perSecond: perSecond ?? defaultLimit?.perSecond, burst: burst ?? defaultLimit?.burst };
  if (merged.perSecond === undefined || merged.burst === undefined) {
    const missing = merged.perSecond === undefined ? "rate_per_second" : "burst";
    throw at.error(`${p}.${missing}`, "is required when the other is given and rate_limits.default does not supply it");
  }
  return { perSecond: merged.perSecond, burst: merged.burst };
}

function readRateLimits(at: Reader, value: unknown): { default: RateLimit | undefined } {
  if (value === undefined) return { default: undefined };
  const o = at.object(value, "rate_limits", ["default"]);
  if (o["default"] === undefined) return { default: undefined };
  const d = at.object(o["default"], "rate_limits.default", ["per_second", "burst"]);
  if (d["per_second"] === undefined) throw at.error("rate_limits.default.per_second", "is required");
  if (d["burst"] === undefined) throw at.error("rate_limits.default.burst", "is required");
  return { default: { perSecond: at.rate(d["per_second"], "rate_limits.default.per_second"), burst: at.burst(d["burst"], "rate_limits.default.burst") } };
}

/** An instant with its zone, as RFC 3339 writes it: a time without one would mean a different instant on each node. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i;

/** One entry of a revocation list, as the file's `revoked` array and etcd's revoked/ keys hold it (the note dropped). */
export type RevocationEntry =
  | { readonly kind: "jti"; readonly jti: string }
  | { readonly kind: "subject"; readonly subject: string; readonly issuedBeforeMs: number };

function readRevoked(at: Reader, value: unknown): Revocations {
  const tokenIds = new Set<string>();
  const subjectsIssuedBeforeMs = new Map<string, number>();
  if (value === undefined) return { tokenIds, subjectsIssuedBeforeMs };
  at.array(value, "revoked", AUTH_REVOKED_MAX).forEach((item, i) => {
    const p = `revoked[${i}]`;
    const entry = readRevocationEntry(at, item, p);
    // In one file a second entry is a mistake (which one did the operator mean?); across sources they unite (mergeRevocations).
    if (entry.kind === "jti") {
      if (tokenIds.has(entry.jti)) throw at.error(`${p}.jti`, `${JSON.stringify(entry.jti)} is listed twice`);
      tokenIds.add(entry.jti);
    } else {
      if (subjectsIssuedBeforeMs.has(entry.subject)) throw at.error(`${p}.subject`, `${JSON.stringify(entry.subject)} is listed twice`);
      subjectsIssuedBeforeMs.set(entry.subject, entry.issuedBeforeMs);
    }
  });
  return { tokenIds, subjectsIssuedBeforeMs };
}

/**
 * One revocation given as JSON text (an etcd value): the same checks as an entry of the file's list.
 * Throws AuthConfigError naming what is wrong.
 */
export function parseRevocationEntry(text: string): RevocationEntry {
  return readRevocationEntry(new Reader(), parseJson(text, "the value"), "");
}

function readRevocationEntry(at: Reader, value: unknown, p: string): RevocationEntry {
  const o = at.object(value, p, ["jti", "subject", "issued_before", "note"]);
  const field = (name: string): string => (p === "" ? name : `${p}.${name}`);
  if (o["note"] !== undefined && (typeof o["note"] !== "string" || o["note"].length > REVOCATION_NOTE_LENGTH_MAX)) {
    throw at.error(field("note"), `expected a string of at most ${REVOCATION_NOTE_LENGTH_MAX} characters`);
  }
  if ((o["jti"] === undefined) === (o["subject"] === undefined)) throw at.error(p, "needs exactly one of jti (one token) and subject (with issued_before)");
  if (o["jti"] !== undefined) {
    const jti = at.text(o["jti"], field("jti"));
    if (jti.length > TOKEN_ID_LENGTH_MAX) throw at.error(field("jti"), `at most ${TOKEN_ID_LENGTH_MAX} characters`);
    if (o["issued_before"] !== undefined) throw at.error(field("issued_before"), "applies to a subject; a jti revokes its one token whenever it was issued");
    return { kind: "jti", jti };
  }
  const subject = at.text(o["subject"], field("subject"));
  if (!isValidSubject(subject)) throw at.error(field("subject"), `1-${SUBJECT_LENGTH_MAX} characters, no control characters`);
  const time = at.text(o["issued_before"], field("issued_before"));
  const ms = RFC3339.test(time) ? Date.parse(time) : Number.NaN;
  if (!Number.isFinite(ms)) throw at.error(field("issued_before"), `${JSON.stringify(time)} is not an RFC 3339 time with a zone, like 2026-12-02T04:30:00Z`);
  return { kind: "subject", subject, issuedBeforeMs: ms };
}

/**
 * The file's list united with entries from elsewhere (etcd): a credential is refused if any entry refuses it, so a
 * subject listed in both keeps the later time (which refuses everything the earlier one does). Returns `file` itself
 * when there is nothing to add, so a node without shared entries checks exactly the file's maps.
 */
export function mergeRevocations(file: Revocations, extra: readonly RevocationEntry[]): Revocations {
  if (extra.length === 0) return file;
  const tokenIds = new Set(file.tokenIds);
  const subjectsIssuedBeforeMs = new Map(file.subjectsIssuedBeforeMs);
  for (const entry of extra) {
    if (entry.kind === "jti") tokenIds.add(entry.jti);
    else subjectsIssuedBeforeMs.set(entry.subject, Math.max(entry.issuedBeforeMs, subjectsIssuedBeforeMs.get(entry.subject) ?? Number.NEGATIVE_INFINITY));
  }
  return { tokenIds, subjectsIssuedBeforeMs };
}

/** Entries of a list, counted as the limit AUTH_REVOKED_MAX counts them. */
export function revocationCount(revoked: Revocations): number {
  return revoked.tokenIds.size + revoked.subjectsIssuedBeforeMs.size;
}

/** Typed reads of JSON values, each failure naming the path. */
class Reader {
  constructor(private readonly prefix = "") {}

  error(at: string, message: string): AuthConfigError {
    return new AuthConfigError(`${this.prefix}${at === "" ? "the top level" : at}: ${message}`);
  }

  /** An object; with `known`, any other key is refused. */
  object(value: unknown, at: string, known: readonly string[] | null): Record<string, unknown> {
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw this.error(at, "expected an object");
    const record = value as Record<string, unknown>;
    if (known !== null) {
      const unknown = Object.keys(record).find((k) => !known.includes(k));
      if (unknown !== undefined) throw this.error(at === "" ? unknown : `${at}.${unknown}`, `unknown key (known here: ${known.join(", ")})`);
    }
    return record;
  }

  array(value: unknown, at: string, max: number): unknown[] {
    if (!Array.isArray(value)) throw this.error(at, "expected an array");
    if (value.length > max) throw this.error(at, `has ${value.length} entries; at most ${max}`);
    return value as unknown[];
  }

  text(value: unknown, at: string): string {
    if (value === undefined) throw this.error(at, "is required");
    if (typeof value !== "string" || value === "") throw this.error(at, "expected a non-empty string");
    return value;
  }

  rate(value: unknown, at: string): number {
    if (typeof value !== "number" || !Number.isFinite(value) || value <= 0 || value > RATE_PER_SECOND_MAX) {
      throw this.error(at, `expected a number of calls per second above 0 and at most ${RATE_PER_SECOND_MAX}`);
    }
    return value;
  }

  burst(value: unknown, at: string): number {
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > RATE_BURST_MAX) {
      throw this.error(at, `expected a whole number of calls from 1 to ${RATE_BURST_MAX}`);
    }
    return value;
  }
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new AuthConfigError(`${what} is not valid JSON: ${messageOf(error)}`);
  }
}

/** Reads a whole file of at most AUTH_FILE_BYTES_MAX bytes. */
function readBounded(file: string, what: string): string {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (error) {
    throw new AuthConfigError(`cannot read ${what}: ${messageOf(error)}`);
  }
  try {
    const size = fstatSync(fd).size;
    if (size > AUTH_FILE_BYTES_MAX) throw new AuthConfigError(`${what} has ${size} bytes; at most ${AUTH_FILE_BYTES_MAX}`);
    const buffer = Buffer.alloc(size);
    let read = 0;
    while (read < size) {
      const n = readSync(fd, buffer, read, size - read, read);
      if (n === 0) break;
      read += n;
    }
    return buffer.subarray(0, read).toString("utf8");
  } finally {
    closeSync(fd);
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
