// Bearer tokens: a JWT signed by a key in the configured key set, for the
// configured issuer and audience, not expired and already valid (with a small
// clock skew), verified with jose. A caller learns why its token was refused
// (the ErrorInfo reason: TOKEN_EXPIRED, TOKEN_KEY_UNKNOWN...) and nothing more:
// never the expected issuer, audience or key ids, nor jose's own text.
//
// A signature check costs tens of microseconds (RS256) to over a hundred
// (ES256); a caller sends the same token on every call, so a verified token is
// remembered by its text until it expires (TOKEN_CACHE_ENTRIES_MAX, least
// recently used first). Only verified tokens are remembered: garbage cannot
// push real callers out, it costs its sender a parse and a failed check.

import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors, type JSONWebKeySet, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from "jose";
import type { Clock } from "../clock";
import { QmError } from "../errors";
import { TOKEN_BYTES_MAX, TOKEN_CACHE_ENTRIES_MAX, TOKEN_CLOCK_SKEW_S } from "../limits";
import { TOKEN_ALGORITHMS, type TokenSettings } from "./auth_config";

/** The ErrorInfo reasons of UNAUTHENTICATED. */
export type AuthFailureReason =
  | "TOKEN_MISSING"
  | "TOKEN_MALFORMED"
  | "TOKEN_EXPIRED"
  | "TOKEN_NOT_YET_VALID"
  | "TOKEN_KEY_UNKNOWN"
  | "TOKEN_INVALID"
  | "TOKEN_REVOKED"
  | "PRINCIPAL_UNKNOWN"
  | "CERTIFICATE_REVOKED";

export function unauthenticated(reason: AuthFailureReason, message: string): QmError {
  return new QmError("UNAUTHENTICATED", message, { reason });
}

const BEARER = /^Bearer +([A-Za-z0-9_.-]+)$/i;

/** The token of an `authorization` metadata value, or why there is none. */
export function bearerToken(values: readonly (string | Buffer)[]): string {
  // The common case without the regex: a client library's exact "Bearer " prefix; the token is checked by the cache or the verifier.
  const only = values.length === 1 ? values[0] : undefined;
  if (typeof only === "string" && only.startsWith("Bearer ") && only.length <= TOKEN_BYTES_MAX + 7 && only.indexOf(" ", 7) < 0) return only.slice(7);
  if (values.length === 0) throw unauthenticated("TOKEN_MISSING", "no credentials: send authorization: Bearer <token>");
  if (values.length > 1) throw unauthenticated("TOKEN_MALFORMED", "more than one authorization value");
  const value = values[0];
  if (typeof value !== "string" || value.length > TOKEN_BYTES_MAX + 7) {
    throw unauthenticated("TOKEN_MALFORMED", `the authorization value is not Bearer <token> of at most ${TOKEN_BYTES_MAX} bytes`);
  }
  const token = BEARER.exec(value.trim())?.[1];
  if (token === undefined) throw unauthenticated("TOKEN_MALFORMED", "the authorization value is not Bearer <token>");
  return token;
}

/** Checks signature and claims; resolves with the payload or rejects with UNAUTHENTICATED. */
export class TokenVerifier {
  private readonly keys: JWTVerifyGetKey;

  constructor(
    private readonly settings: TokenSettings,
    private readonly clock: Clock,
  ) {
    this.keys = createLocalJWKSet({ keys: settings.keys } as JSONWebKeySet);
  }

  async verify(token: string): Promise<JWTPayload> {
    let kid: unknown;
    try {
      kid = decodeProtectedHeader(token).kid;
      // Only to tell a malformed token from a forged one: the payload is trusted after jwtVerify alone.
      decodeJwt(token);
    } catch {
      throw unauthenticated("TOKEN_MALFORMED", "the token is not a JWT");
    }
    // Every key in the set has a kid: a token without one could only be tried against all of them.
    if (typeof kid !== "string") throw unauthenticated("TOKEN_INVALID", "the token's header has no kid");
    try {
      const { payload } = await jwtVerify(token, this.keys, {
        issuer: this.settings.issuer,
        audience: this.settings.audience,
        algorithms: [...TOKEN_ALGORITHMS],
        clockTolerance: TOKEN_CLOCK_SKEW_S,
        currentDate: new Date(this.clock.nowMs()),
        requiredClaims: ["exp", "sub"],
      });
      return payload;
    } catch (error) {
      throw verificationFailure(error);
    }
  }
}

