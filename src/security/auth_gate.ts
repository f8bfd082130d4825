// The gate of a node with QM_AUTH_CONFIG: names the caller from its bearer
// token (or, without one, its verified client certificate and principals
// entry), then lets the call through only if one of the caller's roles grants
// the method's permission (permissions.ts). A refused call never reaches its
// handler, so nothing changes and nothing about the request is revealed.
//
// Decisions (SECURITY.md says them to operators):
// - A token wins over a certificate: the certificate authenticated the
//   connection, the token names who makes this call.
// - Role names in a token that the config does not define are ignored: an
//   identity provider serves many services and its tokens carry their roles too.
//   They grant nothing here, and refusing the token would couple every role
//   rename elsewhere to a restart here.
// - Tenant: the token's `tenant` claim, else its principals entry's. A token
//   whose claim contradicts its principals entry is refused (the entry's roles
//   were granted for that tenant), and so is a caller with no tenant at all:
//   falling back to the default tenant would hand it the data written before
//   authentication was turned on.
// - SIGHUP re-reads the file and the key set; a bad file is logged and the old
//   config kept. Remembered tokens are forgotten on reload, so a removed key or
//   role, or a revocation, takes effect at once.
// - Revocation (the `revoked` list) is checked when a token is verified, so a
//   remembered token costs nothing more. A subject's issued_before refuses a
//   token without iat (nothing shows it was issued after), and a certificate
//   whose notBefore is earlier; CAs that backdate notBefore need the time set
//   past that margin.
// - The list in force is the file's united with the cluster's (etcd's
//   revoked/ keys, cluster_revocations.ts). A change of the cluster's entries
//   does not forget every remembered token, as a reload does: only those the
//   new list refuses, so a revocation in a busy cluster costs no wave of
//   signature checks. Listeners hear of every change of the list in force, so
//   that connections of a certificate now revoked are closed (edge.ts).

import type { PeerCertificate } from "node:tls";
import type { Logger } from "pino";
import type { Clock } from "../clock";
import { QmError } from "../errors";
import { type Lifecycle, lifecycle } from "../lifecycle";
import { AUTH_REVOKED_MAX, TENANT_LENGTH_MAX, TOKEN_ROLES_MAX, TOKEN_VERIFICATIONS_SHARED_MAX } from "../limits";
import {
  type AuthConfig,
  AuthConfigError,
  isValidSubject,
  isValidTenant,
  loadAuthConfig,
  mergeRevocations,
  type Principal,
  type RateLimit,
  rateLimitPolicy,
  type RevocationEntry,
  type Revocations,
  revocationCount,
} from "./auth_config";
import type { CallGate, GateCall } from "./call_gate";
import { ANONYMOUS_CALLER, type Caller } from "./caller";
import { certificateSubject, certificateValidFromMs } from "./peer_certificate";
import { OPEN, type Permission, ruleFor } from "./permissions";
import { bearerToken, TokenCache, TokenVerifier, unauthenticated } from "./tokens";

/** A caller and what its roles grant, resolved once per token (or per principal) and reused per call. */
interface Admitted {
  readonly caller: Caller;
  readonly permissions: ReadonlySet<Permission>;
  /** A token's jti and iat (seconds), kept to tell whether a later revocation refuses it; absent for a certificate caller. */
  readonly token?: { readonly jti: string | undefined; readonly iatS: number | undefined };
}

/** Everything derived from one version of the config; swapped whole on reload. */
interface State {
  readonly config: AuthConfig;
  readonly verifier: TokenVerifier | undefined;
  readonly tokens: TokenCache<Admitted>;
  /**
   * Verifications under way, by token: a client sends many calls at once with a
   * token the node has not seen (at its start, after a reload), and one
   * signature check serves them all. Entries leave when they settle.
   */
  readonly verifying: Map<string, Promise<Admitted>>;
  /** Certificate callers by subject: every principal with a tenant. */
  readonly certificates: ReadonlyMap<string, Admitted>;
}

export interface AuthGateOptions {
  readonly config: AuthConfig;
  readonly clock: Clock;
  readonly logger: Logger;
}

export class AuthGate implements CallGate {
  private state: State;
  private readonly clock: Clock;
  private readonly logger: Logger;
  /** The cluster's entries (etcd), in key order; empty on an embedded node. */
  private shared: readonly RevocationEntry[] = [];
  /** The list in force: the file's united with the cluster's. Read per certificate call and per token verified. */
  private revoked: Revocations;
  private readonly revocationListeners = new Set<() => void>();

