// Decodes the rich error details the server attaches to a failed call: the
// `grpc-status-details-bin` trailer holds a google.rpc.Status whose details
// are google.protobuf.Any values. qmctl prints them and the integration tests
// assert on them, so both read them through this one decoder.

import type { Metadata } from "@grpc/grpc-js";
import { BadRequest, ErrorInfo, RetryInfo } from "../gen/google/rpc/error_details";
import { Status } from "../gen/google/rpc/status";

export const STATUS_DETAILS_KEY = "grpc-status-details-bin";
export const ERROR_INFO_TYPE_URL = "type.googleapis.com/google.rpc.ErrorInfo";
export const BAD_REQUEST_TYPE_URL = "type.googleapis.com/google.rpc.BadRequest";
export const RETRY_INFO_TYPE_URL = "type.googleapis.com/google.rpc.RetryInfo";

export interface StatusDetails {
  errorInfo?: { reason: string; domain: string; metadata: Record<string, string> };
  badRequest?: { fieldViolations: { field: string; description: string }[] };
  /** How long to wait before trying again (a rate limit's next token), in whole milliseconds. */
  retryInfo?: { retryDelayMs: number };
}

/** What decoding needs of a grpc-js ServiceError; errors without trailers (e.g. connection failures) decode to nothing. */
export interface HasMetadata {
  readonly metadata?: Metadata;
}

/**
 * Details of kinds this build does not know are skipped, as gRPC intends, so
 * that a newer server can add kinds. A trailer that does not decode is also
 * skipped rather than thrown: the caller is already reporting an error, and the
 * status code and message it has are worth more than a decoding failure.
 */
export function decodeStatusDetails(err: HasMetadata): StatusDetails {
  const out: StatusDetails = {};
  const values = err.metadata?.get(STATUS_DETAILS_KEY) ?? [];
  for (const value of values) {
    if (typeof value === "string") continue; // grpc-js hands -bin keys over as Buffers; a string is not ours.
    let status: Status;
    try {
      status = Status.decode(value);
    } catch {
      continue;
    }
    for (const detail of status.details) {
      try {
        if (detail.typeUrl === ERROR_INFO_TYPE_URL && out.errorInfo === undefined) {
          const info = ErrorInfo.decode(detail.value);
          out.errorInfo = { reason: info.reason, domain: info.domain, metadata: { ...info.metadata } };
        } else if (detail.typeUrl === BAD_REQUEST_TYPE_URL) {
          const bad = BadRequest.decode(detail.value);
          const violations = bad.fieldViolations.map((v) => ({ field: v.field, description: v.description }));
          out.badRequest = { fieldViolations: [...(out.badRequest?.fieldViolations ?? []), ...violations] };
        } else if (detail.typeUrl === RETRY_INFO_TYPE_URL && out.retryInfo === undefined) {
          const delay = RetryInfo.decode(detail.value).retryDelay;
          if (delay !== undefined) out.retryInfo = { retryDelayMs: Math.ceil(delay.seconds * 1000 + delay.nanos / 1_000_000) };
        }
      } catch {
        continue;
      }
    }
  }
  return out;
}
