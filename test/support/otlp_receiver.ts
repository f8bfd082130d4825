// A test OTLP/HTTP receiver: accepts http/json POSTs to /v1/traces and keeps
// the spans, flattened, with their resource's attributes. Bounded: a test
// that produces more spans than SPANS_MAX fails rather than eat memory.

import http from "node:http";
import type { AddressInfo } from "node:net";

const SPANS_MAX = 100_000;
const BODY_BYTES_MAX = 16 * 1024 * 1024;

type AttrValue = string | number | boolean | undefined;

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** "" for a root span. */
  readonly parentSpanId: string;
  readonly name: string;
  readonly kind: number;
  readonly startNs: bigint;
  readonly endNs: bigint;
  readonly attributes: Readonly<Record<string, AttrValue>>;
  readonly resource: Readonly<Record<string, AttrValue>>;
  readonly events: readonly { readonly name: string; readonly attributes: Readonly<Record<string, AttrValue>> }[];
  readonly links: readonly { readonly traceId: string; readonly spanId: string }[];
  /** 0 unset, 1 ok, 2 error. */
  readonly statusCode: number;
}

interface JsonKeyValue {
  key: string;
  value?: { stringValue?: string; intValue?: string | number; doubleValue?: number; boolValue?: boolean };
}

function attrs(list: JsonKeyValue[] | undefined): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const { key, value } of list ?? []) {
    out[key] = value?.stringValue ?? (value?.intValue !== undefined ? Number(value.intValue) : undefined) ?? value?.doubleValue ?? value?.boolValue;
  }
  return out;
}

interface JsonSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind?: number;
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
  attributes?: JsonKeyValue[];
  events?: { name: string; attributes?: JsonKeyValue[] }[];
  links?: { traceId: string; spanId: string }[];
  status?: { code?: number };
}

interface JsonExport {
  resourceSpans?: { resource?: { attributes?: JsonKeyValue[] }; scopeSpans?: { spans?: JsonSpan[] }[] }[];
}

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  /** Requests that were not OTLP trace exports, to fail the test with. */
  readonly rejected: string[] = [];
  /** http/protobuf exports: accepted and counted, not decoded (the content type and path show the protocol was honoured). */
  protobufExports = 0;
  private server: http.Server | undefined;
  endpoint = "";

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server?.listen(0, "127.0.0.1", resolve));
    const { port } = this.server.address() as AddressInfo;
    this.endpoint = `http://127.0.0.1:${port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  trace(traceId: string): ReceivedSpan[] {
    return this.spans.filter((s) => s.traceId === traceId);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= BODY_BYTES_MAX) chunks.push(chunk);
    });
    req.on("end", () => {
      const contentType = String(req.headers["content-type"]);
      if (req.method === "POST" && req.url === "/v1/traces" && contentType === "application/x-protobuf" && size > 0) {
        this.protobufExports++;
        res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
        return;
      }
      if (req.method !== "POST" || req.url !== "/v1/traces" || !contentType.startsWith("application/json") || size > BODY_BYTES_MAX) {
        this.rejected.push(`${req.method} ${req.url} ${req.headers["content-type"]} ${size} bytes`);
        res.writeHead(400).end();
        return;
      }
      try {
        this.add(JSON.parse(Buffer.concat(chunks).toString("utf8")) as JsonExport);
      } catch (error) {
        this.rejected.push(`bad body: ${(error as Error).message}`);
        res.writeHead(400).end();
        return;
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  }

  private add(body: JsonExport): void {
    for (const rs of body.resourceSpans ?? []) {
      const resource = attrs(rs.resource?.attributes);
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          if (this.spans.length >= SPANS_MAX) throw new Error(`more than ${SPANS_MAX} spans received`);
          this.spans.push({
            traceId: s.traceId,
            spanId: s.spanId,
            parentSpanId: s.parentSpanId ?? "",
            name: s.name,
            kind: s.kind ?? 0,
            startNs: BigInt(s.startTimeUnixNano),
            endNs: BigInt(s.endTimeUnixNano),
            attributes: attrs(s.attributes),
            resource,
            events: (s.events ?? []).map((e) => ({ name: e.name, attributes: attrs(e.attributes) })),
            links: (s.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId })),
            statusCode: s.status?.code ?? 0,
          });
        }
      }
    }
  }
}

/** The trace as an indented tree, children in start order: for the README and for failure messages. */
export function spanTree(spans: readonly ReceivedSpan[]): string {
  const ids = new Set(spans.map((s) => s.spanId));
  const children = new Map<string, ReceivedSpan[]>();
  for (const s of spans) {
    const parent = ids.has(s.parentSpanId) ? s.parentSpanId : "";
    children.set(parent, [...(children.get(parent) ?? []), s]);
  }
  const lines: string[] = [];
  const root = spans.reduce((min, s) => (s.startNs < min ? s.startNs : min), spans[0]?.startNs ?? 0n);
  const visit = (parent: string, depth: number): void => {
    const list = (children.get(parent) ?? []).sort((a, b) => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : 0));
    for (const s of list) {
      const at = Number(s.startNs - root) / 1e6;
      const ms = Number(s.endNs - s.startNs) / 1e6;
      const keys = ["rpc.grpc.status_code", "actor.id", "actor.turn.messages", "actor.mailbox.wait_ms", "journal.events", "qm.peer.node"];
      const shown = keys.filter((k) => s.attributes[k] !== undefined).map((k) => `${k}=${typeof s.attributes[k] === "number" && !Number.isInteger(s.attributes[k]) ? (s.attributes[k] as number).toFixed(2) : String(s.attributes[k])}`);
      const node = s.resource["service.instance.id"];
      const events = s.events.map((e) => ` !${e.name}(${String(e.attributes["qm.code"] ?? e.attributes["qm.reason"] ?? "")})`).join("");
      lines.push(`${"  ".repeat(depth)}${s.name} [${node}] +${at.toFixed(1)}ms ${ms.toFixed(1)}ms ${shown.join(" ")}${s.links.length > 0 ? ` links=${s.links.length}` : ""}${events}`);
      visit(s.spanId, depth + 1);
    }
  };
  visit("", 0);
  return lines.join("\n");
}
