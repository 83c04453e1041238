// GGUF v3 writer. Tensors are streamed: each tensor's values are produced (in chunks), encoded,
// written and dropped, so peak memory is one chunk, not the model. The file appears atomically:
// it is written to a temp file in the target folder, fsynced, renamed over the target, and the
// folder fsynced (src/atomic-file.ts).

import type { FileHandle } from 'node:fs/promises';
import { writeFileAtomicWith } from '../atomic-file.js';

import { encodeTensorValues, isWritableTensorType, type WritableTensorType } from './codec.js';
import {
  alignUp,
  elementCount,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_SCALAR_SIZE,
  GgufError,
  type GgufArrayEntry,
  type GgufMetadataEntry,
  type GgufScalar,
  type GgufScalarEntry,
  GgufValueType,
  ggmlTypeTraits,
  tensorByteSize,
} from './types.js';

export type { WritableTensorType } from './codec.js';

export interface GgufTensorSpec {
  readonly name: string;
  /** ne0 first (row length), like the reader reports them. */
  readonly dims: readonly number[];
  readonly type: WritableTensorType;
  /**
   * The values (row-major, ne0 fastest): either all at once, or a factory called once when the
   * tensor is written that yields chunks (synchronously, or asynchronously when they are read
   * from another file); every chunk but the last must hold whole blocks (a multiple of 32 values
   * for Q8_0).
   */
  readonly data: Float32Array | (() => Iterable<Float32Array> | AsyncIterable<Float32Array>);
}

export interface GgufWriteSpec {
  /** Written in iteration order. */
  readonly metadata: Iterable<readonly [string, GgufMetadataEntry]>;
  readonly tensors: readonly GgufTensorSpec[];
  /** Defaults to general.alignment from metadata, else 32. */
  readonly alignment?: number;
}

export interface WriteGgufOptions {
  /** Called after each written chunk. */
  readonly onProgress?: (bytesWritten: number, totalBytes: number) => void;
}

export interface WriteGgufResult {
  readonly path: string;
  readonly bytes: number;
}

const GGUF_WRITE_VERSION = 3;

/** Builders for metadata entries, so callers need not spell out GGUF value types. */
export const kv = {
  string: (value: string): GgufScalarEntry => ({ type: GgufValueType.STRING, value }),
  bool: (value: boolean): GgufScalarEntry => ({ type: GgufValueType.BOOL, value }),
  u8: (value: number): GgufScalarEntry => ({ type: GgufValueType.UINT8, value }),
  i8: (value: number): GgufScalarEntry => ({ type: GgufValueType.INT8, value }),
  u16: (value: number): GgufScalarEntry => ({ type: GgufValueType.UINT16, value }),
  i16: (value: number): GgufScalarEntry => ({ type: GgufValueType.INT16, value }),
  u32: (value: number): GgufScalarEntry => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufScalarEntry => ({ type: GgufValueType.INT32, value }),
  f32: (value: number): GgufScalarEntry => ({ type: GgufValueType.FLOAT32, value }),
  u64: (value: number | bigint): GgufScalarEntry => ({ type: GgufValueType.UINT64, value }),
  i64: (value: number | bigint): GgufScalarEntry => ({ type: GgufValueType.INT64, value }),
  f64: (value: number): GgufScalarEntry => ({ type: GgufValueType.FLOAT64, value }),
  strings: (value: string[]): GgufArrayEntry => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value }),
  bools: (value: boolean[]): GgufArrayEntry => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.BOOL, value }),
  i32s: (value: Int32Array | readonly number[]): GgufArrayEntry => numericArray(GgufValueType.INT32, value),
  u32s: (value: Uint32Array | readonly number[]): GgufArrayEntry => numericArray(GgufValueType.UINT32, value),
  f32s: (value: Float32Array | readonly number[]): GgufArrayEntry => numericArray(GgufValueType.FLOAT32, value),
  array: (itemType: GgufValueType, value: GgufArrayEntry['value']): GgufArrayEntry => ({ type: GgufValueType.ARRAY, itemType, value }),
};

function numericArray(itemType: GgufValueType, value: ArrayLike<number>): GgufArrayEntry {
  return { type: GgufValueType.ARRAY, itemType, value: ArrayBuffer.isView(value) ? value as GgufArrayEntry['value'] : Array.from(value) };
}

/** Write a GGUF v3 file atomically; returns the final size in bytes. */
export async function writeGguf(path: string, spec: GgufWriteSpec, options: WriteGgufOptions = {}): Promise<WriteGgufResult> {
  const metadata = new Map(spec.metadata);
  const alignment = resolveAlignment(metadata, spec.alignment);
  const layout = layoutTensors(spec.tensors, alignment);
  const header = encodeHeader(metadata, spec.tensors, layout.offsets, alignment);
  const totalBytes = header.length + layout.dataBytes;
  const progress = new ProgressCounter(totalBytes, options.onProgress);
  await writeFileAtomicWith(
    path,
    async (handle) => {
      await writeAll(handle, header, progress);
      for (const tensor of spec.tensors) await writeTensor(handle, tensor, alignment, progress);
    },
    { shared: true },
  );
  return { path, bytes: totalBytes };
}

