// OrderService: validate, ask the order actor (which runs the saga), convert the view.

import { orderActorId, type OrderMessage } from "../actors/order/order_actor";
import type { ActorRouter, AskOptions } from "../actors/runtime/behavior";
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
  const ask = async (orderId: string, message: OrderMessage, options: AskOptions): Promise<Order> =>
    toOrder(await router.ask<OrderView>(orderActorId(orderId), message, options));
  return {
    createOrder: unary("CreateOrder", (r: CreateOrderRequest, o) => {
      const { orderId, cmd } = validateCreateOrder(r, reservationGraceMs);
      return ask(orderId, { op: "place", cmd }, o);
    }),
    getOrder: unary("GetOrder", (r: GetOrderRequest, o) => ask(validateOrderId(r.orderId), { op: "get" }, o)),
    confirmPayment: unary("ConfirmPayment", (r: ConfirmPaymentRequest, o) => {
      const { orderId, paymentReference } = validateConfirmPayment(r);
      return ask(orderId, { op: "pay", paymentReference }, o);
    }),
    cancelOrder: unary("CancelOrder", (r: CancelOrderRequest, o) => {
      const { orderId, reason } = validateCancelOrder(r);
      return ask(orderId, { op: "cancel", reason }, o);
    }),
    createShipment: unary("CreateShipment", (r: CreateShipmentRequest, o) => {
      const { orderId, cmd } = validateCreateShipment(r);
      return ask(orderId, { op: "ship", cmd }, o);
    }),
    recordTrackingEvent: unary("RecordTrackingEvent", (r: RecordTrackingEventRequest, o) => {
      const { orderId, cmd } = validateRecordTrackingEvent(r);
      return ask(orderId, { op: "track", cmd }, o);
    }),
    returnItems: unary("ReturnItems", (r: ReturnItemsRequest, o) => {
      const { orderId, cmd } = validateReturnItems(r);
      return ask(orderId, { op: "return", cmd }, o);
    }),
  };
}
