// Spans of the actor runtime. A turn handles a batch of messages that may
// belong to as many traces, so each traced message gets its own turn span,
// parented on the traceparent its envelope carried: every client call stays
// one trace. The turn's single journal append is a child of the first traced
// message's span and links to the others, since it carries all of them.

import { context, type Context, type Link, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { Envelope } from "../actors/runtime/mailbox";
import type { QmError } from "../errors";
import { contextFromTraceparent, endWhenSettled, recordFailure, tracer, tracingOn } from "./tracing";

interface Outcome {
  readonly value: unknown;
  readonly failed: boolean;
}

export class TurnSpans {
  private constructor(
    /** One per message of the batch; undefined for a message without a traceparent. */
    private readonly spans: readonly (Span | undefined)[],
    private readonly contexts: readonly (Context | undefined)[],
    private readonly actorId: string,
  ) {}

  /** Undefined when tracing is off or no message of the batch carries a traceparent. */
  static start(kind: string, actorId: string, epoch: number | undefined, partition: number | undefined, batch: readonly Envelope[]): TurnSpans | undefined {
    if (!tracingOn()) return undefined;
    let traced = false;
    for (const envelope of batch) if (envelope.traceparent !== undefined) traced = true;
    if (!traced) return undefined;
    const nowMs = performance.now();
    const spans: (Span | undefined)[] = new Array(batch.length);
    const contexts: (Context | undefined)[] = new Array(batch.length);
    for (let i = 0; i < batch.length; i++) {
      const envelope = batch[i] as Envelope;
      if (envelope.traceparent === undefined) continue;
      const parent = contextFromTraceparent(envelope.traceparent);
      const span = tracer().startSpan(
        `turn ${kind}`,
        {
          kind: SpanKind.INTERNAL,
          attributes: {
            "actor.kind": kind,
            "actor.id": actorId,
            "actor.turn.messages": batch.length,
            "actor.turn.index": i,
            "actor.mailbox.wait_ms": envelope.enqueuedAtMs === undefined ? 0 : Math.max(0, nowMs - envelope.enqueuedAtMs),
            ...(epoch === undefined ? {} : { "actor.epoch": epoch }),
            ...(partition === undefined ? {} : { "qm.partition": partition }),
          },
        },
        parent,
      );
      spans[i] = span;
      contexts[i] = trace.setSpan(parent, span);
    }
    return new TurnSpans(spans, contexts, actorId);
  }

  /** Runs the handler of message `index` with its span active (asks and log lines join its trace). */
  run<T>(index: number, handle: () => T): T {
    const ctx = this.contexts[index];
    return ctx === undefined ? handle() : context.with(ctx, handle);
  }

  /**
   * Wraps the turn's journal append in a span: a child of the active message
   * span (a handler that persists midway) or of the first traced message,
   * linked to the other messages it carries.
   */
  append(events: number, write: () => Promise<void>): Promise<void> {
    const active = trace.getSpan(context.active());
    const parentSpan = active !== undefined && this.spans.includes(active) ? active : this.spans.find((s) => s !== undefined);
    if (parentSpan === undefined) return write();
    const links: Link[] = [];
    for (const span of this.spans) if (span !== undefined && span !== parentSpan) links.push({ context: span.spanContext() });
    const parent = trace.setSpan(context.active(), parentSpan);
    const span = tracer().startSpan(
      "journal.append",
      { kind: SpanKind.INTERNAL, links, attributes: { "actor.id": this.actorId, "journal.events": events, "journal.turn.messages": this.spans.length } },
      parent,
    );
    const pending = context.with(trace.setSpan(parent, span), write);
    return endWhenSettled(span, pending);
  }

  /** Ends each message's span once its reply is sent; `failure` is the append's failure, which fails every reply. */
  end(outcomes: readonly Outcome[], failure: QmError | undefined): void {
    for (let i = 0; i < this.spans.length; i++) {
      const span = this.spans[i];
      if (span === undefined) continue;
      const outcome = outcomes[i];
      if (failure !== undefined) recordFailure(span, failure);
      else if (outcome === undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: "message not handled in this turn" });
      else if (outcome.failed) recordFailure(span, outcome.value);
      span.end();
    }
  }
}