function resolveAlignment(metadata: Map<string, GgufMetadataEntry>, requested: number | undefined): number {
  const stored = metadata.get('general.alignment')?.value;
  const alignment = requested ?? (typeof stored === 'number' ? stored : GGUF_DEFAULT_ALIGNMENT);
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new GgufError('INVALID_ARGUMENT', `alignment must be a power of two, got ${alignment}`);
  }
  if (stored !== undefined && stored !== alignment) {
    throw new GgufError('INVALID_ARGUMENT', `general.alignment ${String(stored)} conflicts with alignment ${alignment}`);
  }
  if (alignment !== GGUF_DEFAULT_ALIGNMENT) metadata.set('general.alignment', kv.u32(alignment));
  return alignment;
}

/** llama.cpp requires each tensor to start right after the previous one's padded end. */
function layoutTensors(tensors: readonly GgufTensorSpec[], alignment: number): { offsets: number[]; dataBytes: number } {
  const offsets: number[] = [];
  const names = new Set<string>();
  let cursor = 0;
  for (const tensor of tensors) {
    validateTensorSpec(tensor, names);
    offsets.push(cursor);
    cursor += alignUp(tensorByteSize(tensor.type, tensor.dims, tensor.name), alignment);
  }
  return { offsets, dataBytes: cursor };
}

function validateTensorSpec(tensor: GgufTensorSpec, names: Set<string>): void {
  if (names.has(tensor.name)) throw new GgufError('INVALID_ARGUMENT', `duplicate tensor name '${tensor.name}'`);
  names.add(tensor.name);
  if (!isWritableTensorType(tensor.type)) {
    throw new GgufError('UNSUPPORTED', `cannot write tensor '${tensor.name}' as type ${tensor.type}: only F32, F16, BF16 and Q8_0`);
  }
  if (tensor.dims.length === 0 || tensor.dims.length > 4 || tensor.dims.some((dim) => !Number.isInteger(dim) || dim <= 0)) {
    throw new GgufError('INVALID_ARGUMENT', `tensor '${tensor.name}' has invalid dims [${tensor.dims.join(', ')}]`);
  }
  if (Buffer.byteLength(tensor.name) >= 64) {
    throw new GgufError('INVALID_ARGUMENT', `tensor name '${tensor.name}' is too long for ggml (max 63 bytes)`);
  }
}

function encodeHeader(
  metadata: ReadonlyMap<string, GgufMetadataEntry>,
  tensors: readonly GgufTensorSpec[],
  offsets: readonly number[],
  alignment: number,
): Buffer {
  const sink = new ByteSink();
  sink.raw(Buffer.from(GGUF_MAGIC, 'latin1'));
  sink.u32(GGUF_WRITE_VERSION);
  sink.u64(tensors.length);
  sink.u64(metadata.size);
  for (const [key, entry] of metadata) {
    sink.string(key);
    sink.u32(entry.type);
    encodeEntry(sink, entry, key);
  }
  tensors.forEach((tensor, index) => encodeTensorInfo(sink, tensor, offsets[index]));
  sink.padTo(alignment);
  return sink.toBuffer();
}

function encodeTensorInfo(sink: ByteSink, tensor: GgufTensorSpec, offset: number): void {
  sink.string(tensor.name);
  sink.u32(tensor.dims.length);
  for (const dim of tensor.dims) sink.u64(dim);
  sink.u32(tensor.type);
  sink.u64(offset);
}

function encodeEntry(sink: ByteSink, entry: GgufMetadataEntry, key: string): void {
  if (entry.type !== GgufValueType.ARRAY) {
    encodeScalar(sink, entry.type, entry.value, key);
    return;
  }
  sink.u32(entry.itemType);
  sink.u64(entry.value.length);
  if (entry.itemType === GgufValueType.ARRAY) {
    for (const item of entry.value as GgufArrayEntry[]) encodeEntry(sink, item, key);
    return;
  }
  const items = entry.value as ArrayLike<GgufScalar>;
  for (let i = 0; i < items.length; i++) encodeScalar(sink, entry.itemType, items[i], key);
}

function encodeScalar(sink: ByteSink, type: GgufValueType, value: GgufScalar, key: string): void {
  const mismatch = (): GgufError =>
    new GgufError('INVALID_ARGUMENT', `metadata '${key}': value ${String(value)} does not fit type ${GgufValueType[type]}`);
  if (type === GgufValueType.STRING) {
    if (typeof value !== 'string') throw mismatch();
    sink.string(value);
  } else if (type === GgufValueType.BOOL) {
    if (typeof value !== 'boolean') throw mismatch();
    sink.u8(value ? 1 : 0);
  } else if (type === GgufValueType.UINT64 || type === GgufValueType.INT64) {
    if (typeof value !== 'number' && typeof value !== 'bigint') throw mismatch();
    sink.int64(type === GgufValueType.INT64, BigInt(value));
  } else {
    if (typeof value !== 'number') throw mismatch();
    sink.number(type, value, mismatch);
  }
}

