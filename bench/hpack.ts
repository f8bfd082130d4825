// The part of HPACK (RFC 7541) the raw HTTP/2 load generator needs: a complete
// decoder (static table, dynamic table, Huffman), because the server is free
// to index any response header in its dynamic table and every header block on
// a connection must be decoded in order to keep that table in sync; and a
// literal-only encoder for the one request header block, which is built once
// per connection.

/** RFC 7541 Appendix A. Index 1 is the first entry. */
const STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

export const STATIC_INDEX_METHOD_POST = 3;
export const STATIC_INDEX_SCHEME_HTTP = 6;
export const STATIC_NAME_PATH = 4;
export const STATIC_NAME_AUTHORITY = 1;
export const STATIC_NAME_CONTENT_TYPE = 31;

/**
 * Code length in bits of each symbol 0..255 (RFC 7541 Appendix B). The code is
 * canonical (codes of one length are consecutive, in symbol order, and follow
 * the last code of the previous length shifted left), so the codes themselves
 * are derived from the lengths below rather than copied.
 */
const HUFFMAN_CODE_BITS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
];
/** EOS (symbol 256) is 30 bits, all ones; it must never appear in a string. */
const HUFFMAN_EOS_BITS = 30;
const HUFFMAN_SYMBOLS = 257;
const HUFFMAN_EOS = 256;
/** Padding at the end of a Huffman string: at most 7 bits, all ones (a prefix of EOS). */
const HUFFMAN_PADDING_BITS_MAX = 7;

/**
 * Binary decoding tree: node n's children are at [2n] and [2n+1]; a value
 * >= 0 is the next node, a negative value v is the leaf of symbol -v - 1.
 */
function buildHuffmanTree(): Int32Array {
  const lengths = [...HUFFMAN_CODE_BITS, HUFFMAN_EOS_BITS];
  const order = lengths.map((bits, symbol) => ({ bits, symbol })).sort((a, b) => a.bits - b.bits || a.symbol - b.symbol);
  // A full binary tree with 257 leaves has 256 inner nodes.
  const tree = new Int32Array(2 * (HUFFMAN_SYMBOLS - 1)).fill(0);
  let nodes = 1;
  let code = 0;
  let previousBits = order[0]?.bits ?? 0;
  for (const { bits, symbol } of order) {
    code <<= bits - previousBits;
    previousBits = bits;
    let node = 0;
    for (let i = bits - 1; i >= 0; i--) {
      const slot = 2 * node + ((code >>> i) & 1);
      if (i === 0) {
        tree[slot] = -symbol - 1;
      } else {
        let next = tree[slot] ?? 0;
        if (next === 0) {
          next = nodes++;
          tree[slot] = next;
        }
        node = next;
      }
    }
    code += 1;
  }
  return tree;
}

const HUFFMAN_TREE = buildHuffmanTree();

export class HpackError extends Error {
  override readonly name = "HpackError";
}

function huffmanDecode(input: Buffer, start: number, end: number): string {
  let node = 0;
  let out = "";
  let bitsSinceSymbol = 0;
  let onesOnly = true;
  for (let i = start; i < end; i++) {
    const byte = input[i] ?? 0;
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >>> bit) & 1;
      const next = HUFFMAN_TREE[2 * node + b] ?? 0;
      bitsSinceSymbol += 1;
      onesOnly &&= b === 1;
      if (next < 0) {
        const symbol = -next - 1;
        if (symbol === HUFFMAN_EOS) throw new HpackError("EOS in Huffman string");
        out += String.fromCharCode(symbol);
        node = 0;
        bitsSinceSymbol = 0;
        onesOnly = true;
      } else {
        node = next;
      }
    }
  }
  if (bitsSinceSymbol > HUFFMAN_PADDING_BITS_MAX || !onesOnly) throw new HpackError("bad Huffman padding");
  return out;
}

/** Receives the decoded fields of one header block. */
export interface HeaderSink {
  header(name: string, value: string): void;
}

/** Bounds how many fields one block may carry, so a broken peer cannot spin the decoder. */
const FIELDS_PER_BLOCK_MAX = 256;
/** RFC 7541 section 4.1: each entry costs its name and value length plus 32. */
const ENTRY_OVERHEAD_BYTES = 32;

export class HpackDecoder {
  /** Newest first: dynamic index 62 is dynamic[0]. */
  private dynamic: Array<readonly [string, string]> = [];
  private dynamicBytes = 0;
  private tableBytesMax: number;
  private position = 0;

  /** tableBytesLimit is the SETTINGS_HEADER_TABLE_SIZE we advertised. */
  constructor(private readonly tableBytesLimit: number) {
    this.tableBytesMax = tableBytesLimit;
  }

  decode(block: Buffer, start: number, end: number, sink: HeaderSink): void {
    this.position = start;
    let fields = 0;
    while (this.position < end) {
      if (++fields > FIELDS_PER_BLOCK_MAX) throw new HpackError("too many header fields");
      const first = block[this.position] ?? 0;
      if (first & 0x80) {
        // Indexed header field.
        const entry = this.entry(this.integer(block, end, 7));
        sink.header(entry[0], entry[1]);
      } else if (first & 0x40) {
        // Literal with incremental indexing.
        const index = this.integer(block, end, 6);
        const name = index === 0 ? this.string(block, end) : this.entry(index)[0];
        const value = this.string(block, end);
        this.insert(name, value);
        sink.header(name, value);
      } else if (first & 0x20) {
        // Dynamic table size update.
        const size = this.integer(block, end, 5);
        if (size > this.tableBytesLimit) throw new HpackError("table size update above our limit");
        this.tableBytesMax = size;
        this.evict(0);
      } else {
        // Literal without indexing (0000) or never indexed (0001): same layout.
        const index = this.integer(block, end, 4);
        const name = index === 0 ? this.string(block, end) : this.entry(index)[0];
        const value = this.string(block, end);
        sink.header(name, value);
      }
    }
  }

