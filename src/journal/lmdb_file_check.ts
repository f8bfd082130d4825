// Structural check of an LMDB data file before it is mapped into service.
//
// LMDB maps data.mdb and trusts it: a file shorter than its meta page says is
// mapped anyway, and the first access past the end kills the process with
// SIGBUS; zeroed meta pages crash it with SIGSEGV, in both cases without a
// word. So before open we read the two meta pages ourselves and refuse, with
// a message naming the file and the fault, anything LMDB would misread.
//
// Layout (the LMDB that lmdb-js 3.x builds, format version 2, 64-bit):
//   page header, 24 bytes: pgno u64, txnid u64, pad u16, flags u16, lower u16, upper u16
//   meta, at 24: magic u32 (0xBEEFC0DE), version u32, address u64, mapsize u64,
//     dbs[2] of 48 bytes each (pad u32, flags u16, depth u16, branch, leaf,
//     overflow, entries, root: u64), last_pg u64, txnid u64.
//   The page size is dbs[FREE].pad.
// LMDB uses the valid meta page with the higher txnid. We refuse a file where
// either meta page is invalid: the damaged one may have been the newer, and
// then LMDB would silently serve an older state, losing acknowledged writes.

import { open } from "node:fs/promises";

const PAGE_HEADER_BYTES = 24;
const P_META = 0x08;
const MDB_MAGIC = 0xbeefc0de;
const MDB_DATA_VERSION = 2;
export const DB_BYTES = 48;
const DB_ROOT_OFFSET = 40;
export const META_DBS_OFFSET = PAGE_HEADER_BYTES + 4 + 4 + 8 + 8;
const META_LAST_PG_OFFSET = META_DBS_OFFSET + 2 * DB_BYTES;
const META_TXNID_OFFSET = META_LAST_PG_OFFSET + 8;
export const META_READ_BYTES = META_TXNID_OFFSET + 8;
/** LMDB's page size is the OS page size, a power of two in this range. */
const PAGE_SIZE_MIN = 512;
const PAGE_SIZE_MAX = 65536;
/** "No root": an empty database. */
const P_INVALID = 0xffffffffffffffffn;

export interface LmdbMeta {
  readonly pageSize: number;
  readonly lastPage: number;
  readonly txnId: bigint;
}

/** A one-line description of what is wrong with the file, or undefined if it is structurally sound. */
export type LmdbCheck = { readonly ok: true; readonly meta: LmdbMeta } | { readonly ok: false; readonly problem: string };

export async function checkLmdbFile(file: string): Promise<LmdbCheck> {
  const handle = await open(file, "r");
  try {
    const size = (await handle.stat()).size;
    if (size === 0) return { ok: false, problem: "the file is empty" };
    const first = Buffer.alloc(META_READ_BYTES);
    await handle.read(first, 0, META_READ_BYTES, 0);
    const meta0 = parseMeta(first, 0);
    // Page 1 sits one page in; take the page size from page 0 when it is sane,
    // else from the OS-default 4 KiB, so a damaged page 0 still lets us judge page 1.
    const pageSize = typeof meta0 === "string" ? 4096 : meta0.pageSize;
    if (size < 2 * pageSize) return { ok: false, problem: `the file is ${size} bytes, shorter than its two ${pageSize}-byte meta pages` };
    const second = Buffer.alloc(META_READ_BYTES);
    await handle.read(second, 0, META_READ_BYTES, pageSize);
    const meta1 = parseMeta(second, 1);
    if (typeof meta0 === "string") return { ok: false, problem: `meta page 0 is invalid (${meta0})` };
    if (typeof meta1 === "string") return { ok: false, problem: `meta page 1 is invalid (${meta1})` };
    if (meta1.pageSize !== meta0.pageSize) {
      return { ok: false, problem: `the meta pages disagree on the page size (${meta0.pageSize} and ${meta1.pageSize})` };
    }
    const newest = meta1.txnId > meta0.txnId ? meta1 : meta0;
    const needed = (newest.lastPage + 1) * newest.pageSize;
    if (size < needed) {
      return {
        ok: false,
        problem: `the file is ${size} bytes but its meta page (txn ${newest.txnId}) needs ${needed} (last page ${newest.lastPage}): it was truncated`,
      };
    }
    return { ok: true, meta: newest };
  } finally {
    await handle.close();
  }
}

/** The meta of page `index`, or what is wrong with it. */
export function parseMeta(page: Buffer, index: number): LmdbMeta | string {
  const pgno = page.readBigUInt64LE(0);
  if (pgno !== BigInt(index)) return `page number ${pgno}`;
  if ((page.readUInt16LE(18) & P_META) === 0) return "not a meta page";
  const magic = page.readUInt32LE(PAGE_HEADER_BYTES);
  if (magic !== MDB_MAGIC) return `magic 0x${magic.toString(16)}`;
  const version = page.readUInt32LE(PAGE_HEADER_BYTES + 4);
  if (version !== MDB_DATA_VERSION) return `version ${version}`;
  const pageSize = page.readUInt32LE(META_DBS_OFFSET);
  if (pageSize < PAGE_SIZE_MIN || pageSize > PAGE_SIZE_MAX || (pageSize & (pageSize - 1)) !== 0) return `page size ${pageSize}`;
  const lastPage = page.readBigUInt64LE(META_LAST_PG_OFFSET);
  if (lastPage < 1n || lastPage > BigInt(Number.MAX_SAFE_INTEGER)) return `last page ${lastPage}`;
  for (let db = 0; db < 2; db++) {
    const root = page.readBigUInt64LE(META_DBS_OFFSET + db * DB_BYTES + DB_ROOT_OFFSET);
    if (root !== P_INVALID && (root < 2n || root > lastPage)) return `root page ${root} of database ${db} is outside 2..${lastPage}`;
  }
  return { pageSize, lastPage: Number(lastPage), txnId: page.readBigUInt64LE(META_TXNID_OFFSET) };
}
