// AdminService: operator calls. Backup streams the backup file as it is
// written, one chunk per message, and waits for the client to drain what it
// was sent before reading more, so a slow client holds back at most a few
// chunks of server memory.

import { type ServerWritableStream, status as GrpcStatus } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { DataDirBackup } from "../backup/data_dir_backup";
import { invalidArgument, QmError } from "../errors";
import type { AdminServiceServer, BackupChunk, BackupRequest } from "../gen/quartermaster/v1/admin";
import { toServiceError } from "./status_mapping";
import type { CallGate } from "../security/call_gate";
import { admit, type CallObserver, DecodeFailure } from "./unary";

const METHOD = "AdminService/Backup";

export function adminService(
  backups: DataDirBackup | undefined,
  logger: Logger,
  observe: CallObserver,
  isReady: () => boolean,
  gate: CallGate,
): AdminServiceServer {
  return {
    backup(call: ServerWritableStream<BackupRequest, BackupChunk>): void {
      const started = performance.now();
      const fail = (error: unknown): void => {
        if (!(error instanceof QmError)) logger.error({ err: error, method: METHOD }, "backup failed");
        const serviceError = toServiceError(error);
        observe(METHOD, serviceError.code ?? GrpcStatus.INTERNAL, (performance.now() - started) / 1000);
        if (!call.cancelled) call.emit("error", serviceError);
      };
      // The caller's identity is checked and recorded in the log; a backup holds no tenant's objects in particular.
      admit(
        gate,
        call,
        (caller) => {
          const request = call.request as unknown;
          if (request instanceof DecodeFailure) {
            fail(invalidArgument([{ field: "request", description: `not a valid message: ${request.reason}` }]));
            return;
          }
          if (!isReady()) {
            fail(new QmError("UNAVAILABLE", "recovery is not finished"));
            return;
          }
          if (backups === undefined) {
            // A cluster's journal is JetStream's: its streams are backed up with NATS's own tools.
            fail(new QmError("FAILED_PRECONDITION", "a cluster node has no local journal to back up: back up the QM_<cluster>_* JetStream streams with nats stream backup", {
              reason: "BACKUP_NOT_LOCAL",
            }));
            return;
          }
          backups.run((chunk) => send(call, chunk)).then(
            (summary) => {
              logger.info({ subject: caller.subject, tenant: caller.tenant, bytes: summary.bytes, files: summary.manifest.files.length, createdAt: summary.manifest.createdAt }, "backup sent");
              observe(METHOD, GrpcStatus.OK, (performance.now() - started) / 1000);
              call.end();
            },
            (error: unknown) => {
              logger.warn({ err: error }, "backup abandoned");
              fail(error);
            },
          );
        },
        fail,
      );
    },
  };
}

/** Sends one chunk; resolves once the stream can take more, rejects if the call ends first. */
function send(call: ServerWritableStream<BackupRequest, BackupChunk>, chunk: Buffer): Promise<void> {
  if (call.cancelled) return Promise.reject(new QmError("UNAVAILABLE", "the client cancelled the backup"));
  if (call.write({ data: chunk })) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (error?: QmError): void => {
      call.off("drain", onDrain);
      call.off("cancelled", onGone);
      call.off("close", onGone);
      if (error === undefined) resolve();
      else reject(error);
    };
    const onDrain = (): void => done();
    const onGone = (): void => done(new QmError("UNAVAILABLE", "the client cancelled the backup"));
    call.on("drain", onDrain);
    call.on("cancelled", onGone);
    call.on("close", onGone);
  });
}
