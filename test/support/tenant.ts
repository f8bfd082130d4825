// The tenant tests' gate: it names the caller and its tenant from test
// metadata, so tests can act as several tenants without QM_AUTH_CONFIG. Only
// tests build this gate: the production node never lets a request choose its
// tenant; its gate derives the tenant from credentials.

import { Metadata } from "@grpc/grpc-js";
import type { ActorSystem } from "../../src/actors/runtime/actor_system";
import type { LmdbJournal } from "../../src/journal/lmdb_journal";
import { type Caller, DEFAULT_TENANT } from "../../src/security/caller";
import type { CallGate } from "../../src/security/call_gate";
import { startGatedNode, TEST_SUBJECT_HEADER } from "./gated_node";
import { type Clients, createClients } from "./server_process";

export const TEST_TENANT_HEADER = "x-test-tenant";

/** Admits every call as the subject and tenant its test metadata names (default tenant, subject "anonymous" when absent). */
export const TEST_TENANT_GATE: CallGate = {
  admit(call): Caller {
    const first = (key: string): string | undefined => {
      const value = call.metadata.get(key)[0];
      return typeof value === "string" ? value : undefined;
    };
    const tenant = first(TEST_TENANT_HEADER) ?? DEFAULT_TENANT;
    return { subject: first(TEST_SUBJECT_HEADER) ?? "anonymous", tenant, roles: [], authenticated: tenant !== DEFAULT_TENANT };
  },
};

/** Metadata that makes TEST_TENANT_GATE admit the call as `subject` of `tenant`. */
export function as(tenant: string, subject = `${tenant}-user`): { metadata: Metadata } {
  const metadata = new Metadata();
  metadata.set(TEST_TENANT_HEADER, tenant);
  metadata.set(TEST_SUBJECT_HEADER, subject);
  return { metadata };
}

export interface TenantNode {
  readonly addr: string;
  readonly clients: Clients;
  readonly journal: LmdbJournal;
  readonly system: ActorSystem;
  stop(): Promise<void>;
}

/** The gated test node (support/gated_node.ts) over `dataDir`, behind TEST_TENANT_GATE, with clients. */
export async function startTenantNode(dataDir: string): Promise<TenantNode> {
  const node = await startGatedNode(TEST_TENANT_GATE, dataDir);
  const clients = createClients(node.address);
  return {
    addr: node.address,
    clients,
    journal: node.journal,
    system: node.system,
    stop: async () => {
      clients.close();
      await node.stop();
    },
  };
}
