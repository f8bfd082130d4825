// Who is calling. Every RPC is answered on behalf of one Caller: its tenant
// scopes every SKU and order it can see (tenancy is part of the actor id), and
// its subject is what the audit trail records. Without QM_AUTH_CONFIG every
// call is the anonymous caller of the "default" tenant, so a node on loopback
// keeps working with no configuration and today's data keeps its ids.

export const DEFAULT_TENANT = "default";

export interface Caller {
  /** The token's `sub`, or a client certificate's subject CN; "anonymous" without authentication. */
  readonly subject: string;
  readonly tenant: string;
  /** Role names from the token and the config's principals entry; empty when anonymous. */
  readonly roles: readonly string[];
  /** False only for the anonymous caller of a node without QM_AUTH_CONFIG. */
  readonly authenticated: boolean;
}

export const ANONYMOUS_CALLER: Caller = Object.freeze({ subject: "anonymous", tenant: DEFAULT_TENANT, roles: [], authenticated: false });
