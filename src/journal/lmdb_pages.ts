// Our own read-only walk of one LMDB B-tree in data.mdb, page by page, for
// the range reads the serving process makes (the timer's wake-up scan, the
// audit reads and audit retention).
//
// Why. An LMDB cursor that steps from one leaf to the next does not check the
// type of the page it steps onto: on a zeroed page it fails
// `mdb_cassert(mc, IS_LEAF(mp))` in mdb_cursor_next and LMDB calls abort(),
// killing the whole process (SIGABRT, "mdb.c:8587: Assertion 'IS_LEAF(mp)'
// failed in mdb_cursor_next()"; test/fault/journal_range_damage.test.ts). A
// lookup that descends from the root checks the page type and fails with
// MDB_CORRUPTED instead, which is why recovery uses exact lookups only. A
// range cannot be read that way, and lmdb-js does not say which page a key
// lives on. So before a cursor range read, the pages it will visit are
// checked here, from the file; and the wake-up scan reads its entries here
// outright, so that it can step over a damaged page and go on with the rest.
//
// Which snapshot. We walk the tree of the newest meta page, and the walk is
// synchronous. A page of that snapshot is rewritten only after a later
// transaction has freed it and a transaction after that reuses it; our write
// transactions begin in JavaScript callbacks on this same thread (lmdb-js runs
// the transaction callback here), so none can begin during a walk, and the
// one commit that may be flushing meanwhile writes only pages that were free
// before it. Inside a write transaction the newest meta page is exactly that
// transaction's base. A cursor read that follows a check reads lmdb-js's
// read snapshot, which may be older than the newest; a damaged leaf of that
// snapshot is still in the newest one, because replacing a leaf means copying
// it, and copying starts with the root-descent check that refuses it.
// LMDB's rebalancing after deletions takes a neighbour leaf without that
// check, though: once, while holds next to a zeroed wake-up leaf expired, the
// zeroed page dropped out of the tree and the walk never met it (its actors
// still fail on activation, recoverActor's exact wake-up lookup).
//
// Layout (lmdb-js 3.x's LMDB, 64-bit): page header 24 bytes (pgno u64, txnid
// u64, pad u16, flags u16, lower u16, upper u16); lower/2 node offsets (u16,
// from the end of the header) follow; a node is lo u16, hi u16, flags u16,
// ksize u16, key, then (leaf) data of size lo|hi<<16 or (branch) nothing,
// the child page number being lo|hi<<16|flags<<32. Keys compare as memcmp,
// then shorter first (mdb_cmp_memn), which is how lmdb-js's ordered-binary
// keys sort.

import { closeSync, openSync, readSync } from "node:fs";
import { LMDB_PAGES_PER_RANGE_CHECK_MAX } from "../limits";
import { META_DBS_OFFSET, META_READ_BYTES, parseMeta, DB_BYTES } from "./lmdb_file_check";

const PAGE_HEADER_BYTES = 24;
const NODE_HEADER_BYTES = 8;
const P_BRANCH = 0x01;
const P_LEAF = 0x02;
/** Flags a plain branch or leaf page of a sub-database never has (LEAF2, SUBP, OVERFLOW, META). */
const P_OTHER = 0x04 | 0x08 | 0x20 | 0x40;
const F_BIGDATA = 0x01;
const F_SUBDATA = 0x02;
const MAIN_DB = 1;
const DB_DEPTH_OFFSET = 6;
const DB_ROOT_OFFSET = 40;
const P_INVALID = 0xffffffffffffffffn;
/** LMDB's tree depth is bounded by its cursor stack (CURSOR_STACK); a deeper walk is a damaged tree. */
const TREE_DEPTH_MAX = 32;

/** What a damaged page costs a walk: the page and why it was refused. */
export interface PageDamage {
  readonly page: number;
  readonly problem: string;
}

export interface LeafEntry {
  readonly key: Buffer;
  /** Inline data; undefined when the value lives on overflow pages (never for the wake-up keyspace). */
  readonly value: Buffer | undefined;
}

interface Frame {
  readonly page: number;
  readonly bytes: Buffer;
  index: number;
}

/**
 * Reads pages of one data.mdb with pread. Opened with the journal, closed
 * with it; holds one page-sized buffer per tree level it is walking.
 */
export class LmdbPageReader {
  private readonly fd: number;
  private readonly meta = Buffer.alloc(META_READ_BYTES);
  private lastPage = 0;
  /** Pages read since open, for tests and the cost note in bench/README. */
  pagesRead = 0;

  constructor(
    file: string,
    private readonly pageSize: number,
  ) {
    this.fd = openSync(file, "r");
  }

