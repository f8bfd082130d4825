// The only place that knows gRPC status codes. Domain errors become a status,
// a message, and google.rpc details in `grpc-status-details-bin`: an ErrorInfo
// always (reason = the stable domain code), a BadRequest for invalid input, a
// RetryInfo when the error says when to retry (metadata retry_after_ms).

import { Metadata, status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { type ErrorCode, QmError, RETRY_AFTER_MS_KEY } from "../errors";
import { Any } from "../gen/google/protobuf/any";
import { BadRequest, ErrorInfo, RetryInfo } from "../gen/google/rpc/error_details";
import { Status } from "../gen/google/rpc/status";
import type { ReserveBatchError } from "../gen/quartermaster/v1/inventory";

export const ERROR_DOMAIN = "quartermaster.v1";

const CODES: Readonly<Record<ErrorCode, GrpcStatus>> = {
  INVALID_ARGUMENT: GrpcStatus.INVALID_ARGUMENT,
  NOT_FOUND: GrpcStatus.NOT_FOUND,
  ALREADY_EXISTS: GrpcStatus.ALREADY_EXISTS,
  INSUFFICIENT_STOCK: GrpcStatus.FAILED_PRECONDITION,
  ILLEGAL_TRANSITION: GrpcStatus.FAILED_PRECONDITION,
  FAILED_PRECONDITION: GrpcStatus.FAILED_PRECONDITION,
  LIMIT_EXCEEDED: GrpcStatus.RESOURCE_EXHAUSTED,
  OVERLOADED: GrpcStatus.RESOURCE_EXHAUSTED,
  ACTORS_EXHAUSTED: GrpcStatus.RESOURCE_EXHAUSTED,
  DISK_FULL: GrpcStatus.RESOURCE_EXHAUSTED,
  DATA_LOSS: GrpcStatus.DATA_LOSS,
  UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  NOT_OWNER: GrpcStatus.UNAVAILABLE,
  FENCED: GrpcStatus.ABORTED,
  DEADLINE_EXCEEDED: GrpcStatus.DEADLINE_EXCEEDED,
  UNAUTHENTICATED: GrpcStatus.UNAUTHENTICATED,
  PERMISSION_DENIED: GrpcStatus.PERMISSION_DENIED,
  RATE_LIMITED: GrpcStatus.RESOURCE_EXHAUSTED,
  INTERNAL: GrpcStatus.INTERNAL,
};

/** Turns anything thrown by a handler into the error grpc-js sends. Unknown errors become INTERNAL without internals. */
export function toServiceError(error: unknown): Partial<ServiceError> {
  const qm = error instanceof QmError ? error : new QmError("INTERNAL", "internal error");
  const code = CODES[qm.code];
  const { reason, ...rest } = qm.metadata;
  const details: Any[] = [
    Any.fromPartial({
      typeUrl: "type.googleapis.com/google.rpc.ErrorInfo",
      value: Buffer.from(ErrorInfo.encode({ reason: reason ?? qm.code, domain: ERROR_DOMAIN, metadata: { code: qm.code, ...rest } }).finish()),
    }),
  ];
  if (qm.violations.length > 0) {
    details.push(
      Any.fromPartial({
        typeUrl: "type.googleapis.com/google.rpc.BadRequest",
        value: Buffer.from(BadRequest.encode({ fieldViolations: qm.violations.map((v) => ({ ...v })) }).finish()),
      }),
    );
  }
  const retryAfter = rest[RETRY_AFTER_MS_KEY];
  if (retryAfter !== undefined && /^\d{1,15}$/.test(retryAfter)) {
    const retryAfterMs = Number(retryAfter);
    const retryDelay = { seconds: Math.floor(retryAfterMs / 1000), nanos: (retryAfterMs % 1000) * 1_000_000 };
    details.push(
      Any.fromPartial({
        typeUrl: "type.googleapis.com/google.rpc.RetryInfo",
        value: Buffer.from(RetryInfo.encode({ retryDelay }).finish()),
      }),
    );
  }
  const metadata = new Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(Status.encode({ code, message: qm.message, details }).finish()));
  return { code, details: qm.message, metadata };
}

/** One failed item of a batch call: the code, reason and metadata a single call would have carried. */
export function toItemError(error: QmError): ReserveBatchError {
  const { reason, ...rest } = error.metadata;
  return { code: CODES[error.code], reason: reason ?? error.code, message: error.message, metadata: { code: error.code, ...rest } };
}
