// Asks between nodes over NATS request/reply.
//
// Each node subscribes to qm.<cluster>.ask.<node> and serves an incoming ask
// from its LOCAL actor system only, and only for an actor it owns now: a node
// that is not the owner answers NOT_OWNER and the caller re-routes. It never
// forwards, so two nodes that disagree about ownership cannot bounce an ask
// between them.
//
// The wire is a versioned msgpack envelope. The reply carries the result or
// the QmError (code, message, metadata, violations), so domain errors cross
// nodes unchanged. A request that times out has an UNKNOWN outcome: the
// caller gets DEADLINE_EXCEEDED, and every command is idempotent by its id, so
// a retry with the same id never takes stock twice.
//
// An ask carries the subject and tenant it is made for, and the owner's actor
// system refuses one whose tenant is not the target actor's (as NOT_FOUND):
// the node that built the actor id is not trusted to have scoped it. The
// fields are optional in version 1: a node from before tenancy sends none and
// only ever addresses default-tenant ids, which is what an ask without them is
// taken to be for.

import type { NatsAskOutcome, TransportObserver } from "../observability/observer";
import { traceRemoteAsk } from "../observability/remote_tracing";
import { isDomainOutcome } from "../observability/tracing";
import { pack, unpack } from "msgpackr";
import { type Msg, type NatsConnection, type Subscription, ErrorCode as NatsErrorCode, NatsError } from "nats";
import type { Logger } from "pino";
import type { ActorRouter, AskOptions } from "../actors/runtime/behavior";
import type { Clock } from "../clock";
import { QmError, type QmErrorData } from "../errors";
import { DEFAULT_TENANT } from "../security/caller";
import type { NodeId, Placement } from "./placement";
import type { Transport } from "./placement_router";

/** Bumped on any incompatible change of the envelope; a node answers an unknown version with a clear error. */
export const ENVELOPE_VERSION = 1;
/** nats-server's default max_payload; a larger ask or reply fails with LIMIT_EXCEEDED instead of a protocol error. */
export const NATS_MESSAGE_BYTES_MAX = 1024 * 1024;
/** Deadline of an ask whose caller gave none: a lost reply must not hold a turn for ever. */
export const REMOTE_ASK_DEADLINE_MS_DEFAULT = 10_000;

interface AskEnvelope {
  readonly v: number;
  readonly actorId: string;
  readonly message: unknown;
  /** Absolute wall-clock deadline of the caller. */
  readonly deadlineMs: number;
  readonly traceparent?: string;
  /** The caller's subject and tenant (AskOptions.caller). */
  readonly subject?: string;
  readonly tenant?: string;
}

type ReplyEnvelope = { readonly v: number; readonly ok: unknown } | { readonly v: number; readonly error: QmErrorData };

export interface NatsTransportOptions {
  readonly nc: NatsConnection;
  readonly cluster: string;
  readonly self: NodeId;
  /** Who owns what, as this node sees it: incoming asks for actors it does not own get NOT_OWNER. */
  readonly placement: Placement;
  /** This node's actor system: incoming asks are delivered here and never forwarded. */
  readonly local: ActorRouter;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Told of every ask sent: its outcome and how long the reply took. */
  readonly observer?: TransportObserver;
}

export class NatsTransport implements Transport {
  private subscription: Subscription | undefined;
  private serving: Promise<void> | undefined;

  constructor(private readonly options: NatsTransportOptions) {}

  /** Starts serving asks addressed to this node. */
  async start(): Promise<void> {
    const subscription = this.options.nc.subscribe(askSubject(this.options.cluster, this.options.self));
    this.subscription = subscription;
    this.serving = (async () => {
      for await (const msg of subscription) this.serve(msg);
    })();
    await this.options.nc.flush();
  }

  /** Stops taking asks; asks being served still answer. Idempotent. */
  async stop(): Promise<void> {
    const subscription = this.subscription;
    this.subscription = undefined;
    if (subscription === undefined) return;
    await subscription.drain().catch(() => undefined);
    await this.serving;
  }

