// ts-proto decodes a protobuf map into a plain object by assignment, and
// assigning the key "__proto__" there sets the object's prototype (or, for a
// string value, does nothing): such an attribute vanished without an error.
// These decoders read the attribute entries again into an object without a
// prototype, where every key is an ordinary own property. Encoding needs no
// change: ts-proto writes Object.entries, which lists an own "__proto__".

import { BinaryReader } from "@bufbuild/protobuf/wire";
import {
  InventoryServiceService,
  Sku,
  Sku_AttributesEntry,
  UpsertSkuRequest,
  UpsertSkuRequest_AttributesEntry,
} from "../gen/quartermaster/v1/inventory";
import { decodeReserveBatchRequest, encodeReserveBatchResponse } from "./reserve_batch_codec";

/** Field number of `attributes` in both UpsertSkuRequest and Sku. */
const ATTRIBUTES_FIELD = 8;
const WIRE_LENGTH_DELIMITED = 2;

interface EntryDecoder {
  decode(reader: BinaryReader, length: number): { key: string; value: string };
}

/** A null-prototype object, as ts-proto's map type expects an object. */
export function attributeObject(entries: Iterable<readonly [string, string]>): { [key: string]: string } {
  const out = Object.create(null) as { [key: string]: string };
  for (const [k, v] of entries) out[k] = v;
  return out;
}

function decodeAttributes(bytes: Uint8Array, entry: EntryDecoder): { [key: string]: string } {
  const reader = new BinaryReader(bytes);
  const out = attributeObject([]);
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 === ATTRIBUTES_FIELD && (tag & 7) === WIRE_LENGTH_DELIMITED) {
      const e = entry.decode(reader, reader.uint32());
      out[e.key] = e.value;
    } else {
      reader.skip(tag & 7);
    }
  }
  return out;
}

export function decodeUpsertSkuRequest(bytes: Uint8Array): UpsertSkuRequest {
  const request = UpsertSkuRequest.decode(bytes);
  request.attributes = decodeAttributes(bytes, UpsertSkuRequest_AttributesEntry);
  return request;
}

export function decodeSku(bytes: Uint8Array): Sku {
  const sku = Sku.decode(bytes);
  sku.attributes = decodeAttributes(bytes, Sku_AttributesEntry);
  return sku;
}

/** The generated InventoryService definition with these decoders and ReserveBatch's codecs, for the server and for clients. */
export const inventoryServiceDefinition: typeof InventoryServiceService = {
  ...InventoryServiceService,
  upsertSku: { ...InventoryServiceService.upsertSku, requestDeserialize: decodeUpsertSkuRequest, responseDeserialize: decodeSku },
  getSku: { ...InventoryServiceService.getSku, responseDeserialize: decodeSku },
  // The same bytes as the generated encoder, at a fraction of its CPU per item (reserve_batch_codec.ts).
  reserveBatch: { ...InventoryServiceService.reserveBatch, requestDeserialize: decodeReserveBatchRequest, responseSerialize: encodeReserveBatchResponse },
};
