// Reads the server's Prometheus endpoint. Tests watch what the server did by
// itself (a timer's writes, passivation) without sending it a request, which
// would make the server act on the test's behalf.

import http from "node:http";
import { sleep } from "./fixtures";

/** One sample of GET /metrics, e.g. metricValue(addr, 'qm_actor_turn_messages_count{kind="sku"}'); 0 if absent. */
export async function metricValue(metricsAddr: string, sample: string): Promise<number> {
  const body = await new Promise<string>((resolve, reject) => {
    const req = http.get(`http://${metricsAddr}/metrics`, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
      res.on("end", () => (res.statusCode === 200 ? resolve(text) : reject(new Error(`GET /metrics: ${res.statusCode}`))));
    });
    req.on("error", reject);
  });
  const line = body.split("\n").find((l) => l.startsWith(`${sample} `));
  return line === undefined ? 0 : Number(line.slice(sample.length + 1));
}

/** Polls `probe` until it returns true or the deadline passes; the result says which. */
export async function pollUntil(probe: () => Promise<boolean>, deadlineMs: number, intervalMs = 20): Promise<boolean> {
  for (;;) {
    if (await probe()) return true;
    if (Date.now() >= deadlineMs) return false;
    await sleep(intervalMs);
  }
}

/** Waits until the wall clock has moved past `ms`, so that a later timestamp is strictly greater. */
export async function afterMs(ms: number): Promise<void> {
  while (Date.now() <= ms) await sleep(1);
}