  ask<R>(node: NodeId, actorId: string, message: unknown, options?: AskOptions): Promise<R> {
    return traceRemoteAsk(node, actorId, options, (traced) => this.send<R>(node, actorId, message, traced));
  }

  private async send<R>(node: NodeId, actorId: string, message: unknown, options?: AskOptions): Promise<R> {
    const now = this.options.clock.nowMs();
    const deadlineMs = options?.deadlineMs ?? now + REMOTE_ASK_DEADLINE_MS_DEFAULT;
    const timeoutMs = Math.floor(deadlineMs - now);
    if (timeoutMs <= 0) throw new QmError("DEADLINE_EXCEEDED", `deadline passed before asking ${actorId} on node ${node}`);
    const caller = options?.caller;
    const envelope: AskEnvelope = {
      v: ENVELOPE_VERSION,
      actorId,
      message,
      deadlineMs,
      ...(options?.traceparent ? { traceparent: options.traceparent } : {}),
      ...(caller === undefined ? {} : { subject: caller.subject, tenant: caller.tenant }),
    };
    const body = encode(envelope, `ask to ${actorId}`);
    const sentMs = performance.now();
    let reply: Msg;
    try {
      reply = await this.options.nc.request(askSubject(this.options.cluster, node), body, { timeout: timeoutMs });
    } catch (error) {
      const failure = transportError(error, node, actorId);
      this.options.observer?.natsAsk(askOutcome(failure), (performance.now() - sentMs) / 1000);
      throw failure;
    }
    let decoded: ReplyEnvelope;
    try {
      decoded = decodeReply(reply.data);
    } catch (error) {
      this.options.observer?.natsAsk("error", (performance.now() - sentMs) / 1000);
      throw error;
    }
    const failure = "error" in decoded ? QmError.fromJSON(decoded.error) : undefined;
    this.options.observer?.natsAsk(failure === undefined ? "ok" : askOutcome(failure), (performance.now() - sentMs) / 1000);
    if (failure !== undefined) throw failure;
    return (decoded as { readonly ok: unknown }).ok as R;
  }

  private serve(msg: Msg): void {
    let envelope: AskEnvelope;
    try {
      envelope = decodeAsk(msg.data);
    } catch (error) {
      this.respond(msg, { v: ENVELOPE_VERSION, error: asQmError(error).toJSON() });
      return;
    }
    const owner = this.options.placement.ownerOf(envelope.actorId);
    if (owner !== this.options.self) {
      const error = new QmError("NOT_OWNER", `node ${this.options.self} does not own ${envelope.actorId}`, {
        actor: envelope.actorId,
        owner: owner ?? "",
      });
      this.respond(msg, { v: ENVELOPE_VERSION, error: error.toJSON() });
      return;
    }
    const askOptions: AskOptions = {
      deadlineMs: envelope.deadlineMs,
      caller: { subject: envelope.subject ?? "", tenant: envelope.tenant ?? DEFAULT_TENANT },
      ...(envelope.traceparent ? { traceparent: envelope.traceparent } : {}),
    };
    this.options.local.ask<unknown>(envelope.actorId, envelope.message, askOptions).then(
      (ok) => this.respond(msg, { v: ENVELOPE_VERSION, ok }),
      (error: unknown) => this.respond(msg, { v: ENVELOPE_VERSION, error: asQmError(error).toJSON() }),
    );
  }

  private respond(msg: Msg, reply: ReplyEnvelope): void {
    let body: Uint8Array;
    try {
      body = encode(reply, "reply");
    } catch (error) {
      body = encode({ v: ENVELOPE_VERSION, error: asQmError(error).toJSON() }, "error reply");
    }
    try {
      msg.respond(body);
    } catch (error) {
      // The connection is closing: the caller times out, an unknown outcome it retries by id.
      this.options.logger.warn({ err: error }, "could not send a reply over NATS");
    }
  }
}

/** NATS subject tokens cannot hold '.', which node ids may contain; '%' never occurs in an id, so the escape is unambiguous. */
export function askSubject(cluster: string, node: NodeId): string {
  return `qm.${cluster.replaceAll(".", "%2E")}.ask.${node.replaceAll(".", "%2E")}`;
}

