// qmctl backup and qmctl restore. Unlike the API commands they move a file:
// backup streams AdminService.Backup from a running node into FILE; restore
// writes a new data directory from FILE offline and never connects.
//
// Local failures (a directory in use, a damaged backup) are QmErrors; they are
// handed to qmctl as the status errors a server would send, so they print and
// exit the same way (5 for a directory in use or not empty, 4 for a missing
// file). UNAVAILABLE ones stay plain errors: qmctl reads an UNAVAILABLE
// status that never reached a server as "cannot reach the server".

import { open, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { type ServiceError, status as GrpcStatus } from "@grpc/grpc-js";
import type { BackupManifest } from "../backup/backup_file";
import { restoreBackup, verifyBackupFile } from "../backup/restore";
import { QmError } from "../errors";
import { AdminServiceClient } from "../gen/quartermaster/v1/admin";
import { toServiceError } from "../grpc/status_mapping";
import { parseDurationMs, UsageError } from "./args";
import type { CommandSpec, Output } from "./command_spec";
import type { Connection } from "./connection";
import type { JsonValue } from "./json";

/** A backup of a large journal takes a while; the global --timeout (10 s by default) would cut it short, so backup has its own default. */
export const BACKUP_TIMEOUT_MS_DEFAULT = 60 * 60 * 1000;

interface Summary {
  readonly manifest: BackupManifest;
  readonly bytes: number;
}

export const BACKUP_COMMANDS: readonly CommandSpec[] = [
  {
    name: "backup",
    summary: "stream a consistent online backup of the node into FILE (a tar stream, manifest first), then check every sha256 in it",
    args: [],
    options: {
      out: { type: "string", value: "FILE", required: true, help: "where to write the backup; must not exist (--timeout bounds the whole backup, default 1h)" },
    },
    build(f) {
      const out = f.required("out");
      const timeout = f.string("timeout");
      const timeoutMs = timeout === undefined ? BACKUP_TIMEOUT_MS_DEFAULT : parseTimeoutMs(timeout);
      return {
        method: "AdminService/Backup",
        request: { out },
        execute: (connection) => localErrorsAsStatus(async () => output("wrote", out, await backup(connection, out, timeoutMs))),
      };
    },
  },
  {
    name: "restore",
    summary: "write a new data directory from a backup FILE, offline, checking every size and sha256 (DIR must be empty or missing, and not in use)",
    args: [],
    options: {
      from: { type: "string", value: "FILE", required: true, help: "the backup file" },
      "data-dir": { type: "string", value: "DIR", required: true, help: "the data directory to create; left empty if the restore fails" },
    },
    build(f) {
      const from = f.required("from");
      const dataDir = f.required("data-dir");
      return {
        method: "restore",
        request: { from, dataDir },
        execute: () => localErrorsAsStatus(async () => output("restored", from, await restoreBackup(from, dataDir))),
      };
    },
  },
];

/** Streams the backup into FILE.partial, syncs it, checks it end to end, and only then gives it its name. */
async function backup(connection: Connection, out: string, timeoutMs: number): Promise<Summary> {
  if (await exists(out)) throw new QmError("FAILED_PRECONDITION", `${out} already exists; a backup never overwrites a file`);
  const partial = `${out}.partial`;
  const client = connection.client(AdminServiceClient);
  const file = await open(partial, "w", 0o600);
  let ok = false;
  try {
    const stream = client.backup({}, { deadline: new Date(Date.now() + timeoutMs) });
    for await (const message of stream) {
      const data = (message as { data?: Buffer }).data;
      if (data !== undefined && data.length > 0) await file.write(data);
    }
    await file.sync();
    await file.close();
    const summary = await verifyBackupFile(partial);
    await rename(partial, out);
    await syncDirectory(path.dirname(out));
    ok = true;
    return summary;
  } finally {
    await file.close().catch(() => undefined);
    if (!ok) await rm(partial, { force: true });
  }
}

function output(verb: string, file: string, summary: Summary): Output {
  const { manifest, bytes } = summary;
  const node = manifest.sourceNode;
  return {
    json: { file, bytes, manifest: manifest as unknown as JsonValue },
    text:
      `${verb} ${file}: ${manifest.files.length} files, ${bytes} bytes of files checked; ` +
      `backup created ${manifest.createdAt} from node ${node.nodeId} on ${node.hostname} (${node.address}, ${node.dataDir})`,
  };
}

async function localErrorsAsStatus(run: () => Promise<Output>): Promise<Output> {
  try {
    return await run();
  } catch (error) {
    if (!(error instanceof QmError)) throw error;
    const status = toServiceError(error);
    if (status.code === GrpcStatus.UNAVAILABLE || status.code === GrpcStatus.DEADLINE_EXCEEDED) throw new Error(error.message);
    const serviceError: ServiceError = Object.assign(new Error(error.message), {
      code: status.code ?? GrpcStatus.UNKNOWN,
      details: status.details ?? error.message,
      metadata: status.metadata ?? undefined,
    }) as ServiceError;
    throw serviceError;
  }
}

function parseTimeoutMs(text: string): number {
  const ms = /^\d+$/.test(text) ? Number(text) : parseDurationMs(text, "--timeout");
  if (!Number.isSafeInteger(ms) || ms <= 0) throw new UsageError(`--timeout: "${text}" is not a positive number of ms`);
  return ms;
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