  close(): void {
    closeSync(this.fd);
  }

  /**
   * The root page of a named sub-database in the newest snapshot, null when
   * it is empty; a PageDamage when the meta pages or the main tree cannot
   * name it.
   */
  root(name: string): number | null | PageDamage {
    let newest: { txnId: bigint; lastPage: number; mainRoot: bigint } | undefined;
    for (let index = 0; index < 2; index++) {
      readSync(this.fd, this.meta, 0, META_READ_BYTES, index * this.pageSize);
      const parsed = parseMeta(this.meta, index);
      if (typeof parsed === "string") continue;
      if (newest === undefined || parsed.txnId > newest.txnId) {
        newest = { txnId: parsed.txnId, lastPage: parsed.lastPage, mainRoot: this.meta.readBigUInt64LE(META_DBS_OFFSET + MAIN_DB * DB_BYTES + DB_ROOT_OFFSET) };
      }
    }
    // lmdb_file_check refused invalid meta pages at open; both invalid now is a file changed under us.
    if (newest === undefined) return { page: 0, problem: "no valid meta page" };
    this.lastPage = newest.lastPage;
    if (newest.mainRoot === P_INVALID) return null;
    // A sub-database is named in the main tree with its C string's terminating NUL (this LMDB keys it by strlen(name) + 1).
    const want = Buffer.from(`${name}\0`, "utf8");
    const leaf = this.descend(Number(newest.mainRoot), want);
    if (!Array.isArray(leaf)) return leaf;
    const frame = leaf[leaf.length - 1] as Frame;
    const node = this.findExact(frame.bytes, want);
    if (node === undefined) return null;
    const flags = frame.bytes.readUInt16LE(node + 4);
    const size = frame.bytes.readUInt16LE(node) | (frame.bytes.readUInt16LE(node + 2) << 16);
    if ((flags & F_SUBDATA) === 0 || size !== DB_BYTES) return { page: frame.page, problem: `the record of sub-database ${name} is not one` };
    const record = node + NODE_HEADER_BYTES + want.length;
    const depth = frame.bytes.readUInt16LE(record + DB_DEPTH_OFFSET);
    const root = frame.bytes.readBigUInt64LE(record + DB_ROOT_OFFSET);
    if (root === P_INVALID) return null;
    if (depth > TREE_DEPTH_MAX || root < 2n || root > BigInt(this.lastPage)) return { page: frame.page, problem: `sub-database ${name} has root ${root}` };
    return Number(root);
  }

  /**
   * Checks every page a cursor range read over [low, high] of at most
   * entriesMax entries visits: the path to the leaf holding `low`, then each
   * leaf until one ends after `high` or past the entriesMax-th entry, and the
   * leaf after it too (a cursor reads one key past the end of its range, or
   * past its limit, to stop). Undefined when all are sound.
   */
  checkRange(root: number, low: Buffer, high: Buffer, entriesMax: number): PageDamage | undefined {
    const path = this.descend(root, low);
    if (!Array.isArray(path)) return path;
    let covered = 0;
    for (let i = 0; i < nodeCount((path[path.length - 1] as Frame).bytes); i++) {
      if (compareKeys(nodeKey((path[path.length - 1] as Frame).bytes, i), low) >= 0) covered++;
    }
    for (let pages = 0; pages < LMDB_PAGES_PER_RANGE_CHECK_MAX; pages++) {
      const leaf = (path[path.length - 1] as Frame).bytes;
      // Judged before the next leaf is read into the same buffer.
      const ends = covered > entriesMax || compareKeys(nodeKey(leaf, nodeCount(leaf) - 1), high) > 0;
      const next = this.nextLeaf(path);
      if (next === null) return undefined;
      if (next !== undefined) return next;
      // The leaf just checked is the one the cursor steps onto after the last; past the range or the limit, it goes no further.
      if (ends) return undefined;
      covered += nodeCount((path[path.length - 1] as Frame).bytes);
    }
    return { page: (path[path.length - 1] as Frame).page, problem: `the range spans more than ${LMDB_PAGES_PER_RANGE_CHECK_MAX} pages` };
  }

