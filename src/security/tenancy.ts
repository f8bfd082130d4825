// Tenancy in actor ids. An actor's id is its tenant's namespace for the
// object: `kind/id` for the default tenant (exactly the ids written before
// tenants existed, so existing journals, partitions and subjects are
// unchanged) and `kind/tenant/id` for any other tenant. Neither ids
// (ID_PATTERN) nor tenants (TENANT_PATTERN) may contain `/`, so the two forms
// cannot collide and every id parses one way. The kind stays the first
// segment, which is how the runtime finds an actor's behavior; the tenant
// being part of the id makes it part of the journal key, the JetStream
// subject and the partition hash, with nothing else to change.

import { QmError } from "../errors";
import { TENANT_LENGTH_MAX, TENANT_PATTERN } from "../limits";
import { DEFAULT_TENANT } from "./caller";

/** The caller an ask is made for: whose tenant it may reach, and whom the audit trail names. */
export interface Who {
  readonly subject: string;
  readonly tenant: string;
}

/** The subject recorded for changes nobody asked for in that turn: expiries, saga steps run by a timer. */
export const SYSTEM_SUBJECT = "system";

export function isValidTenant(tenant: string): boolean {
  return tenant.length >= 1 && tenant.length <= TENANT_LENGTH_MAX && TENANT_PATTERN.test(tenant);
}

/** The actor id of `id` of `kind` in `tenant`. The default tenant's ids are the pre-tenancy ones. */
export function tenantActorId(kind: string, tenant: string, id: string): string {
  if (tenant === DEFAULT_TENANT) return `${kind}/${id}`;
  // A gate that admits a tenant no actor id can carry is misconfigured; refuse rather than build an ambiguous id.
  if (!isValidTenant(tenant)) {
    throw new QmError("PERMISSION_DENIED", `the caller's tenant is not a valid tenant name (1-${TENANT_LENGTH_MAX} letters, digits, _ and -)`, {
      reason: "TENANT_INVALID",
    });
  }
  return `${kind}/${tenant}/${id}`;
}

/** The tenant an actor id belongs to: the middle segment of `kind/tenant/id`, else the default tenant. */
export function tenantOfActorId(actorId: string): string {
  const first = actorId.indexOf("/");
  const last = actorId.lastIndexOf("/");
  return first === last ? DEFAULT_TENANT : actorId.slice(first + 1, last);
}

/** The object's own id (the last segment): what the actor's state and every answer name it by. */
export function keyOfActorId(actorId: string): string {
  return actorId.slice(actorId.lastIndexOf("/") + 1);
}
