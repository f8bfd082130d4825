// qmctl: the command-line client of Quartermaster. One invocation is one API
// call. The exit code tells scripts what kind of failure happened, without
// their having to parse the error text (exit_codes.ts).

import { readFileSync } from "node:fs";
import path from "node:path";
import { type ServiceError, status as GrpcStatus } from "@grpc/grpc-js";
import { type ServerAddress, settingName } from "./address";
import { UsageError } from "./args";
import { Connection, connectionFailureCause } from "./connection";
import { EXIT_OK, EXIT_OTHER, EXIT_UNAVAILABLE, EXIT_USAGE, exitCodeForStatus } from "./exit_codes";
import { ADDR_DEFAULT, CommandUsageError, type ParsedCommandLine, parseCommandLine } from "./parse";
import { isServiceError, statusName } from "./rpc";
import { decodeStatusDetails } from "./status_details";
import { runScrub } from "./scrub";

// Re-exported so that callers and tests have one module to import the contract from.
export { EXIT_OK, EXIT_OTHER, EXIT_USAGE, exitCodeForStatus };

/** Where output goes; the process's streams in production, buffers in tests. */
export interface Io {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** package.json's version; this file runs as dist/src/cli/qmctl.js, three levels below the package root. */
export function packageVersion(): string {
  const file = path.join(__dirname, "../../../package.json");
  const parsed = JSON.parse(readFileSync(file, "utf8")) as { version?: unknown };
  return typeof parsed.version === "string" ? parsed.version : "unknown";
}

export function formatServiceError(err: ServiceError, json: boolean): string {
  const details = decodeStatusDetails(err);
  const code = statusName(err.code);
  if (json) {
    return JSON.stringify({ error: { code, codeNumber: err.code, message: err.details, ...details } });
  }
  const refusal = formatRefusal(err, details.errorInfo);
  if (refusal !== undefined) return refusal;
  // A script or a person retrying needs the wait on the line they read first.
  const retry = details.retryInfo === undefined ? "" : ` (retry after ${formatDelay(details.retryInfo.retryDelayMs)})`;
  const out = [`error: ${code}: ${err.details}${retry}`];
  if (details.errorInfo !== undefined) {
    const { reason, domain, metadata } = details.errorInfo;
    out.push(`  reason: ${reason}${domain === "" ? "" : ` (${domain})`}`);
    // The server repeats the reason as metadata `code`; printed twice it is only noise.
    const pairs = Object.keys(metadata)
      .filter((k) => !(k === "code" && metadata[k] === reason))
      .sort()
      .map((k) => `${k}=${metadata[k] ?? ""}`);
    if (pairs.length > 0) out.push(`  metadata: ${pairs.join(" ")}`);
  }
  for (const v of details.badRequest?.fieldViolations ?? []) {
    out.push(`  ${v.field}: ${v.description}`);
  }
  return out.join("\n");
}

function formatDelay(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 3)} s`;
}

/**
 * Authentication and permission refusals in one line each, with the reason or
 * the permission a script or an operator acts on ("log in again" is not "ask
 * for a role").
 */
function formatRefusal(err: ServiceError, info: { reason: string; metadata: Record<string, string> } | undefined): string | undefined {
  if (err.code === GrpcStatus.UNAUTHENTICATED) {
    const reason = info?.reason ?? "UNAUTHENTICATED";
    const hint = reason === "TOKEN_MISSING" ? " (pass --token or set QM_TOKEN)" : "";
    return `error: UNAUTHENTICATED (${reason}): ${err.details}${hint}`;
  }
  if (err.code === GrpcStatus.PERMISSION_DENIED) {
    const permission = info?.metadata["permission"];
    return `error: PERMISSION_DENIED${permission === undefined ? "" : ` (needs ${permission})`}: ${err.details}`;
  }
  return undefined;
}

/**
 * A call that never reached a server. grpc-js's own text ("No connection
 * established. Last error: … Resolution note: ") names neither the setting to
 * fix nor the likely causes; this does both.
 */
export function formatConnectionFailure(err: ServiceError, addr: ServerAddress, deadlineMs: number, json: boolean, tls = false): string {
  const cause = connectionFailureCause(err, deadlineMs, tls);
  const message = `cannot reach a Quartermaster server at ${addr.target} (${settingName(addr.source)}): ${cause}`;
  if (json) {
    return JSON.stringify({
      error: { code: statusName(err.code), codeNumber: err.code, message, addr: addr.target, addrSource: addr.source },
    });
  }
  // A TLS failure's cause already says what to fix: one line.
  if (cause.startsWith("TLS: ")) return `error: ${message}`;
  const check =
    addr.source === "default"
      ? `Is the server running? qmctl used ${ADDR_DEFAULT} because neither --addr nor QM_ADDR is set.`
      : `Is the server running there, and is ${addr.source} right?`;
  return `error: ${message}\n  ${check}`;
}

function parse(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, io: Io): ParsedCommandLine | number {
  try {
    return parseCommandLine(argv, env);
  } catch (err) {
    if (err instanceof CommandUsageError) {
      io.stderr(`error: ${err.message}\n${err.hint}\n`);
      return EXIT_USAGE;
    }
    if (err instanceof UsageError) {
      io.stderr(`error: ${err.message}\n`);
      return EXIT_USAGE;
    }
    io.stderr(`error: ${errorMessage(err)}\n`);
    return EXIT_OTHER;
  }
}

/** Runs one command line to its exit code. Never throws: every failure becomes a message and a code. */
export async function run(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, io: Io): Promise<number> {
  // Offline: reads a data directory, calls no server (src/cli/scrub.ts).
  if (argv[0] === "scrub") return runScrub(argv.slice(1), io);
  const parsed = parse(argv, env, io);
  if (typeof parsed === "number") return parsed;
  if (parsed.kind === "help") {
    io.stdout(`${parsed.text}\n`);
    return EXIT_OK;
  }
  if (parsed.kind === "version") {
    io.stdout(`qmctl ${packageVersion()}\n`);
    return EXIT_OK;
  }

  const { global } = parsed;
  const connection = new Connection(global.addr, global.token, global.tls);
  try {
    connection.prepare();
  } catch (err) {
    io.stderr(`error: ${errorMessage(err)}\n`);
    return err instanceof UsageError ? EXIT_USAGE : EXIT_OTHER;
  }
  try {
    const output = await parsed.call.execute(connection, { deadlineMs: global.timeoutMs });
    io.stdout(global.json ? `${JSON.stringify(output.json)}\n` : `${output.text}\n`);
    return EXIT_OK;
  } catch (err) {
    if (isServiceError(err) && (connection.neverReached(err) || Connection.answeredNotGrpc(err))) {
      io.stderr(`${formatConnectionFailure(err, global.addr, global.timeoutMs, global.json, global.tls !== undefined)}\n`);
      return EXIT_UNAVAILABLE;
    }
    if (isServiceError(err)) {
      io.stderr(`${formatServiceError(err, global.json)}\n`);
      return exitCodeForStatus(err.code);
    }
    io.stderr(`error: ${errorMessage(err)}\n`);
    return EXIT_OTHER;
  } finally {
    connection.close();
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
  // Node warns (DEP0123) when grpc-js sends an IP address as the TLS server name (--addr 127.0.0.1:PORT with TLS):
  // a message for Node's developers, not for someone running a command.
  process.noDeprecation = true;
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
