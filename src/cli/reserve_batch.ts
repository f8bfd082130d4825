// `qmctl reserve --batch FILE`: one ReserveBatch call from a JSON-lines file,
// one ReserveRequest per line in protobuf's JSON spelling (lowerCamelCase or
// the proto's snake_case names), with the TTL as a qmctl duration ("15m") or
// protobuf's ("900s"). Blank lines are skipped. The file is read and checked
// while the command is built, so a bad line is a usage error naming its line
// number and nothing is sent.

import { readFileSync } from "node:fs";
import type { ReserveBatchRequest, ReserveRequest } from "../gen/quartermaster/v1/inventory";
import { RESERVE_BATCH_ITEMS_MAX } from "../limits";
import { durationFromMs, parseDurationMs, UsageError } from "./args";
import { type PreparedCall, prepare } from "./command_spec";
import { reserveBatchJson } from "./json";
import { renderReserveBatch } from "./render";
import { call } from "./rpc";

/** Each key a line may carry, in both spellings, and the request field it sets. */
const KEYS: Readonly<Record<string, keyof ReserveRequest>> = {
  reservationId: "reservationId",
  reservation_id: "reservationId",
  skuId: "skuId",
  sku_id: "skuId",
  quantity: "quantity",
  locationId: "locationId",
  location_id: "locationId",
  ttl: "ttl",
};

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseItem(text: string, where: string): ReserveRequest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${where}: not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  if (!isRecord(value)) throw new UsageError(`${where}: expected a JSON object`);
  const item: ReserveRequest = { reservationId: "", skuId: "", quantity: 0, locationId: "", ttl: undefined };
  for (const [key, v] of Object.entries(value)) {
    const field = KEYS[key];
    if (field === undefined) throw new UsageError(`${where}: unknown key "${key}" (expected ${Object.keys(KEYS).join(", ")})`);
    if (field === "quantity") {
      if (typeof v !== "number" && typeof v !== "string") throw new UsageError(`${where}: quantity must be a number`);
      const n = Number(v);
      if (!Number.isSafeInteger(n)) throw new UsageError(`${where}: quantity "${String(v)}" is not an integer`);
      item.quantity = n;
    } else if (field === "ttl") {
      if (typeof v !== "string") throw new UsageError(`${where}: ttl must be a string such as "15m"`);
      item.ttl = durationFromMs(parseDurationMs(v, `${where}: ttl`));
    } else {
      if (typeof v !== "string") throw new UsageError(`${where}: ${key} must be a string`);
      item[field] = v;
    }
  }
  return item;
}

/** The request a batch file describes; the server validates each item as Reserve does. */
export function readReserveBatchFile(file: string): ReserveBatchRequest {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new UsageError(`--batch: cannot read ${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
  const items: ReserveRequest[] = [];
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    if (items.length >= RESERVE_BATCH_ITEMS_MAX) {
      throw new UsageError(`--batch: ${file} has more than ${RESERVE_BATCH_ITEMS_MAX} items (the limit of one ReserveBatch call); split it`);
    }
    items.push(parseItem(line, `--batch ${file} line ${i + 1}`));
  });
  if (items.length === 0) throw new UsageError(`--batch: ${file} holds no items`);
  return { items };
}

export function buildReserveBatch(file: string): PreparedCall {
  const request = readReserveBatchFile(file);
  return prepare(
    "InventoryService/ReserveBatch",
    request,
    (c, r, o) => call(c.inventory, "reserveBatch", r, o),
    reserveBatchJson,
    (response) => renderReserveBatch(request, response),
  );
}
