// nats.js 2.29 ends every request, answered or not, with `cancel()`, which
// builds a NatsError ("CANCELLED", with its stack) to reject a promise that
// is already settled by then: the error is thrown away unseen. A cluster
// node makes several requests per operation (each JetStream publish, direct
// get and forwarded ask), and those errors were 3-5% of its busy samples
// (bench/README, cluster section); without them, CPU per checkout over the
// cluster's five processes x0.96 (4 alternating rounds). After an answer, this resolver does what
// `cancel()` does except build that error: stop the timer, leave the
// subscription mux. A request that ends without an answer (timeout, close)
// still goes through the library's own `cancel(err)`.
//
// It replaces a method of the client's RequestOne class, which is exported
// but not part of its documented API, so it does so only when the method is
// the one it was written against (its source text); with any other nats.js
// it changes nothing.

import { RequestOne } from "nats/lib/nats-base-client/request";

/** The resolver of nats.js 2.29.3, whitespace removed: replaced only when it is still this. */
const EXPECTED_RESOLVER =
  "resolver(err,msg){if(this.timer){this.timer.cancel();}if(err){if(this.ctx){err.stack+=`\\n\\n${this.ctx.stack}`;}this.deferred.reject(err);}else{this.deferred.resolve(msg);}this.cancel();}";

let replaced = false;

function resolveWithoutCancelError(this: RequestOne, err: Error | null, msg: Parameters<RequestOne["resolver"]>[1]): void {
  this.timer.cancel();
  if (err !== null) {
    if (this.ctx !== undefined) err.stack += `\n\n${this.ctx.stack ?? ""}`;
    this.deferred.reject(err);
  } else {
    this.deferred.resolve(msg);
  }
  this.mux.cancel(this);
}

/** Idempotent; true when requests now end without the discarded error (the installed nats.js is the expected one). */
export function skipCancelErrorOnAnswer(): boolean {
  if (replaced) return true;
  const current = RequestOne.prototype.resolver;
  if (current.toString().replace(/\s+/g, "") !== EXPECTED_RESOLVER) return false;
  RequestOne.prototype.resolver = resolveWithoutCancelError;
  replaced = true;
  return true;
}
