// qmctl: the command-line client of Quartermaster. One invocation is one API
// call. The exit code tells scripts what kind of failure happened, without
// their having to parse the error text (see EXIT_CODES_HELP).

import { type ServiceError, status as GrpcStatus } from "@grpc/grpc-js";
import { CommandUsageError, type ParsedCommandLine, parseCommandLine } from "./commands";
import { UsageError } from "./args";
import { type Clients, createClients, isServiceError, statusName } from "./rpc";
import { decodeStatusDetails } from "./status_details";

export const EXIT_OK = 0;
export const EXIT_OTHER = 1;
export const EXIT_USAGE = 2;
export const EXIT_INVALID_ARGUMENT = 3;
export const EXIT_NOT_FOUND = 4;
export const EXIT_PRECONDITION = 5;
export const EXIT_UNAVAILABLE = 6;

/** Where output goes; the process's streams in production, buffers in tests. */
export interface Io {
  stdout(text: string): void;
  stderr(text: string): void;
}

export function exitCodeForStatus(code: number): number {
  switch (code) {
    case GrpcStatus.INVALID_ARGUMENT:
      return EXIT_INVALID_ARGUMENT;
    case GrpcStatus.NOT_FOUND:
      return EXIT_NOT_FOUND;
    case GrpcStatus.FAILED_PRECONDITION:
    case GrpcStatus.ALREADY_EXISTS:
      return EXIT_PRECONDITION;
    case GrpcStatus.UNAVAILABLE:
    case GrpcStatus.DEADLINE_EXCEEDED:
      return EXIT_UNAVAILABLE;
    default:
      return EXIT_OTHER;
  }
}

export function formatServiceError(err: ServiceError, json: boolean): string {
  const details = decodeStatusDetails(err);
  const code = statusName(err.code);
  if (json) {
    return JSON.stringify({ error: { code, codeNumber: err.code, message: err.details, ...details } });
  }
  const out = [`error: ${code}: ${err.details}`];
  if (details.errorInfo !== undefined) {
    const { reason, domain, metadata } = details.errorInfo;
    out.push(`  reason: ${reason}${domain === "" ? "" : ` (${domain})`}`);
    const pairs = Object.keys(metadata)
      .sort()
      .map((k) => `${k}=${metadata[k] ?? ""}`);
    if (pairs.length > 0) out.push(`  metadata: ${pairs.join(" ")}`);
  }
  for (const v of details.badRequest?.fieldViolations ?? []) {
    out.push(`  ${v.field}: ${v.description}`);
  }
  return out.join("\n");
}

/** Runs one command line to its exit code. Never throws: every failure becomes a message and a code. */
export async function run(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, io: Io): Promise<number> {
  let parsed: ParsedCommandLine;
  try {
    parsed = parseCommandLine(argv, env);
  } catch (err) {
    if (err instanceof CommandUsageError) {
      io.stderr(`error: ${err.message}\n\n${err.usage}\n`);
      return EXIT_USAGE;
    }
    if (err instanceof UsageError) {
      io.stderr(`error: ${err.message}\n`);
      return EXIT_USAGE;
    }
    io.stderr(`error: ${errorMessage(err)}\n`);
    return EXIT_OTHER;
  }
  if (parsed.kind === "help") {
    io.stdout(`${parsed.text}\n`);
    return EXIT_OK;
  }

  const { global } = parsed;
  let clients: Clients;
  try {
    clients = createClients(global.addr);
  } catch (err) {
    // grpc-js throws here only for a target it cannot parse: the --addr the user typed.
    io.stderr(`error: --addr "${global.addr}": ${errorMessage(err)}\n`);
    return EXIT_USAGE;
  }
  try {
    const output = await parsed.call.execute(clients, { deadlineMs: global.timeoutMs });
    io.stdout(global.json ? `${JSON.stringify(output.json)}\n` : `${output.text}\n`);
    return EXIT_OK;
  } catch (err) {
    if (isServiceError(err)) {
      io.stderr(`${formatServiceError(err, global.json)}\n`);
      return exitCodeForStatus(err.code);
    }
    io.stderr(`error: ${errorMessage(err)}\n`);
    return EXIT_OTHER;
  } finally {
    clients.close();
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Entry point of bin/qmctl.js. Sets process.exitCode instead of calling
 * process.exit(), so that output piped to another process is flushed first.
 */
export function main(argv: readonly string[] = process.argv.slice(2)): void {
  const io: Io = {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
  };
  void run(argv, process.env, io).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`error: ${errorMessage(err)}\n`);
      process.exitCode = EXIT_OTHER;
    },
  );
}