function encode(value: AskEnvelope | ReplyEnvelope, what: string): Uint8Array {
  const body = pack(value);
  if (body.length > NATS_MESSAGE_BYTES_MAX) {
    throw new QmError("LIMIT_EXCEEDED", `${what} encodes to ${body.length} bytes, more than ${NATS_MESSAGE_BYTES_MAX}`);
  }
  return body;
}

function decodeAsk(data: Uint8Array): AskEnvelope {
  const value = unpackRecord(data);
  if (value.v !== ENVELOPE_VERSION) {
    throw new QmError("FAILED_PRECONDITION", `ask envelope version ${String(value.v)} is not ${ENVELOPE_VERSION}: nodes of incompatible versions`, {
      reason: "ENVELOPE_VERSION",
    });
  }
  if (typeof value.actorId !== "string" || typeof value.deadlineMs !== "number" || !("message" in value)) {
    throw new QmError("INVALID_ARGUMENT", "ask envelope lacks actorId, message or deadlineMs");
  }
  return {
    v: value.v,
    actorId: value.actorId,
    message: value.message,
    deadlineMs: value.deadlineMs,
    ...(typeof value.traceparent === "string" ? { traceparent: value.traceparent } : {}),
    ...(typeof value.subject === "string" ? { subject: value.subject } : {}),
    ...(typeof value.tenant === "string" ? { tenant: value.tenant } : {}),
  };
}

function decodeReply(data: Uint8Array): ReplyEnvelope {
  const value = unpackRecord(data);
  if (value.v !== ENVELOPE_VERSION) throw new QmError("UNAVAILABLE", `reply envelope version ${String(value.v)} is not ${ENVELOPE_VERSION}`);
  if ("error" in value) {
    const e = value.error as Partial<QmErrorData> | undefined;
    if (e === undefined || typeof e.code !== "string" || typeof e.message !== "string") throw new QmError("INTERNAL", "malformed error reply");
    return { v: value.v, error: { code: e.code, message: e.message, metadata: e.metadata ?? {}, violations: e.violations ?? [] } };
  }
  if (!("ok" in value)) throw new QmError("INTERNAL", "reply envelope has neither ok nor error");
  return { v: value.v, ok: value.ok };
}

function unpackRecord(data: Uint8Array): Record<string, unknown> {
  let value: unknown;
  try {
    value = unpack(data);
  } catch (error) {
    throw new QmError("INVALID_ARGUMENT", `envelope is not msgpack: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (typeof value !== "object" || value === null) throw new QmError("INVALID_ARGUMENT", "envelope is not a map");
  return value as Record<string, unknown>;
}

function asQmError(error: unknown): QmError {
  return error instanceof QmError ? error : new QmError("INTERNAL", "internal error");
}

/**
 * A reply that is a domain outcome (no stock, not found) is an ask that
 * worked; NOT_OWNER (the owner moved, or nobody listens for that node) is
 * re-routed; DEADLINE_EXCEEDED had no answer in time; anything else failed.
 */
function askOutcome(failure: QmError): NatsAskOutcome {
  if (failure.code === "NOT_OWNER") return "not_owner";
  if (failure.code === "DEADLINE_EXCEEDED") return "timeout";
  return isDomainOutcome(failure.code) ? "ok" : "error";
}

function transportError(error: unknown, node: NodeId, actorId: string): QmError {
  if (error instanceof NatsError) {
    if (error.code === NatsErrorCode.NoResponders) {
      // Nobody listens for that node: it is gone or not started. Retryable by re-routing.
      return new QmError("NOT_OWNER", `node ${node} is not reachable over NATS (no responders)`, { actor: actorId, node_id: node });
    }
    if (error.code === NatsErrorCode.Timeout) {
      return new QmError("DEADLINE_EXCEEDED", `no reply from node ${node} for ${actorId} within the deadline; the outcome is unknown`, {
        actor: actorId,
        node_id: node,
      });
    }
  }
  return new QmError("UNAVAILABLE", `NATS request to node ${node} failed: ${error instanceof Error ? error.message : String(error)}`, {
    actor: actorId,
    node_id: node,
  });
}
