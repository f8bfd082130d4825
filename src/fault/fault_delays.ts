// Named points where the process can be told to stall, so that a test can
// prove something happens while work is provably in flight (a drain on
// SIGTERM while appends are not yet durable, health during a slow recovery)
// instead of hoping a timed signal lands there. Off unless QM_FAULT_DELAYS
// names the point (tests only; parsed in config.ts). Each stall is announced
// on stderr as it starts, which is what a test waits for.

import type { Journal } from "../journal/journal";
import { FAULT_DELAY_MS_MAX } from "../limits";

export const FAULT_DELAY_POINTS = [
  /** Every journal append waits before it is issued: its turn's replies wait with it. */
  "journal.append",
  /** Every read of due wake-ups waits: the start-up pass, so recovery (and NOT_SERVING) lasts that long. */
  "journal.dueWakeups",
] as const;

export type FaultDelayPoint = (typeof FAULT_DELAY_POINTS)[number];
export type FaultDelays = ReadonlyMap<FaultDelayPoint, number>;

/** "point=ms,point=ms"; empty is none. Throws a RangeError naming what is wrong. */
export function parseFaultDelays(raw: string): FaultDelays {
  const delays = new Map<FaultDelayPoint, number>();
  for (const item of raw.split(",").filter((s) => s !== "")) {
    const match = /^([a-zA-Z.]+)=(\d+)$/.exec(item);
    const point = FAULT_DELAY_POINTS.find((p) => p === match?.[1]);
    const ms = Number(match?.[2]);
    if (match === null || point === undefined || ms > FAULT_DELAY_MS_MAX) {
      throw new RangeError(`expected point=ms pairs, points ${FAULT_DELAY_POINTS.join(" or ")}, ms at most ${FAULT_DELAY_MS_MAX}; got "${item}"`);
    }
    delays.set(point, ms);
  }
  return delays;
}

/**
 * The journal itself when no delay is set (nothing in the path); otherwise
 * a view of it whose delayed methods wait first. A Proxy, so that every
 * other method of the journal passes through unchanged.
 */
export function withFaultDelays(journal: Journal, delays: FaultDelays): Journal {
  const appendMs = delays.get("journal.append");
  const dueMs = delays.get("journal.dueWakeups");
  if (appendMs === undefined && dueMs === undefined) return journal;
  const append: Journal["append"] = async (request) => {
    if (appendMs !== undefined) await stall("journal.append", appendMs, `${request.events.length} events of ${request.actorId}`);
    return journal.append(request);
  };
  const dueWakeups: Journal["dueWakeups"] = async (nowMs, limit) => {
    if (dueMs !== undefined) await stall("journal.dueWakeups", dueMs, "");
    return journal.dueWakeups(nowMs, limit);
  };
  return new Proxy(journal, {
    get(target, property) {
      if (property === "append") return append;
      if (property === "dueWakeups") return dueWakeups;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

function stall(point: FaultDelayPoint, ms: number, what: string): Promise<void> {
  process.stderr.write(`fault delay ${point}: ${ms} ms${what === "" ? "" : ` (${what})`}\n`);
  return new Promise((resolve) => setTimeout(resolve, ms));
}
