// Domain errors: one class, stable codes. Only src/grpc/status_mapping.ts turns
// them into gRPC statuses; everything else throws or returns these.

export type ErrorCode =
  | "INVALID_ARGUMENT"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "INSUFFICIENT_STOCK"
  | "ILLEGAL_TRANSITION"
  | "FAILED_PRECONDITION"
  | "LIMIT_EXCEEDED"
  | "OVERLOADED"
  | "ACTORS_EXHAUSTED"
  | "DISK_FULL"
  | "DATA_LOSS"
  | "UNAVAILABLE"
  | "NOT_OWNER"
  | "FENCED"
  | "DEADLINE_EXCEEDED"
  | "UNAUTHENTICATED"
  | "PERMISSION_DENIED"
  | "RATE_LIMITED"
  | "INTERNAL";

/**
 * Codes after which the same request may succeed if simply tried again: the
 * operation did not happen (or is idempotent) and the cause is passing (a
 * busy or moving actor, a full table or disk, a deadline). The one set the
 * saga's retry policies and clients share. INTERNAL is not in it: a bug is
 * not fixed by repeating the request, and a step that hits one is decided or
 * parked instead of retried forever.
 */
const RETRYABLE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "UNAVAILABLE",
  "OVERLOADED",
  "ACTORS_EXHAUSTED",
  "DISK_FULL",
  "NOT_OWNER",
  "FENCED",
  "DEADLINE_EXCEEDED",
  "RATE_LIMITED",
]);

export function isRetryable(code: ErrorCode): boolean {
  return RETRYABLE_CODES.has(code);
}

/**
 * Reason (ErrorInfo.reason, with code UNAVAILABLE) of every write after the
 * embedded journal's commit failed with an I/O error: the node acknowledges
 * nothing more and exits to recover (src/journal/lmdb_journal.ts).
 */
export const JOURNAL_FAILED = "JOURNAL_FAILED";

/**
 * QmError metadata key: milliseconds after which the same call may succeed
 * (a rate limit's next token). status_mapping sends it as google.rpc.RetryInfo.
 */
export const RETRY_AFTER_MS_KEY = "retry_after_ms";

export interface FieldViolation {
  /** Path of the offending field in the request, e.g. `lines[3].quantity`. */
  readonly field: string;
  readonly description: string;
}

export class QmError extends Error {
  override readonly name = "QmError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Machine-readable facts a caller may act on (current state, available units...). */
    readonly metadata: Readonly<Record<string, string>> = {},
    readonly violations: readonly FieldViolation[] = [],
  ) {
    super(message);
  }

  /** The plain form that crosses actor and process boundaries. */
  toJSON(): QmErrorData {
    return { code: this.code, message: this.message, metadata: this.metadata, violations: this.violations };
  }

  static fromJSON(data: QmErrorData): QmError {
    return new QmError(data.code, data.message, data.metadata, data.violations);
  }
}

export interface QmErrorData {
  readonly code: ErrorCode;
  readonly message: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly violations: readonly FieldViolation[];
}

export function invalidArgument(violations: readonly FieldViolation[]): QmError {
  const first = violations[0];
  const message = first ? `${first.field}: ${first.description}` : "invalid argument";
  return new QmError("INVALID_ARGUMENT", message, {}, violations);
}

/** Metadata names the id as the API's field does (`sku_id`, `reservation_id`), one spelling everywhere. */
export function notFound(what: string, id: string): QmError {
  return new QmError("NOT_FOUND", `${what} ${id} not found`, { [`${what}_id`]: id });
}

export function illegalTransition(entity: string, state: string, action: string): QmError {
  return new QmError("ILLEGAL_TRANSITION", `cannot ${action}: ${entity} is ${state}`, { state, action });
}

/** Invariants are checked in production too: a broken one is a bug, and fails the request that found it. */
export function assert(condition: unknown, what: string): asserts condition {
  if (!condition) throw new QmError("INTERNAL", `invariant violated: ${what}`);
}

/**
 * A message whose op this build does not know: in a cluster, a newer node
 * during a rolling upgrade. A clear error for that message, never an
 * `undefined` reply; nothing is changed (it is thrown before any event).
 */
export function unknownOp(kind: string, message: unknown): QmError {
  const op = typeof message === "object" && message !== null && "op" in message ? String(message.op) : "(none)";
  return new QmError("FAILED_PRECONDITION", `${kind} actors of this version do not know the message op ${op}`, { reason: "UNKNOWN_OP", op });
}

/**
 * A journal event whose kind this build does not know: written by a newer
 * release (a rolled-back node, or an older node in a cluster taking over a
 * partition). Replaying it as nothing would silently drop what it recorded
 * (holds, say), so the actor refuses to rebuild and its requests fail.
 */
export function unknownEvent(kind: string, event: unknown): QmError {
  const t = typeof event === "object" && event !== null && "t" in event ? String(event.t) : "(none)";
  return new QmError("FAILED_PRECONDITION", `${kind} actors of this version do not know the journal event kind ${t}: it was written by a newer release`, {
    reason: "UNKNOWN_EVENT",
    event: t,
  });
}