async function writeTensor(handle: FileHandle, tensor: GgufTensorSpec, alignment: number, progress: ProgressCounter): Promise<void> {
  const expected = elementCount(tensor.dims);
  const { blockSize } = ggmlTypeTraits(tensor.type);
  let written = 0;
  let bytes = 0;
  const chunks = tensor.data instanceof Float32Array ? [tensor.data] : tensor.data();
  for await (const chunk of chunks) {
    if (chunk.length % blockSize !== 0 || written + chunk.length > expected) {
      throw new GgufError('INVALID_ARGUMENT', `tensor '${tensor.name}': chunk of ${chunk.length} values breaks its ${expected}-value, ${blockSize}-value-block layout`);
    }
    const encoded = encodeTensorValues(tensor.type, chunk);
    await writeAll(handle, encoded, progress);
    written += chunk.length;
    bytes += encoded.length;
  }
  if (written !== expected) {
    throw new GgufError('INVALID_ARGUMENT', `tensor '${tensor.name}' got ${written} values, expected ${expected}`);
  }
  await writeAll(handle, Buffer.alloc(alignUp(bytes, alignment) - bytes), progress);
}

async function writeAll(handle: FileHandle, buffer: Buffer, progress: ProgressCounter): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesWritten } = await handle.write(buffer, done, buffer.length - done);
    done += bytesWritten;
  }
  progress.add(buffer.length);
}

class ProgressCounter {
  private written = 0;
  constructor(
    private readonly total: number,
    private readonly listener?: (bytesWritten: number, totalBytes: number) => void,
  ) {}

  add(bytes: number): void {
    this.written += bytes;
    if (bytes > 0) this.listener?.(this.written, this.total);
  }
}

/** Growable little-endian byte buffer for the header. */
class ByteSink {
  private buffer = Buffer.alloc(1 << 16);
  private length = 0;

  private reserve(bytes: number): number {
    if (this.length + bytes > this.buffer.length) {
      const grown = Buffer.alloc(Math.max(this.buffer.length * 2, this.length + bytes));
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    const at = this.length;
    this.length += bytes;
    return at;
  }

  // `reserve` may swap the buffer, so it must run before `this.buffer` is read.
  raw(bytes: Uint8Array): void {
    const at = this.reserve(bytes.length);
    this.buffer.set(bytes, at);
  }

  u8(value: number): void {
    const at = this.reserve(1);
    this.buffer.writeUInt8(value, at);
  }

  u32(value: number): void {
    const at = this.reserve(4);
    this.buffer.writeUInt32LE(value, at);
  }

  u64(value: number): void {
    this.int64(false, BigInt(value));
  }

  int64(signed: boolean, value: bigint): void {
    const at = this.reserve(8);
    if (signed) this.buffer.writeBigInt64LE(value, at);
    else this.buffer.writeBigUInt64LE(value, at);
  }

  /** Writes a fixed-size numeric type; Buffer's range checks catch values that do not fit. */
  number(type: GgufValueType, value: number, mismatch: () => GgufError): void {
    const isFloat = type === GgufValueType.FLOAT32 || type === GgufValueType.FLOAT64;
    if (!isFloat && !Number.isInteger(value)) throw mismatch();
    try {
      this.writeNumber(type, value);
    } catch {
      throw mismatch();
    }
  }

  private writeNumber(type: GgufValueType, value: number): void {
    const at = this.reserve(GGUF_SCALAR_SIZE[type] ?? 0);
    switch (type) {
      case GgufValueType.UINT8: return void this.buffer.writeUInt8(value, at);
      case GgufValueType.INT8: return void this.buffer.writeInt8(value, at);
      case GgufValueType.UINT16: return void this.buffer.writeUInt16LE(value, at);
      case GgufValueType.INT16: return void this.buffer.writeInt16LE(value, at);
      case GgufValueType.UINT32: return void this.buffer.writeUInt32LE(value, at);
      case GgufValueType.INT32: return void this.buffer.writeInt32LE(value, at);
      case GgufValueType.FLOAT32: return void this.buffer.writeFloatLE(value, at);
      case GgufValueType.FLOAT64: return void this.buffer.writeDoubleLE(value, at);
      default: throw new Error(`not a fixed-size number type: ${type}`);
    }
  }

  string(value: string): void {
    const bytes = Buffer.from(value, 'utf8');
    this.u64(bytes.length);
    this.raw(bytes);
  }

  padTo(alignment: number): void {
    this.reserve(alignUp(this.length, alignment) - this.length);
  }

  toBuffer(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}
