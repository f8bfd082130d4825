import { status as GrpcStatus } from "@grpc/grpc-js";
import { isServiceError } from "../../src/cli/rpc";
import { decodeStatusDetails } from "./server_process";

/** How a call ended: OK, or its gRPC status code and ErrorInfo reason. */
export interface GrpcOutcome {
  readonly code: GrpcStatus;
  readonly reason: string | undefined;
}

/** The outcome of a call's promise; anything but a gRPC error is rethrown. */
export async function grpcOutcomeOf(promise: Promise<unknown>): Promise<GrpcOutcome> {
  try {
    await promise;
    return { code: GrpcStatus.OK, reason: undefined };
  } catch (error) {
    if (!isServiceError(error)) throw error;
    return { code: error.code, reason: decodeStatusDetails(error).errorInfo?.reason };
  }
}
