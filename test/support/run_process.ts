// Runs a program (qmctl, a server that must refuse to start, npm, a bench
// driver) to its exit with a deadline and returns its exit code and output:
// the one copy of what several suites each wrote for themselves.

import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { freePort, REPO_ROOT, SERVER_MAIN } from "./server_process";

export const QMCTL = path.join(REPO_ROOT, "bin/qmctl.js");
/** One run: process start, a call or two, exit. Only bounds a hang, so generous: CI machines stall. */
export const PROCESS_RUN_DEADLINE_MS = 60_000;
/** How long a server that must refuse to start may take to exit; one that serves instead never exits and fails here. */
export const SERVER_REFUSAL_DEADLINE_MS = 15_000;
/** Output kept per stream; what these programs print is far below this. */
export const PROCESS_OUTPUT_CHARS_MAX = 1024 * 1024;

export interface ProcessRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface ProcessRunHooks {
  /**
   * Sent at the deadline (SIGKILL by default). A program that owns children
   * of its own (bench:compare's contenders) wants SIGTERM, so that it stops
   * them before it exits.
   */
  readonly deadlineSignal?: NodeJS.Signals;
  /** Called with the output so far after each chunk on stdout, to act on the running program (send it a signal once it serves). */
  readonly onStdout?: (stdout: string, child: ChildProcess) => void;
}

/** `command` is the program and its first arguments; `env` is added to this process's environment. */
export function runProcess(
  command: readonly string[],
  env: Record<string, string> = {},
  deadlineMs = PROCESS_RUN_DEADLINE_MS,
  hooks: ProcessRunHooks = {},
): Promise<ProcessRun> {
  return new Promise((resolve, reject) => {
    const [program = "", ...args] = command;
    const child = spawn(program, args, { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      if (stdout.length < PROCESS_OUTPUT_CHARS_MAX) stdout += chunk;
      hooks.onStdout?.(stdout, child);
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      if (stderr.length < PROCESS_OUTPUT_CHARS_MAX) stderr += chunk;
    });
    const timer = setTimeout(() => {
      child.kill(hooks.deadlineSignal ?? "SIGKILL");
      reject(new Error(`${command.join(" ")} did not exit within ${deadlineMs} ms; stderr: ${stderr}`));
    }, deadlineMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * `node bin/qmctl.js args` (or `command args`). QM_ADDR and QM_TOKEN are unset
 * unless `env` sets them, so that only what the test gives can apply.
 */
export function runQmctl(args: readonly string[], env: Record<string, string> = {}, command: readonly string[] = [process.execPath, QMCTL]): Promise<ProcessRun> {
  return runProcess([...command, ...args], { QM_ADDR: "", QM_TOKEN: "", ...env });
}

/** A server's exit code and its stdout then stderr, for a server expected to refuse to start. */
export interface ServerExit {
  readonly code: number | null;
  readonly output: string;
}

/**
 * Starts a server on dataDir, behind `wrapper` if any (`unshare -n ...`), and
 * waits for it to exit: the data-directory lock's tests, where it must be
 * refused. One that serves instead is sent SIGTERM (it drains and lets go of
 * the directory) and fails the test at the deadline.
 */
export async function runServerToExit(dataDir: string, wrapper: readonly string[] = [], deadlineMs = SERVER_REFUSAL_DEADLINE_MS): Promise<ServerExit> {
  const port = await freePort();
  const run = await runProcess(
    [...wrapper, process.execPath, SERVER_MAIN],
    { QM_DATA_DIR: dataDir, QM_LISTEN: `127.0.0.1:${port}`, QM_METRICS_LISTEN: "", QM_LOG_LEVEL: "warn" },
    deadlineMs,
    { deadlineSignal: "SIGTERM" },
  );
  return { code: run.code, output: run.stdout + run.stderr };
}
