// qmctl's exit codes: what kind of failure happened, for scripts that must not
// parse error text. The numbers are a published contract (README, --help):
// never renumber one, only add.

import { status as GrpcStatus } from "@grpc/grpc-js";

export const EXIT_OK = 0;
export const EXIT_OTHER = 1;
export const EXIT_USAGE = 2;
export const EXIT_INVALID_ARGUMENT = 3;
export const EXIT_NOT_FOUND = 4;
export const EXIT_PRECONDITION = 5;
export const EXIT_UNAVAILABLE = 6;
// Authentication is the next piece of work; these have their own codes now so
// that a script written today can tell "log in again" from "not allowed".
export const EXIT_UNAUTHENTICATED = 7;
export const EXIT_PERMISSION_DENIED = 8;

/** gRPC status → exit code; a status not listed exits EXIT_OTHER. */
const EXIT_CODE_BY_STATUS: ReadonlyMap<GrpcStatus, number> = new Map([
  [GrpcStatus.INVALID_ARGUMENT, EXIT_INVALID_ARGUMENT],
  [GrpcStatus.NOT_FOUND, EXIT_NOT_FOUND],
  [GrpcStatus.FAILED_PRECONDITION, EXIT_PRECONDITION],
  [GrpcStatus.ALREADY_EXISTS, EXIT_PRECONDITION],
  [GrpcStatus.UNAVAILABLE, EXIT_UNAVAILABLE],
  [GrpcStatus.DEADLINE_EXCEEDED, EXIT_UNAVAILABLE],
  [GrpcStatus.UNAUTHENTICATED, EXIT_UNAUTHENTICATED],
  [GrpcStatus.PERMISSION_DENIED, EXIT_PERMISSION_DENIED],
]);

export function exitCodeForStatus(code: number): number {
  return EXIT_CODE_BY_STATUS.get(code) ?? EXIT_OTHER;
}

export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  any other error
  2  usage error (bad flags or arguments, or a malformed --addr)
  3  INVALID_ARGUMENT
  4  NOT_FOUND
  5  FAILED_PRECONDITION or ALREADY_EXISTS (e.g. insufficient stock, illegal transition)
  6  UNAVAILABLE or DEADLINE_EXCEEDED, or the server cannot be reached
  7  UNAUTHENTICATED
  8  PERMISSION_DENIED`;
