// Counts orders that expire (payment deadline passed, holds released) without
// touching the order actor: the behavior is wrapped, and a turn that moves an
// order into EXPIRED reports it once. It catches both ways in: the payment
// timer's wake-up (onTurnStart) and a late payment that finds the deadline
// passed (handle).

import type { OrderMessage } from "../actors/order/order_actor";
import type { ActorBehavior, TurnContext } from "../actors/runtime/behavior";
import type { OrderState } from "../domain/order";
import type { ExpiryObserver } from "./observer";

export function observeOrderExpiry(
  behavior: ActorBehavior<OrderState, OrderMessage>,
  observer: ExpiryObserver,
): ActorBehavior<OrderState, OrderMessage> {
  const report = (ctx: TurnContext<OrderState>, before: OrderState["status"]): void => {
    if (before !== "EXPIRED" && ctx.state.status === "EXPIRED") observer.orderExpired(ctx.key);
  };
  const onTurnStart = behavior.onTurnStart;
  return {
    ...behavior,
    async onTurnStart(ctx) {
      const before = ctx.state.status;
      await onTurnStart?.call(behavior, ctx);
      report(ctx, before);
    },
    handle(ctx, message) {
      const before = ctx.state.status;
      const reply = behavior.handle(ctx, message);
      if (!(reply instanceof Promise)) {
        report(ctx, before);
        return reply;
      }
      return reply.then((value: unknown) => {
        report(ctx, before);
        return value;
      });
    },
  };
}
