/**
 * Reads the header of llama.cpp's per-sequence state bytes (`llama_state_seq_get_data`) without
 * touching the tensor data: which positions the state holds, the K/V types and the V layout.
 *
 * The cache needs this twice: the V layout (transposed or not) is only decided when the context
 * is created (flash attention `auto`), so the cache's key reads it from a real state; and every
 * entry is checked here, before its bytes reach llama.cpp, to hold exactly the block's positions
 * in the layout this context uses.
 *
 * Layout, from the pinned llama.cpp (src/llama-context.cpp, src/llama-kv-cache.cpp):
 *   u32 magic (0xaf143cd8), i32 seq_id, u32 n_stream,
 *   per stream: u32 cell_count, then (if cell_count > 0)
 *     cell_count × { i32 pos, u32 n_seq_id (1 for one sequence), i32 seq_id }
 *     u32 v_trans, u32 n_layer,
 *     n_layer × { i32 k_type, u64 k_row_size, k rows },
 *     n_layer × (v_trans ? { i32 v_type, u32 v_element_size, u32 n_embd_v_gqa, v data }
 *                         : { i32 v_type, u64 v_row_size, v rows }).
 * Models whose cells carry extra data (M-RoPE, PLE) are not supported: their cells do not parse.
 */

/** Identifies the byte format parsed here; part of every cache key. */
export const LLAMA_STATE_FORMAT = 'llama.cpp seq-state magic af143cd8 (node-llama-cpp 3.21.1, b80fb11a)';

const STATE_MAGIC = 0xaf143cd8;

export interface SequenceStateLayout {
  /** Transformer layers holding KV. */
  readonly layers: number;
  /** ggml type ids of K and V (the same in every layer for the models we run). */
  readonly kType: number;
  readonly vType: number;
  /** V stored transposed (no flash attention) or row by row (flash attention). */
  readonly vTransposed: boolean;
}

export interface SequenceStateInfo extends SequenceStateLayout {
  /** Position of each stored cell, in storage order. */
  readonly positions: Int32Array;
}

export class StateFormatError extends Error {
  override name = 'StateFormatError';
}

/** Parses the header; throws StateFormatError when the bytes are not one non-empty sequence state. */
export function describeSequenceState(bytes: Uint8Array): SequenceStateInfo {
  const reader = new StateReader(bytes);
  if (reader.u32() !== STATE_MAGIC) throw new StateFormatError('not a llama.cpp sequence state (bad magic)');
  reader.i32();
  const streams = reader.u32();
  if (streams !== 1) throw new StateFormatError(`expected one KV stream, found ${streams}`);
  const cellCount = reader.u32();
  if (cellCount === 0) throw new StateFormatError('the state holds no cells');
  const positions = new Int32Array(cellCount);
  for (let i = 0; i < cellCount; i++) {
    positions[i] = reader.i32();
    const sequences = reader.u32();
    if (sequences !== 1) throw new StateFormatError(`cell ${i} belongs to ${sequences} sequences (expected 1)`);
    reader.i32();
  }
  const vTransposed = readFlag(reader.u32());
  const layers = reader.u32();
  if (layers === 0) throw new StateFormatError('the state has no layers');
  const kType = reader.i32();
  const kRowSize = reader.u64();
  if (reader.remaining < kRowSize * cellCount) throw new StateFormatError('the state is truncated');
  return { positions, layers, kType, vType: readVType(reader, layers, kType, kRowSize, cellCount), vTransposed };
}

/** True when the state's cells are exactly the positions first … first + count − 1 (in any order). */
export function holdsExactly(positions: Int32Array, first: number, count: number): boolean {
  if (positions.length !== count) return false;
  const seen = new Uint8Array(count);
  for (const position of positions) {
    const index = position - first;
    if (index < 0 || index >= count || seen[index]) return false;
    seen[index] = 1;
  }
  return true;
}

/** Skips the K rows of every layer to reach the first V header. */
function readVType(reader: StateReader, layers: number, kType: number, kRowSize: number, cellCount: number): number {
  reader.skip(kRowSize * cellCount);
  for (let layer = 1; layer < layers; layer++) {
    if (reader.i32() !== kType) throw new StateFormatError(`layer ${layer} has a different K type`);
    reader.skip(reader.u64() * cellCount);
  }
  return reader.i32();
}

function readFlag(value: number): boolean {
  if (value > 1) throw new StateFormatError(`invalid V layout flag ${value}`);
  return value === 1;
}

/** Bounds-checked little-endian reads over the state bytes. */
class StateReader {
  private readonly view: DataView;
  private offset = 0;

  constructor(bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get remaining(): number {
    return this.view.byteLength - this.offset;
  }

  u32(): number {
    this.need(4);
    const value = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return value;
  }

  i32(): number {
    this.need(4);
    const value = this.view.getInt32(this.offset, true);
    this.offset += 4;
    return value;
  }

  u64(): number {
    this.need(8);
    const value = this.view.getBigUint64(this.offset, true);
    this.offset += 8;
    if (value > BigInt(this.remaining)) throw new StateFormatError('the state is truncated');
    return Number(value);
  }

  skip(byteCount: number): void {
    this.need(byteCount);
    this.offset += byteCount;
  }

  private need(byteCount: number): void {
    if (byteCount > this.remaining) throw new StateFormatError('the state is truncated');
  }
}