  private entry(index: number): readonly [string, string] {
    if (index === 0) throw new HpackError("index 0");
    const entry =
      index <= STATIC_TABLE.length ? STATIC_TABLE[index - 1] : this.dynamic[index - STATIC_TABLE.length - 1];
    if (entry === undefined) throw new HpackError(`index ${index} out of range`);
    return entry;
  }

  private insert(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD_BYTES;
    this.evict(size);
    // An entry larger than the table empties it and is not added (RFC 7541 section 4.4).
    if (size > this.tableBytesMax) return;
    this.dynamic.unshift([name, value]);
    this.dynamicBytes += size;
  }

  private evict(room: number): void {
    while (this.dynamicBytes + room > this.tableBytesMax && this.dynamic.length > 0) {
      const oldest = this.dynamic.pop();
      if (oldest !== undefined) this.dynamicBytes -= oldest[0].length + oldest[1].length + ENTRY_OVERHEAD_BYTES;
    }
  }

  private integer(block: Buffer, end: number, prefixBits: number): number {
    const mask = (1 << prefixBits) - 1;
    let value = (block[this.position++] ?? 0) & mask;
    if (value < mask) return value;
    // Continuation bytes: 7 bits each; 4 of them reach 2^28, far beyond any sane index or length.
    for (let shift = 0; shift <= 21; shift += 7) {
      if (this.position >= end) throw new HpackError("truncated integer");
      const byte = block[this.position++] ?? 0;
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
    }
    throw new HpackError("integer too large");
  }

  private string(block: Buffer, end: number): string {
    if (this.position >= end) throw new HpackError("truncated string");
    const huffman = ((block[this.position] ?? 0) & 0x80) !== 0;
    const length = this.integer(block, end, 7);
    const from = this.position;
    const to = from + length;
    if (to > end) throw new HpackError("truncated string");
    this.position = to;
    return huffman ? huffmanDecode(block, from, to) : block.toString("latin1", from, to);
  }
}

function encodeInteger(out: number[], firstByteFlags: number, prefixBits: number, value: number): void {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) {
    out.push(firstByteFlags | value);
    return;
  }
  out.push(firstByteFlags | mask);
  let rest = value - mask;
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
}

function encodeRawString(out: number[], text: string): void {
  encodeInteger(out, 0, 7, text.length);
  for (let i = 0; i < text.length; i++) out.push(text.charCodeAt(i) & 0xff);
}

/** A request header that is not a whole static-table entry; nameIndex is its name's static index, or 0. */
export interface LiteralHeader {
  readonly name: string;
  readonly value: string;
  readonly nameIndex: number;
}

export interface RequestHeaderBlocks {
  /** Literals without indexing: valid on any stream, whatever the peer's table holds. */
  readonly plain: Buffer;
  /** For the first stream of a connection: literals that insert themselves into the peer's dynamic table. */
  readonly first: Buffer;
  /** For every later stream: each header one byte, referring to the static or dynamic table. */
  readonly repeat: Buffer;
  /** Dynamic table room `first` needs on the peer; use `plain` if the peer allows less. */
  readonly tableBytes: number;
}

/**
 * The header blocks of a request whose headers never change on a connection.
 * Indexing them once, as HTTP/2 clients normally do, keeps the server's header
 * decoding per request at the level real clients cause (one byte per header,
 * no string building for literals on every request).
 */
export function encodeRequestHeaderBlocks(
  staticIndexes: readonly number[],
  literals: readonly LiteralHeader[],
): RequestHeaderBlocks {
  const plain: number[] = [];
  const first: number[] = [];
  const repeat: number[] = [];
  for (const index of staticIndexes) {
    encodeInteger(plain, 0x80, 7, index);
    encodeInteger(first, 0x80, 7, index);
    encodeInteger(repeat, 0x80, 7, index);
  }
  let tableBytes = 0;
  literals.forEach((header, position) => {
    // Literal without indexing (0000, 4-bit prefix) and with incremental indexing (01, 6-bit prefix).
    encodeInteger(plain, 0x00, 4, header.nameIndex);
    encodeInteger(first, 0x40, 6, header.nameIndex);
    if (header.nameIndex === 0) {
      encodeRawString(plain, header.name);
      encodeRawString(first, header.name);
    }
    encodeRawString(plain, header.value);
    encodeRawString(first, header.value);
    // The newest entry is dynamic index 62, so the first inserted ends up last.
    encodeInteger(repeat, 0x80, 7, STATIC_TABLE.length + literals.length - position);
    tableBytes += header.name.length + header.value.length + ENTRY_OVERHEAD_BYTES;
  });
  return { plain: Buffer.from(plain), first: Buffer.from(first), repeat: Buffer.from(repeat), tableBytes };
}

/** Exposed for the self-check: decodes a whole Huffman-coded buffer. */
export function huffmanDecodeForTest(input: Buffer): string {
  return huffmanDecode(input, 0, input.length);
}
