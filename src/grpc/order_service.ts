// OrderService: validate, ask the order actor (which runs the saga), convert the view.

import { orderActorId, type OrderMessage } from "../actors/order/order_actor";
import type { ActorRouter, AskOptions } from "../actors/runtime/behavior";
import type { Caller } from "../security/caller";
import type { OrderView } from "../domain/order";
import type {
  CancelOrderRequest,
  ConfirmPaymentRequest,
  CreateOrderRequest,
  CreateShipmentRequest,
  GetOrderRequest,
  Order,
  OrderServiceServer,
  RecordTrackingEventRequest,
  ReturnItemsRequest,
} from "../gen/quartermaster/v1/order";
import { toOrder } from "./convert";
import type { UnaryFactory } from "./unary";
import {
  validateCancelOrder,
  validateConfirmPayment,
  validateCreateOrder,
  validateCreateShipment,
  validateOrderId,
  validateRecordTrackingEvent,
  validateReturnItems,
} from "./validation";

export function orderService(router: ActorRouter, unary: UnaryFactory, reservationGraceMs: number): OrderServiceServer {
  // Every id names an order of the caller's tenant, whose saga reaches only that tenant's SKUs.
  const ask = async (orderId: string, message: OrderMessage, options: AskOptions, caller: Caller): Promise<Order> =>
    toOrder(await router.ask<OrderView>(orderActorId(orderId, caller.tenant), message, options));
  return {
    createOrder: unary("CreateOrder", (r: CreateOrderRequest, o, c) => {
      const { orderId, cmd } = validateCreateOrder(r, reservationGraceMs);
      return ask(orderId, { op: "place", cmd }, o, c);
    }),
    getOrder: unary("GetOrder", (r: GetOrderRequest, o, c) => ask(validateOrderId(r.orderId), { op: "get" }, o, c)),
    confirmPayment: unary("ConfirmPayment", (r: ConfirmPaymentRequest, o, c) => {
      const { orderId, paymentReference } = validateConfirmPayment(r);
      return ask(orderId, { op: "pay", paymentReference }, o, c);
    }),
    cancelOrder: unary("CancelOrder", (r: CancelOrderRequest, o, c) => {
      const { orderId, reason } = validateCancelOrder(r);
      return ask(orderId, { op: "cancel", reason }, o, c);
    }),
    createShipment: unary("CreateShipment", (r: CreateShipmentRequest, o, c) => {
      const { orderId, cmd } = validateCreateShipment(r);
      return ask(orderId, { op: "ship", cmd }, o, c);
    }),
    recordTrackingEvent: unary("RecordTrackingEvent", (r: RecordTrackingEventRequest, o, c) => {
      const { orderId, cmd } = validateRecordTrackingEvent(r);
      return ask(orderId, { op: "track", cmd }, o, c);
    }),
    returnItems: unary("ReturnItems", (r: ReturnItemsRequest, o, c) => {
      const { orderId, cmd } = validateReturnItems(r);
      return ask(orderId, { op: "return", cmd }, o, c);
    }),
  };
}
