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
//
// Batches. Asks to the same node made in one event-loop turn travel in one
// message (envelope version 2: a list of version-1 asks without their `v`,
// answered by a list of replies in the same order), up to
// FORWARDED_ASKS_PER_MESSAGE_MAX. A NATS request per ask cost the sender more
// CPU than the ask itself, and the owner, getting them one by one, folded only
// a few into each journal write of a hot actor. A lone ask still goes as
// version 1, and a node serves both versions. A node of an older version
// answers a batch with FAILED_PRECONDITION (reason ENVELOPE_VERSION) before
// delivering any of it, so the sender sends those asks again one by one and
// keeps doing so for that node for FORWARDED_ASK_BATCH_RETRY_MS: a rolling
// upgrade works in both directions.

import type { NatsAskOutcome, TransportObserver } from "../observability/observer";
import { traceRemoteAsk } from "../observability/remote_tracing";
import { isDomainOutcome } from "../observability/tracing";
import { pack, unpack } from "msgpackr";
import { type Msg, type NatsConnection, type Subscription, ErrorCode as NatsErrorCode, NatsError } from "nats";
import type { Logger } from "pino";
import type { ActorRouter, AskOptions } from "../actors/runtime/behavior";
import type { Clock } from "../clock";
import { QmError, type QmErrorData } from "../errors";
import {
  BATCH_REFUSING_NODES_MAX,
  FORWARDED_ASK_BATCH_RETRY_MS,
  FORWARDED_ASK_DEADLINE_SPREAD_MS,
  FORWARDED_ASKS_PER_MESSAGE_MAX,
} from "../limits";
import { DEFAULT_TENANT } from "../security/caller";
import type { NodeId, Placement } from "./placement";
import type { Transport } from "./placement_router";

/** Bumped on any incompatible change of the envelope; a node answers an unknown version with a clear error. */
export const ENVELOPE_VERSION = 1;
/** A batch: several version-1 asks (each without its own `v`) in one message, answered by a list of replies. */
export const BATCH_ENVELOPE_VERSION = 2;
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
type ReplyBody = { readonly ok: unknown } | { readonly error: QmErrorData };
interface BatchEnvelope {
  readonly v: number;
  readonly asks: readonly Omit<AskEnvelope, "v">[];
}
interface BatchReplyEnvelope {
  readonly v: number;
  readonly replies: readonly ReplyBody[];
}

/** An ask waiting in this turn's batch for its node. */
interface PendingAsk {
  readonly envelope: AskEnvelope;
  readonly settle: (reply: ReplyBody | QmError) => void;
}