  constructor(options: AuthGateOptions) {
    this.clock = options.clock;
    this.logger = options.logger;
    this.state = this.build(options.config);
    this.revoked = options.config.revoked;
  }

  get config(): AuthConfig {
    return this.state.config;
  }

  /** The rate limit engineer's policy, reading whichever config is current (it follows SIGHUP). */
  rateLimitPolicy(): (caller: Caller) => RateLimit | undefined {
    return (caller) => rateLimitPolicy(this.state.config)(caller);
  }

  admit(call: GateCall): Caller | Promise<Caller> {
    const rule = ruleFor(call.path);
    if (rule === OPEN) return ANONYMOUS_CALLER;
    if (rule === undefined) {
      // A registered method the table does not name (the unit test should have caught it): refused, never open.
      this.logger.error({ path: call.path }, "method missing from the permission table: refused");
      throw new QmError("PERMISSION_DENIED", `no permission is defined for ${call.path}`, { reason: "METHOD_NOT_IN_PERMISSION_TABLE" });
    }
    const state = this.state;
    const values = call.metadata.get("authorization");
    if (values.length === 0) {
      const subject = certificateSubject(call.authContext());
      if (subject !== undefined) return authorize(this.certificateCaller(state, subject, call), rule, call.path);
    }
    const token = bearerToken(values);
    const cached = state.tokens.get(token);
    if (cached !== undefined) return authorize(cached, rule, call.path);
    return this.verifyOnce(state, token).then((admitted) => authorize(admitted, rule, call.path));
  }

  private certificateCaller(state: State, subject: string, call: GateCall): Admitted {
    const known = state.certificates.get(subject);
    if (known === undefined) throw unauthenticated("PRINCIPAL_UNKNOWN", "the client certificate's subject has no principals entry with a tenant");
    // One map lookup per call, as before the cluster's entries existed: the united list is built when it changes.
    // NaN (a date that does not parse) fails the comparison: refused, as nothing shows the certificate is newer.
    const cutoffMs = this.revoked.subjectsIssuedBeforeMs.get(subject);
    if (cutoffMs !== undefined && !(certificateValidFromMs(call.authContext()) >= cutoffMs)) {
      throw unauthenticated("CERTIFICATE_REVOKED", "the client certificate was revoked: its subject's certificates valid from before the revocation time are refused");
    }
    return known;
  }

  private verifyOnce(state: State, token: string): Promise<Admitted> {
    const pending = state.verifying.get(token);
    if (pending !== undefined) return pending;
    const verification = this.verify(state, token);
    // Beyond the bound (a flood of distinct tokens) each call verifies its own: correct, only not shared.
    if (state.verifying.size < TOKEN_VERIFICATIONS_SHARED_MAX) {
      state.verifying.set(token, verification);
      const done = (): void => {
        state.verifying.delete(token);
      };
      void verification.then(done, done);
    }
    return verification;
  }

  /**
   * Re-reads QM_AUTH_CONFIG and its key set. On any error the running config
   * stays and the error is logged; returns whether the new one took effect.
   */
  reload(): boolean {
    const file = this.state.config.file;
    let config: AuthConfig;
    try {
      config = loadAuthConfig(file);
    } catch (error) {
      const message = error instanceof AuthConfigError ? error.message : String(error);
      this.logger.error({ file, error: message }, "QM_AUTH_CONFIG reload failed: keeping the previous config");
      return false;
    }
    this.state = this.build(config);
    this.revoked = this.effective(config.revoked);
    this.logger.info(summary(config), "QM_AUTH_CONFIG reloaded");
    this.revocationsChanged();
    return true;
  }

  /**
   * Replaces the cluster's entries (in etcd's key order) and applies the united list at once: tokens it now refuses
   * are forgotten, and listeners are told. AUTH_REVOKED_MAX counts the file's entries and these together.
   */
  setSharedRevocations(entries: readonly RevocationEntry[]): void {
    this.shared = entries;
    this.revoked = this.effective(this.state.config.revoked);
    const revoked = this.revoked;
    this.state.tokens.deleteWhere((admitted) => admitted.token !== undefined && tokenRevoked(revoked, admitted.caller.subject, admitted.token.jti, admitted.token.iatS) !== undefined);
    this.revocationsChanged();
  }

