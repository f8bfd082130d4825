// The one door every RPC passes before its handler runs: it names the caller
// and decides whether the caller may make this call now. Authentication,
// per-method permissions and rate limits live behind it (src/security/); the
// gRPC layer only asks it. It throws QmError UNAUTHENTICATED,
// PERMISSION_DENIED or RATE_LIMITED, which status_mapping turns into statuses.

import type { Metadata, ServerUnaryCall } from "@grpc/grpc-js";

/** grpc-js does not export its AuthContext type: the peer certificate a TLS connection presented. */
export type AuthContext = ReturnType<ServerUnaryCall<unknown, unknown>["getAuthContext"]>;
import { ANONYMOUS_CALLER, type Caller, DEFAULT_TENANT } from "./caller";
import { certificateSubject } from "./peer_certificate";

/** What the gate reads of a call: its full method path, its metadata, its transport's peer certificate. */
export interface GateCall {
  /** The full method path, e.g. `/quartermaster.v1.InventoryService/Reserve`. */
  readonly path: string;
  readonly metadata: Metadata;
  authContext(): AuthContext;
  /** The decoded request (or a DecodeFailure): a rate limit charges ReserveBatch per item. Not validated yet. */
  readonly request?: unknown;
}

export interface CallGate {
  /** Synchronous when it can be (the open gate, a cached token); a promise when it must wait (signature checks, a shared limiter). */
  admit(call: GateCall): Caller | Promise<Caller>;
}

/**
 * The gate of a node without QM_AUTH_CONFIG: it admits everyone to the default
 * tenant. A caller whose client certificate the listener verified (mutual TLS,
 * QM_TLS_CLIENT_CA) is named by its CN, so that the audit trail and the logs
 * say who it was; everyone else is the anonymous caller. No roles either way:
 * without QM_AUTH_CONFIG nothing checks them.
 */
export const OPEN_GATE: CallGate = {
  admit: (call) => {
    const subject = certificateSubject(call.authContext());
    return subject === undefined ? ANONYMOUS_CALLER : { subject, tenant: DEFAULT_TENANT, roles: [], authenticated: true };
  },
};