  /**
   * Every entry of the tree at `root` in key order, from the first. A
   * damaged page is reported to onDamage and its whole subtree stepped over;
   * the walk goes on with the next sibling. `skip` entries are passed over
   * by their leaves' counts, without reading them.
   */
  *entries(root: number, skip: number, onDamage: (damage: PageDamage) => void): Generator<LeafEntry, void, undefined> {
    const path: Frame[] = [];
    const first = this.readPage(root, 0);
    if (isDamage(first)) {
      onDamage(first);
      return;
    }
    path.push({ page: root, bytes: first, index: 0 });
    let toSkip = skip;
    for (;;) {
      const top = path[path.length - 1] as Frame;
      if (isBranch(top.bytes)) {
        if (top.index >= nodeCount(top.bytes)) {
          path.pop();
          if (path.length === 0) return;
          (path[path.length - 1] as Frame).index++;
          continue;
        }
        const child = childPage(top.bytes, top.index);
        const bytes = path.length >= TREE_DEPTH_MAX ? { page: child, problem: "the tree is deeper than LMDB allows" } : this.readPage(child, path.length);
        if (!isDamage(bytes)) path.push({ page: child, bytes, index: 0 });
        else {
          onDamage(bytes);
          top.index++;
        }
        continue;
      }
      const count = nodeCount(top.bytes);
      if (toSkip >= count) toSkip -= count;
      else {
        for (let i = toSkip; i < count; i++) yield leafEntry(top.bytes, i);
        toSkip = 0;
      }
      path.pop();
      if (path.length === 0) return;
      (path[path.length - 1] as Frame).index++;
    }
  }

  /** Every leaf page of the tree at `root` in key order, with its keys; for tests that damage a chosen page. */
  leaves(root: number): { readonly page: number; readonly keys: Buffer[] }[] {
    const leaves: { page: number; keys: Buffer[] }[] = [];
    let current: { page: number; keys: Buffer[] } | undefined;
    const path = this.descend(root, Buffer.alloc(0));
    if (!Array.isArray(path)) throw new Error(`page ${path.page}: ${path.problem}`);
    for (;;) {
      const leaf = path[path.length - 1] as Frame;
      current = { page: leaf.page, keys: [] };
      for (let i = 0; i < nodeCount(leaf.bytes); i++) current.keys.push(Buffer.from(nodeKey(leaf.bytes, i)));
      leaves.push(current);
      const next = this.nextLeaf(path);
      if (next === null) return leaves;
      if (next !== undefined) throw new Error(`page ${next.page}: ${next.problem}`);
    }
  }

  /** The path from the root to the leaf a lookup of `key` lands on, or the first damaged page on it. */
  private descend(root: number, key: Buffer): Frame[] | PageDamage {
    const path: Frame[] = [];
    let page = root;
    for (let depth = 0; depth < TREE_DEPTH_MAX; depth++) {
      const bytes = this.readPage(page, depth);
      if (isDamage(bytes)) return bytes;
      if (!isBranch(bytes)) {
        path.push({ page, bytes, index: 0 });
        return path;
      }
      // The last child whose separator is not after the key; node 0's key is empty and stands for "everything before node 1".
      let index = 0;
      for (let i = 1; i < nodeCount(bytes) && compareKeys(nodeKey(bytes, i), key) <= 0; i++) index = i;
      path.push({ page, bytes, index });
      page = childPage(bytes, index);
    }
    return { page, problem: "the tree is deeper than LMDB allows" };
  }

  /** Moves the path to the next leaf: null past the last one, a PageDamage if a page on the way is damaged. */
  private nextLeaf(path: Frame[]): null | undefined | PageDamage {
    path.pop();
    while (path.length > 0 && (path[path.length - 1] as Frame).index + 1 >= nodeCount((path[path.length - 1] as Frame).bytes)) path.pop();
    if (path.length === 0) return null;
    const parent = path[path.length - 1] as Frame;
    parent.index++;
    let page = childPage(parent.bytes, parent.index);
    while (path.length < TREE_DEPTH_MAX) {
      const bytes = this.readPage(page, path.length);
      if (isDamage(bytes)) return bytes;
      path.push({ page, bytes, index: 0 });
      if (!isBranch(bytes)) return undefined;
      page = childPage(bytes, 0);
    }
    return { page, problem: "the tree is deeper than LMDB allows" };
  }

  private findExact(bytes: Buffer, key: Buffer): number | undefined {
    for (let i = 0; i < nodeCount(bytes); i++) if (compareKeys(nodeKey(bytes, i), key) === 0) return nodeOffset(bytes, i);
    return undefined;
  }

  /** The page, checked to be a well-formed branch or leaf page that names itself; else what is wrong with it. */
  private readPage(page: number, level: number): Buffer | PageDamage {
    if (!(page >= 2 && page <= this.lastPage)) return { page, problem: `page number ${page} is outside 2..${this.lastPage}` };
    const bytes = this.buffer(level);
    this.pagesRead++;
    const read = readSync(this.fd, bytes, 0, this.pageSize, page * this.pageSize);
    if (read !== this.pageSize) return { page, problem: `only ${read} bytes could be read` };
    const problem = pageProblem(bytes, page, this.pageSize, this.lastPage);
    return problem === undefined ? bytes : { page, problem };
  }