  /** Whether the list in force refuses a client certificate of this CN valid from validFromMs (NaN: not known). */
  certificateRevoked(subject: string, validFromMs: number): boolean {
    const cutoffMs = this.revoked.subjectsIssuedBeforeMs.get(subject);
    // NaN (a date that does not parse) fails the comparison: refused, as nothing shows the certificate is newer.
    return cutoffMs !== undefined && !(validFromMs >= cutoffMs);
  }

  /** Told after every change of the list in force (a reload, the cluster's entries); returns the unsubscribe. */
  onRevocationsChange(listener: () => void): () => void {
    this.revocationListeners.add(listener);
    return () => this.revocationListeners.delete(listener);
  }

  /** Counts of the list in force, for log lines. */
  revocationSummary(): { tokenIds: number; subjects: number; shared: number } {
    return { tokenIds: this.revoked.tokenIds.size, subjects: this.revoked.subjectsIssuedBeforeMs.size, shared: this.shared.length };
  }

  private effective(file: Revocations): Revocations {
    const room = Math.max(0, AUTH_REVOKED_MAX - revocationCount(file));
    if (this.shared.length > room) {
      // The first in key order are kept, so every node with the same file keeps the same ones.
      this.logger.error(
        { fileEntries: revocationCount(file), clusterEntries: this.shared.length, ignored: this.shared.length - room, max: AUTH_REVOKED_MAX },
        "revocations over the limit: the cluster's entries past it (in key order) are ignored; remove expired ones",
      );
    }
    return mergeRevocations(file, this.shared.length > room ? this.shared.slice(0, room) : this.shared);
  }

  private revocationsChanged(): void {
    for (const listener of this.revocationListeners) {
      try {
        listener();
      } catch (error) {
        this.logger.error({ err: error }, "revocation listener failed");
      }
    }
  }

  private build(config: AuthConfig): State {
    const certificates = new Map<string, Admitted>();
    for (const principal of config.principals.values()) {
      if (principal.tenant !== undefined) certificates.set(principal.subject, admitted(config, principal.subject, principal.tenant, principal.roles));
    }
    return {
      config,
      verifier: config.tokens === undefined ? undefined : new TokenVerifier(config.tokens, this.clock),
      tokens: new TokenCache<Admitted>(this.clock),
      verifying: new Map(),
      certificates,
    };
  }

  private async verify(state: State, token: string): Promise<Admitted> {
    if (state.verifier === undefined) throw unauthenticated("TOKEN_INVALID", "this node accepts no bearer tokens");
    const payload = await state.verifier.verify(token);
    const sub = payload.sub ?? "";
    if (!isValidSubject(sub)) throw unauthenticated("TOKEN_INVALID", "the token's sub claim is not a valid subject");
    // The list in force now, after the signature check's await: a revocation that arrived meanwhile applies.
    const refused = tokenRevoked(this.revoked, sub, payload.jti, payload.iat);
    if (refused !== undefined) throw unauthenticated("TOKEN_REVOKED", refused);
    const principal = state.config.principals.get(sub);
    const tenant = tokenTenant(payload["tenant"], principal);
    const roles = tokenRoles(payload["roles"], state.config);
    const result = {
      ...admitted(state.config, sub, tenant, [...new Set([...roles, ...(principal?.roles ?? [])])]),
      token: { jti: payload.jti, iatS: payload.iat },
    };
    // exp is required by the verifier, so it is a number here.
    state.tokens.set(token, payload.exp ?? 0, result);
    return result;
  }
}

/** Installs the SIGHUP handler for the node's lifetime: `kill -HUP <pid>` reloads the config and key set. */
export function reloadOnSighup(gate: AuthGate, logger: Logger): Lifecycle {
  const onHup = (): void => {
    logger.info("SIGHUP: reloading QM_AUTH_CONFIG");
    gate.reload();
  };
  return lifecycle(
    "auth-reload",
    async () => {
      logger.info(summary(gate.config), "QM_AUTH_CONFIG loaded: every call but health needs a caller with the method's permission");
      process.on("SIGHUP", onHup);
    },
    async () => {
      process.off("SIGHUP", onHup);
    },
  );
}

/** What closes connections: the gRPC server's edge (GrpcServer.closeConnectionsWhere). */
export interface RevokedConnectionCloser {
  closeConnectionsWhere(revoked: (certificate: PeerCertificate) => boolean): number;
}