interface PendingBatch {
  readonly asks: PendingAsk[];
  /** The first ask's deadline: asks too far from it start a message of their own. */
  readonly deadlineMs: number;
}

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
  /** This turn's asks per node; emptied by flush() on the next turn. */
  private readonly pending = new Map<NodeId, PendingBatch>();
  private flushScheduled = false;
  /** Nodes that refused a batch (an older version), until when asks to them go one by one. */
  private readonly singlesUntil = new Map<NodeId, number>();

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
    const sentMs = performance.now();
    const reply = await new Promise<ReplyBody | QmError>((settle) => this.enqueue(node, { envelope, settle }));
    const failure = reply instanceof QmError ? reply : "error" in reply ? QmError.fromJSON(reply.error) : undefined;
    this.options.observer?.natsAsk(failure === undefined ? "ok" : askOutcome(failure), (performance.now() - sentMs) / 1000);
    if (failure !== undefined) throw failure;
    return (reply as { readonly ok: unknown }).ok as R;
  }

  /** Adds an ask to this turn's batch for its node; the batch goes when the turn ends or it is full. */
  private enqueue(node: NodeId, ask: PendingAsk): void {
    let batch = this.pending.get(node);
    if (batch !== undefined && Math.abs(ask.envelope.deadlineMs - batch.deadlineMs) > FORWARDED_ASK_DEADLINE_SPREAD_MS) {
      this.pending.delete(node);
      this.sendAsks(node, batch.asks);
      batch = undefined;
    }
    if (batch === undefined) {
      batch = { asks: [], deadlineMs: ask.envelope.deadlineMs };
      this.pending.set(node, batch);
    }
    batch.asks.push(ask);
    if (batch.asks.length >= FORWARDED_ASKS_PER_MESSAGE_MAX) {
      this.pending.delete(node);
      this.sendAsks(node, batch.asks);
      return;
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // setImmediate, not a microtask: the asks of every call read from the sockets in this turn join the batch.
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    for (const [node, batch] of this.pending) this.sendAsks(node, batch.asks);
    this.pending.clear();
  }

  private sendAsks(node: NodeId, asks: readonly PendingAsk[]): void {
    const only = asks.length === 1 ? asks[0] : undefined;
    if (only !== undefined || this.sendsSingles(node)) {
      for (const ask of only === undefined ? asks : [only]) void this.requestOne(node, ask);
      return;
    }
    void this.requestBatch(node, asks);
  }

  private sendsSingles(node: NodeId): boolean {
    const until = this.singlesUntil.get(node);
    if (until === undefined) return false;
    if (this.options.clock.nowMs() < until) return true;
    this.singlesUntil.delete(node);
    return false;
  }

  /** One ask, version 1: what every node since the first understands. Settles the ask; never rejects. */
  private async requestOne(node: NodeId, ask: PendingAsk): Promise<void> {
    const { envelope } = ask;
    try {
      const body = encode(envelope, `ask to ${envelope.actorId}`);
      const reply = await this.request(node, body, envelope.deadlineMs, envelope.actorId);
      ask.settle(decodeReply(reply.data));
    } catch (error) {
      ask.settle(asQmError(error));
    }
  }

  /** Several asks in one message (version 2). Settles every ask; never rejects. */
  private async requestBatch(node: NodeId, asks: readonly PendingAsk[]): Promise<void> {
    const batch = { v: BATCH_ENVELOPE_VERSION, asks: asks.map((a) => withoutVersion(a.envelope)) };
    let body: Uint8Array;
    try {
      body = encode(batch, "batch of asks");
    } catch {
      // Too large together: each on its own, where an ask too large by itself fails alone.
      for (const ask of asks) void this.requestOne(node, ask);
      return;
    }
    const deadlineMs = Math.max(...asks.map((a) => a.envelope.deadlineMs));
    let replies: readonly ReplyBody[];
    try {
      const reply = await this.request(node, body, deadlineMs, `${asks.length} actors`);
      const decoded = decodeBatchReply(reply.data, asks.length);
      if (decoded instanceof QmError) {
        if (decoded.code === "FAILED_PRECONDITION" && decoded.metadata.reason === "ENVELOPE_VERSION") {
          // An older node: it delivered none of them, so sending each again cannot apply one twice.
          if (this.singlesUntil.size >= BATCH_REFUSING_NODES_MAX) this.singlesUntil.clear();
          this.singlesUntil.set(node, this.options.clock.nowMs() + FORWARDED_ASK_BATCH_RETRY_MS);
          for (const ask of asks) void this.requestOne(node, ask);
          return;
        }
        throw decoded;
      }
      replies = decoded;
    } catch (error) {
      const failure = asQmError(error);
      for (const ask of asks) ask.settle(failure);
      return;
    }
    asks.forEach((ask, i) => ask.settle(replies[i] ?? { error: new QmError("INTERNAL", "batch reply lacks an answer").toJSON() }));
  }

  private async request(node: NodeId, body: Uint8Array, deadlineMs: number, what: string): Promise<Msg> {
    const timeoutMs = Math.max(1, Math.floor(deadlineMs - this.options.clock.nowMs()));
    try {
      return await this.options.nc.request(askSubject(this.options.cluster, node), body, { timeout: timeoutMs });
    } catch (error) {
      throw transportError(error, node, what);
    }
  }

  private serve(msg: Msg): void {
    let value: Record<string, unknown>;
    try {
      value = unpackRecord(msg.data);
      if (value.v === BATCH_ENVELOPE_VERSION) {
        this.serveBatch(msg, value);
        return;
      }
      checkVersion(value);
    } catch (error) {
      this.respond(msg, { v: ENVELOPE_VERSION, error: asQmError(error).toJSON() });
      return;
    }
    void this.deliver(value).then((reply) => this.respond(msg, { v: ENVELOPE_VERSION, ...reply }));
  }

  /** Every ask of the batch goes to its actor in this turn; one reply once all have answered. */
  private serveBatch(msg: Msg, value: Record<string, unknown>): void {
    const asks = value.asks;
    if (!Array.isArray(asks) || asks.length === 0 || asks.length > FORWARDED_ASKS_PER_MESSAGE_MAX) {
      throw new QmError("INVALID_ARGUMENT", `batch envelope must hold 1 to ${FORWARDED_ASKS_PER_MESSAGE_MAX} asks`);
    }
    const answers = asks.map((ask: unknown) =>
      typeof ask === "object" && ask !== null
        ? this.deliver(ask as Record<string, unknown>)
        : Promise.resolve<ReplyBody>({ error: new QmError("INVALID_ARGUMENT", "ask in batch is not a map").toJSON() }),
    );
    void Promise.all(answers).then((replies) => this.respond(msg, { v: BATCH_ENVELOPE_VERSION, replies }));
  }

  /** One ask to the local actor system, if this node owns its actor; resolves with its reply, never rejects. */
  private deliver(value: Record<string, unknown>): Promise<ReplyBody> {
    let envelope: AskEnvelope;
    try {
      envelope = askFields(value);
    } catch (error) {
      return Promise.resolve({ error: asQmError(error).toJSON() });
    }
    const owner = this.options.placement.ownerOf(envelope.actorId);
    if (owner !== this.options.self) {
      const error = new QmError("NOT_OWNER", `node ${this.options.self} does not own ${envelope.actorId}`, {
        actor: envelope.actorId,
        owner: owner ?? "",
      });
      return Promise.resolve({ error: error.toJSON() });
    }
    const askOptions: AskOptions = {
      deadlineMs: envelope.deadlineMs,
      caller: { subject: envelope.subject ?? "", tenant: envelope.tenant ?? DEFAULT_TENANT },
      ...(envelope.traceparent ? { traceparent: envelope.traceparent } : {}),
    };
    return this.options.local.ask<unknown>(envelope.actorId, envelope.message, askOptions).then(
      (ok): ReplyBody => ({ ok }),
      (error: unknown): ReplyBody => ({ error: asQmError(error).toJSON() }),
    );
  }

  private respond(msg: Msg, reply: ReplyEnvelope | BatchReplyEnvelope): void {
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

function encode(value: AskEnvelope | ReplyEnvelope | BatchEnvelope | BatchReplyEnvelope, what: string): Uint8Array {
  const body = pack(value);
  if (body.length > NATS_MESSAGE_BYTES_MAX) {
    throw new QmError("LIMIT_EXCEEDED", `${what} encodes to ${body.length} bytes, more than ${NATS_MESSAGE_BYTES_MAX}`);
  }
  return body;
}

function checkVersion(value: Record<string, unknown>): void {
  if (value.v !== ENVELOPE_VERSION) {
    throw new QmError("FAILED_PRECONDITION", `ask envelope version ${String(value.v)} is not ${ENVELOPE_VERSION}: nodes of incompatible versions`, {
      reason: "ENVELOPE_VERSION",
    });
  }
}

/** The fields of one ask, from a version-1 envelope or one entry of a batch. */
function askFields(value: Record<string, unknown>): AskEnvelope {
  if (typeof value.actorId !== "string" || typeof value.deadlineMs !== "number" || !("message" in value)) {
    throw new QmError("INVALID_ARGUMENT", "ask envelope lacks actorId, message or deadlineMs");
  }
  return {
    v: ENVELOPE_VERSION,
    actorId: value.actorId,
    message: value.message,
    deadlineMs: value.deadlineMs,
    ...(typeof value.traceparent === "string" ? { traceparent: value.traceparent } : {}),
    ...(typeof value.subject === "string" ? { subject: value.subject } : {}),
    ...(typeof value.tenant === "string" ? { tenant: value.tenant } : {}),
  };
}

function withoutVersion(envelope: AskEnvelope): Omit<AskEnvelope, "v"> {
  const { v: _v, ...rest } = envelope;
  return rest;
}

function decodeReply(data: Uint8Array): ReplyBody {
  const value = unpackRecord(data);
  if (value.v !== ENVELOPE_VERSION) throw new QmError("UNAVAILABLE", `reply envelope version ${String(value.v)} is not ${ENVELOPE_VERSION}`);
  return replyBody(value);
}

function replyBody(value: Record<string, unknown>): ReplyBody {
  if ("error" in value) {
    const e = value.error as Partial<QmErrorData> | undefined;
    if (e === undefined || typeof e.code !== "string" || typeof e.message !== "string") throw new QmError("INTERNAL", "malformed error reply");
    return { error: { code: e.code, message: e.message, metadata: e.metadata ?? {}, violations: e.violations ?? [] } };
  }
  if (!("ok" in value)) throw new QmError("INTERNAL", "reply envelope has neither ok nor error");
  return { ok: value.ok };
}

/**
 * The replies to a batch of `count` asks, or the one error that answered the
 * whole message (a version-1 error reply: an older node refusing the batch,
 * or a batch this node could not take).
 */
function decodeBatchReply(data: Uint8Array, count: number): readonly ReplyBody[] | QmError {
  const value = unpackRecord(data);
  if (value.v === ENVELOPE_VERSION) {
    const whole = replyBody(value);
    return "error" in whole ? QmError.fromJSON(whole.error) : new QmError("INTERNAL", "a batch was answered by a single result");
  }
  if (value.v !== BATCH_ENVELOPE_VERSION) throw new QmError("UNAVAILABLE", `reply envelope version ${String(value.v)} is not ${BATCH_ENVELOPE_VERSION}`);
  const replies = value.replies;
  if (!Array.isArray(replies) || replies.length !== count) throw new QmError("INTERNAL", `batch reply does not hold ${count} replies`);
  return replies.map((r: unknown) => {
    if (typeof r !== "object" || r === null) throw new QmError("INTERNAL", "batch reply entry is not a map");
    return replyBody(r as Record<string, unknown>);
  });
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