  /** One page buffer per tree level: a walk holds one page of each level at a time. */
  private readonly buffers: Buffer[] = [];
  private buffer(level: number): Buffer {
    let bytes = this.buffers[level];
    if (bytes === undefined) {
      bytes = Buffer.alloc(this.pageSize);
      this.buffers[level] = bytes;
    }
    return bytes;
  }
}

function pageProblem(bytes: Buffer, page: number, pageSize: number, lastPage: number): string | undefined {
  const pgno = bytes.readBigUInt64LE(0);
  if (pgno !== BigInt(page)) return `the page names itself ${pgno} (zeroed or misplaced)`;
  const flags = bytes.readUInt16LE(18);
  const kind = flags & (P_BRANCH | P_LEAF);
  if ((flags & P_OTHER) !== 0 || !(kind === P_BRANCH || kind === P_LEAF)) return `flags 0x${flags.toString(16)} are not a branch or leaf page's`;
  const lower = bytes.readUInt16LE(20);
  const upper = bytes.readUInt16LE(22);
  const room = pageSize - PAGE_HEADER_BYTES;
  if (lower % 2 !== 0 || lower === 0 || lower > upper || upper > room) return `free space bounds ${lower}..${upper} are impossible`;
  for (let i = 0; i < lower / 2; i++) {
    const at = bytes.readUInt16LE(PAGE_HEADER_BYTES + 2 * i);
    const node = PAGE_HEADER_BYTES + at;
    if (at < upper || node + NODE_HEADER_BYTES > pageSize) return `node ${i} lies outside the page`;
    const keyEnd = node + NODE_HEADER_BYTES + bytes.readUInt16LE(node + 6);
    if (keyEnd > pageSize) return `the key of node ${i} runs past the page`;
    if (kind === P_BRANCH) {
      const child = childPage(bytes, i);
      if (child < 2 || child > lastPage) return `node ${i} points to page ${child}, outside 2..${lastPage}`;
    } else {
      const nodeFlags = bytes.readUInt16LE(node + 4);
      const size = (nodeFlags & F_BIGDATA) !== 0 ? 8 : bytes.readUInt16LE(node) | (bytes.readUInt16LE(node + 2) << 16);
      if (keyEnd + size > pageSize) return `the data of node ${i} runs past the page`;
    }
  }
  return undefined;
}

function isDamage(read: Buffer | PageDamage): read is PageDamage {
  return !Buffer.isBuffer(read);
}

function isBranch(bytes: Buffer): boolean {
  return (bytes.readUInt16LE(18) & P_BRANCH) !== 0;
}

function nodeCount(bytes: Buffer): number {
  return bytes.readUInt16LE(20) >> 1;
}

function nodeOffset(bytes: Buffer, index: number): number {
  return PAGE_HEADER_BYTES + bytes.readUInt16LE(PAGE_HEADER_BYTES + 2 * index);
}

function nodeKey(bytes: Buffer, index: number): Buffer {
  const node = nodeOffset(bytes, index);
  return bytes.subarray(node + NODE_HEADER_BYTES, node + NODE_HEADER_BYTES + bytes.readUInt16LE(node + 6));
}

function childPage(bytes: Buffer, index: number): number {
  const node = nodeOffset(bytes, index);
  return bytes.readUInt16LE(node) + bytes.readUInt16LE(node + 2) * 0x10000 + bytes.readUInt16LE(node + 4) * 0x1_0000_0000;
}

/** Copies: the page buffer is reused for the next page of its level. */
function leafEntry(bytes: Buffer, index: number): LeafEntry {
  const node = nodeOffset(bytes, index);
  const keyEnd = node + NODE_HEADER_BYTES + bytes.readUInt16LE(node + 6);
  const key = Buffer.from(bytes.subarray(node + NODE_HEADER_BYTES, keyEnd));
  if ((bytes.readUInt16LE(node + 4) & F_BIGDATA) !== 0) return { key, value: undefined };
  const size = bytes.readUInt16LE(node) | (bytes.readUInt16LE(node + 2) << 16);
  return { key, value: Buffer.from(bytes.subarray(keyEnd, keyEnd + size)) };
}

/** mdb_cmp_memn: bytes, then the shorter first. */
function compareKeys(a: Buffer, b: Buffer): number {
  return Buffer.compare(a, b);
}