/** jose's error, as the one reason and message a caller gets. */
function verificationFailure(error: unknown): QmError {
  if (error instanceof errors.JWTExpired) return unauthenticated("TOKEN_EXPIRED", "the token has expired");
  if (error instanceof errors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case "nbf":
        return error.reason === "check_failed"
          ? unauthenticated("TOKEN_NOT_YET_VALID", "the token is not valid yet (nbf)")
          : unauthenticated("TOKEN_INVALID", "the token's nbf claim is not a number");
      case "iss":
        return unauthenticated("TOKEN_INVALID", "the token's issuer is not accepted");
      case "aud":
        return unauthenticated("TOKEN_INVALID", "the token's audience is not accepted");
      default:
        return unauthenticated("TOKEN_INVALID", `the token's ${error.claim} claim is missing or invalid`);
    }
  }
  if (error instanceof errors.JWKSNoMatchingKey) return unauthenticated("TOKEN_KEY_UNKNOWN", "no key of this node's key set matches the token's kid and alg");
  if (error instanceof errors.JWSSignatureVerificationFailed) return unauthenticated("TOKEN_INVALID", "the token's signature does not verify");
  if (error instanceof errors.JOSEAlgNotAllowed || error instanceof errors.JOSENotSupported) {
    return unauthenticated("TOKEN_INVALID", "the token's signature algorithm is not accepted");
  }
  if (error instanceof errors.JWTInvalid || error instanceof errors.JWSInvalid) return unauthenticated("TOKEN_MALFORMED", "the token is not a valid JWT");
  return unauthenticated("TOKEN_INVALID", "the token is not accepted");
}

interface CacheEntry<T> {
  /** The whole token: the map is keyed by its last characters only, so a hit is confirmed by comparing this. */
  readonly token: string;
  readonly value: T;
  /** Last millisecond (node clock) at which the token is still accepted: exp plus the skew. */
  readonly untilMs: number;
  /** Used since eviction last passed it (the CLOCK algorithm's reference bit). */
  recent: boolean;
}

/** Characters of a token's end that key the cache: signature bytes, random to anyone without the signing key. */
const CACHE_KEY_CHARS = 32;

/**
 * What a verified token was resolved to, remembered until the token expires.
 * Bounded, evicting with the CLOCK approximation of least recently used: a hit
 * only sets a flag, since re-inserting into the map on every call cost more
 * than the rest of the gate. The token arrives as a new string on every call,
 * so its hash is computed every time: the key is its last CACHE_KEY_CHARS
 * characters (signature), and a hit is confirmed against the whole token.
 */
export class TokenCache<T> {
  // Insertion order is the clock's order: eviction starts at the first key.
  private readonly entries = new Map<string, CacheEntry<T>>();

  constructor(
    private readonly clock: Clock,
    private readonly capacity = TOKEN_CACHE_ENTRIES_MAX,
  ) {}

  get(token: string): T | undefined {
    const key = token.slice(-CACHE_KEY_CHARS);
    const entry = this.entries.get(key);
    if (entry === undefined || entry.token !== token) return undefined;
    if (this.clock.nowMs() >= entry.untilMs) {
      this.entries.delete(key);
      return undefined;
    }
    entry.recent = true;
    return entry.value;
  }

  /** `expSeconds`: the token's exp claim. */
  set(token: string, expSeconds: number, value: T): void {
    const key = token.slice(-CACHE_KEY_CHARS);
    this.entries.delete(key);
    if (this.entries.size >= this.capacity) this.evictOne();
    this.entries.set(key, { token, value, untilMs: (expSeconds + TOKEN_CLOCK_SKEW_S) * 1000, recent: false });
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }

  /** Forgets every entry whose value `refused` names (a revocation arrived): one pass, at most the capacity. */
  deleteWhere(refused: (value: T) => boolean): void {
    for (const [key, entry] of this.entries) if (refused(entry.value)) this.entries.delete(key);
  }

  /** The first entry not used since the clock hand last passed it; used ones get a second chance at the end. Ends within two passes. */
  private evictOne(): void {
    for (const [key, entry] of this.entries) {
      this.entries.delete(key);
      if (!entry.recent) return;
      entry.recent = false;
      this.entries.set(key, entry);
    }
  }
}