/**
 * Closes the open connections of client certificates that the list in force refuses, whenever it changes (SIGHUP,
 * the cluster's entries): each call on them would be refused anyway, and a stream opened before (a Backup) would not.
 */
export function closeRevokedConnections(gate: AuthGate, server: RevokedConnectionCloser, logger: Logger): () => void {
  return gate.onRevocationsChange(() => {
    const subjects = new Set<string>();
    const closed = server.closeConnectionsWhere((certificate) => {
      const cn = certificate.subject?.CN;
      if (typeof cn !== "string" || cn.length === 0 || !gate.certificateRevoked(cn, Date.parse(certificate.valid_from))) return false;
      if (subjects.size < CLOSED_SUBJECTS_LOGGED_MAX) subjects.add(cn);
      return true;
    });
    if (closed > 0) logger.warn({ closed, subjects: [...subjects] }, "closed the open connections of client certificates now revoked");
  });
}

/** Subjects named in the line that reports closed connections: enough to tell whose, bounded for a mass revocation. */
const CLOSED_SUBJECTS_LOGGED_MAX = 10;

/** What a start-up log line says of the config: counts, no keys. */
export function summary(config: AuthConfig): Record<string, unknown> {
  return {
    file: config.file,
    keys: config.tokens?.keys.map((k) => k.kid) ?? [],
    roles: config.roles.size,
    principals: config.principals.size,
    defaultRateLimit: config.rateLimits.default ?? null,
    revoked: { tokenIds: config.revoked.tokenIds.size, subjects: config.revoked.subjectsIssuedBeforeMs.size },
  };
}

function authorize(admitted: Admitted, permission: Permission, path: string): Caller {
  if (admitted.permissions.has(permission)) return admitted.caller;
  const method = path.slice(path.lastIndexOf(".") + 1);
  throw new QmError("PERMISSION_DENIED", `${method} needs the permission ${permission}, which no role of this caller grants`, {
    reason: "MISSING_PERMISSION",
    permission,
  });
}

/**
 * Why the list refuses the token, or undefined if it does not. `iat` in seconds as the token states it; jose has
 * checked it is a number when present.
 */
function tokenRevoked(revoked: Revocations, subject: string, jti: string | undefined, iat: number | undefined): string | undefined {
  if (jti !== undefined && revoked.tokenIds.has(jti)) return "the token was revoked (its jti is on the revoked list)";
  const cutoffMs = revoked.subjectsIssuedBeforeMs.get(subject);
  if (cutoffMs === undefined) return undefined;
  if (iat === undefined) return "the token was revoked: its subject's tokens issued before the revocation time are refused, and it has no iat";
  if (iat * 1000 < cutoffMs) return "the token was revoked: its subject's tokens issued before the revocation time are refused";
  return undefined;
}

function admitted(config: AuthConfig, subject: string, tenant: string, roles: readonly string[]): Admitted {
  const permissions = new Set<Permission>();
  for (const role of roles) for (const p of config.roles.get(role) ?? []) permissions.add(p);
  return { caller: Object.freeze({ subject, tenant, roles: Object.freeze([...roles]), authenticated: true }), permissions };
}

function tokenTenant(claim: unknown, principal: Principal | undefined): string {
  if (claim !== undefined && (typeof claim !== "string" || !isValidTenant(claim))) {
    throw unauthenticated("TOKEN_INVALID", `the token's tenant claim is not 1-${TENANT_LENGTH_MAX} letters, digits, _ and -`);
  }
  if (claim !== undefined && principal?.tenant !== undefined && claim !== principal.tenant) {
    throw unauthenticated("TOKEN_INVALID", "the token's tenant claim differs from its subject's principals entry");
  }
  const tenant = claim ?? principal?.tenant;
  if (tenant === undefined) throw unauthenticated("TOKEN_INVALID", "the token has no tenant claim and its subject no principals entry with a tenant");
  return tenant;
}

/** The token's role names that the config defines; others are ignored (see the header). */
function tokenRoles(claim: unknown, config: AuthConfig): string[] {
  if (claim === undefined) return [];
  if (!Array.isArray(claim) || claim.length > TOKEN_ROLES_MAX || !claim.every((r) => typeof r === "string")) {
    throw unauthenticated("TOKEN_INVALID", `the token's roles claim is not an array of at most ${TOKEN_ROLES_MAX} role names`);
  }
  return (claim as string[]).filter((role) => config.roles.has(role));
}
