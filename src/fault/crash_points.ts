// Named points where the process can be told to die at once (SIGKILL on
// itself), so that tests can crash it at an exact step of a saga instead of
// hoping a timed kill lands there. Off unless QM_FAULT_CRASH_POINTS (read by
// config.ts) names the point; main arms them once at start.

export const CRASH_POINT_NAMES = [
  /** The order's saga step is durable; no SKU has been asked yet, or (a step that asks with its intent) none has answered. */
  "order.saga.intent",
  /** Every SKU has answered the step, its outcome is not yet recorded. */
  "order.saga.outcome",
] as const;

export type CrashPointName = (typeof CRASH_POINT_NAMES)[number];

let armed: ReadonlySet<string> = new Set();

export function armCrashPoints(names: readonly CrashPointName[]): void {
  armed = new Set(names);
}

export function crashPoint(name: CrashPointName): void {
  if (armed.size === 0 || !armed.has(name)) return;
  process.stderr.write(`crash point ${name}: killing the process\n`);
  process.kill(process.pid, "SIGKILL");
}
