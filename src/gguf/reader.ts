// GGUF v2/v3 header reader: metadata, tensor infos and layout, validated against the real
// file size. Only the header is read (bounded, buffered), never the tensor data, so opening a
// multi-GB model costs a few MB of I/O. Layout reference: shared/reference/gguf.h.

import { open, type FileHandle } from 'node:fs/promises';

import { decodeTensorValues } from './codec.js';
import { FileCursor } from './file-cursor.js';
import {
  alignUp,
  elementCount,
  GGML_MAX_DIMS,
  type GgmlType,
  ggmlTypeTraits,
  type GgufArray,
  type GgufArrayEntry,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_SCALAR_SIZE,
  GgufError,
  type GgufMetadataEntry,
  type GgufScalar,
  type GgufScalarType,
  GgufValueType,
  tensorByteSize,
} from './types.js';

export { GgufError } from './types.js';
export type { GgufErrorCode } from './types.js';

export interface GgufTensorInfo {
  readonly name: string;
  /** ne0 first (fastest-varying; the row length of a matrix). */
  readonly dims: readonly number[];
  readonly type: GgmlType;
  readonly typeName: string;
  /** Offset relative to the start of the data section, as stored in the file. */
  readonly offset: number;
  /** Absolute file offset of the first data byte. */
  readonly fileOffset: number;
  readonly byteSize: number;
  readonly elementCount: number;
}

export interface GgufInfo {
  readonly path: string;
  readonly fileSize: number;
  readonly version: number;
  readonly tensorCount: number;
  readonly alignment: number;
  /** Absolute file offset where the tensor data section starts (aligned). */
  readonly dataOffset: number;
  /** Keys in file order. */
  readonly metadata: ReadonlyMap<string, GgufMetadataEntry>;
  readonly tensors: readonly GgufTensorInfo[];
}

const SUPPORTED_VERSIONS = new Set([2, 3]);
/** Smallest possible encodings, used to reject absurd counts before looping over them. */
const MIN_KV_BYTES = 8 + 4 + 1;
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8;
const MAX_ARRAY_NESTING = 8;

/** Parse and validate a GGUF file's header (metadata + tensor infos). */
export async function readGgufHeader(path: string): Promise<GgufInfo> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    return await parseHeader(new FileCursor(handle, size), path);
  } catch (error) {
    if (error instanceof GgufError && error.path === undefined) {
      throw new GgufError(error.code, error.message, path);
    }
    throw error;
  } finally {
    await handle.close();
  }
}

async function parseHeader(cursor: FileCursor, path: string): Promise<GgufInfo> {
  await readMagic(cursor);
  const version = await readVersion(cursor);
  const tensorCount = await cursor.boundedU64('tensor count', cursor.remaining, MIN_TENSOR_INFO_BYTES);
  const kvCount = await cursor.boundedU64('metadata key count', cursor.remaining, MIN_KV_BYTES);
  const metadata = await readMetadata(cursor, kvCount);
  const alignment = readAlignment(metadata);
  const rawTensors = await readTensorInfos(cursor, tensorCount);
  const dataOffset = tensorCount > 0 ? alignUp(cursor.offset, alignment) : cursor.offset;
  const tensors = rawTensors.map((raw) => placeTensor(raw, dataOffset, alignment));
  checkTensorDataFits(tensors, cursor.fileSize);
  return { path, fileSize: cursor.fileSize, version, tensorCount, alignment, dataOffset, metadata, tensors };
}

async function readMagic(cursor: FileCursor): Promise<void> {
  const magicBytes = cursor.fileSize >= 4 ? await cursor.bytes(4, 'magic') : Buffer.alloc(0);
  if (magicBytes.toString('latin1') !== GGUF_MAGIC) {
    throw new GgufError('BAD_MAGIC', 'not a GGUF file (bad magic)');
  }
}

async function readVersion(cursor: FileCursor): Promise<number> {
  const version = await cursor.u32('version');
  if (SUPPORTED_VERSIONS.has(version)) return version;
  // A byte-swapped 3 reads as 0x03000000: name the likely cause.
  const hint = (version & 0xffff) === 0 ? ' (big-endian GGUF files are not supported)' : '';
  throw new GgufError('UNSUPPORTED_VERSION', `unsupported GGUF version ${version}${hint}`);
}

async function readMetadata(cursor: FileCursor, kvCount: number): Promise<Map<string, GgufMetadataEntry>> {
  const metadata = new Map<string, GgufMetadataEntry>();
  for (let i = 0; i < kvCount; i++) {
    const key = await cursor.string('metadata key');
    if (metadata.has(key)) throw new GgufError('CORRUPT', `corrupt GGUF: duplicate metadata key '${key}'`);
    const type = await cursor.u32(`type of '${key}'`);
    metadata.set(key, await readValue(cursor, type, key, 0));
  }
  return metadata;
}

async function readValue(cursor: FileCursor, type: number, key: string, depth: number): Promise<GgufMetadataEntry> {
  if (type === GgufValueType.ARRAY) return readArray(cursor, key, depth);
  if (type === GgufValueType.STRING) return { type, value: await cursor.string(`value of '${key}'`) };
  const size = GGUF_SCALAR_SIZE[type];
  if (size === undefined) {
    throw new GgufError('CORRUPT', `corrupt GGUF: unknown metadata value type ${type} for key '${key}'`);
  }
  const bytes = await cursor.bytes(size, `value of '${key}'`);
  return { type: type as GgufScalarType, value: decodeScalar(type, bytes, 0) };
}

function decodeScalar(type: number, bytes: Buffer, at: number): GgufScalar {
  switch (type) {
    case GgufValueType.UINT8: return bytes.readUInt8(at);
    case GgufValueType.INT8: return bytes.readInt8(at);
    case GgufValueType.UINT16: return bytes.readUInt16LE(at);
    case GgufValueType.INT16: return bytes.readInt16LE(at);
    case GgufValueType.UINT32: return bytes.readUInt32LE(at);
    case GgufValueType.INT32: return bytes.readInt32LE(at);
    case GgufValueType.FLOAT32: return bytes.readFloatLE(at);
    case GgufValueType.BOOL: return bytes.readUInt8(at) !== 0;
    case GgufValueType.UINT64: return bytes.readBigUInt64LE(at);
    case GgufValueType.INT64: return bytes.readBigInt64LE(at);
    case GgufValueType.FLOAT64: return bytes.readDoubleLE(at);
    default: throw new GgufError('CORRUPT', `corrupt GGUF: unknown metadata value type ${type}`);
  }
}

async function readArray(cursor: FileCursor, key: string, depth: number): Promise<GgufArrayEntry> {
  if (depth >= MAX_ARRAY_NESTING) {
    throw new GgufError('CORRUPT', `corrupt GGUF: arrays nested deeper than ${MAX_ARRAY_NESTING} in '${key}'`);
  }
  const itemType = await cursor.u32(`array type of '${key}'`);
  const minItemBytes = minEncodedSize(itemType, key);
  const count = await cursor.boundedU64(`array length of '${key}'`, cursor.remaining - 8, minItemBytes);
  if (itemType === GgufValueType.STRING) return { type: GgufValueType.ARRAY, itemType, value: await readStrings(cursor, count, key) };
  if (itemType === GgufValueType.ARRAY) return { type: GgufValueType.ARRAY, itemType, value: await readNested(cursor, count, key, depth) };
  const bytes = await cursor.bytes(count * minItemBytes, `array '${key}'`);
  return { type: GgufValueType.ARRAY, itemType, value: decodeNumericArray(itemType, bytes, count) };
}

function minEncodedSize(itemType: number, key: string): number {
  if (itemType === GgufValueType.STRING) return 8;
  if (itemType === GgufValueType.ARRAY) return 4 + 8;
  const size = GGUF_SCALAR_SIZE[itemType];
  if (size === undefined) {
    throw new GgufError('CORRUPT', `corrupt GGUF: unknown array item type ${itemType} for key '${key}'`);
  }
  return size;
}

async function readStrings(cursor: FileCursor, count: number, key: string): Promise<string[]> {
  const items = new Array<string>(count);
  for (let i = 0; i < count; i++) items[i] = await cursor.string(`item ${i} of '${key}'`);
  return items;
}

async function readNested(cursor: FileCursor, count: number, key: string, depth: number): Promise<GgufArrayEntry[]> {
  const items: GgufArrayEntry[] = [];
  for (let i = 0; i < count; i++) items.push(await readArray(cursor, key, depth + 1));
  return items;
}

function decodeNumericArray(itemType: number, bytes: Buffer, count: number): GgufArray {
  // Copy first: typed arrays need an aligned buffer and the cursor's buffer is reused.
  const copy = new Uint8Array(bytes).buffer;
  const view = new DataView(copy);
  const fill = <T extends { [index: number]: number | bigint }>(out: T, get: (at: number) => number | bigint, size: number): T => {
    for (let i = 0; i < count; i++) out[i] = get(i * size);
    return out;
  };
  switch (itemType) {
    case GgufValueType.UINT8: return new Uint8Array(copy);
    case GgufValueType.INT8: return new Int8Array(copy);
    case GgufValueType.UINT16: return fill(new Uint16Array(count), (at) => view.getUint16(at, true), 2);
    case GgufValueType.INT16: return fill(new Int16Array(count), (at) => view.getInt16(at, true), 2);
    case GgufValueType.UINT32: return fill(new Uint32Array(count), (at) => view.getUint32(at, true), 4);
    case GgufValueType.INT32: return fill(new Int32Array(count), (at) => view.getInt32(at, true), 4);
    case GgufValueType.FLOAT32: return fill(new Float32Array(count), (at) => view.getFloat32(at, true), 4);
    case GgufValueType.FLOAT64: return fill(new Float64Array(count), (at) => view.getFloat64(at, true), 8);
    case GgufValueType.UINT64: return fill(new BigUint64Array(count), (at) => view.getBigUint64(at, true), 8);
    case GgufValueType.INT64: return fill(new BigInt64Array(count), (at) => view.getBigInt64(at, true), 8);
    case GgufValueType.BOOL: return Array.from(new Uint8Array(copy), (byte) => byte !== 0);
    default: throw new GgufError('CORRUPT', `corrupt GGUF: unknown array item type ${itemType}`);
  }
}

function readAlignment(metadata: ReadonlyMap<string, GgufMetadataEntry>): number {
  const entry = metadata.get('general.alignment');
  if (entry === undefined) return GGUF_DEFAULT_ALIGNMENT;
  const value = entry.value;
  if (entry.type !== GgufValueType.UINT32 || typeof value !== 'number' || value === 0 || (value & (value - 1)) !== 0) {
    throw new GgufError('CORRUPT', `corrupt GGUF: general.alignment must be a power-of-two u32, got ${String(value)}`);
  }
  return value;
}

interface RawTensorInfo {
  readonly name: string;
  readonly dims: number[];
  readonly type: number;
  readonly offset: number;
}

async function readTensorInfos(cursor: FileCursor, tensorCount: number): Promise<RawTensorInfo[]> {
  const tensors: RawTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const tensor = await readTensorInfo(cursor, i);
    if (names.has(tensor.name)) throw new GgufError('CORRUPT', `corrupt GGUF: duplicate tensor name '${tensor.name}'`);
    names.add(tensor.name);
    tensors.push(tensor);
  }
  return tensors;
}

async function readTensorInfo(cursor: FileCursor, index: number): Promise<RawTensorInfo> {
  const name = await cursor.string(`name of tensor ${index}`);
  const dimCount = await cursor.u32(`dimension count of '${name}'`);
  if (dimCount > GGML_MAX_DIMS) {
    throw new GgufError('CORRUPT', `corrupt GGUF: tensor '${name}' has ${dimCount} dimensions (max ${GGML_MAX_DIMS})`);
  }
  const dims: number[] = [];
  for (let d = 0; d < dimCount; d++) {
    dims.push(await cursor.boundedU64(`dimension ${d} of '${name}'`, Number.MAX_SAFE_INTEGER));
  }
  if (elementCount(dims) > Number.MAX_SAFE_INTEGER) {
    throw new GgufError('CORRUPT', `corrupt GGUF: tensor '${name}' has an impossible shape [${dims.join(', ')}]`);
  }
  const type = await cursor.u32(`type of '${name}'`);
  const offset = await cursor.boundedU64(`data offset of '${name}'`, Number.MAX_SAFE_INTEGER);
  return { name, dims, type, offset };
}

function placeTensor(raw: RawTensorInfo, dataOffset: number, alignment: number): GgufTensorInfo {
  const traits = ggmlTypeTraits(raw.type, raw.name);
  if (raw.offset % alignment !== 0) {
    throw new GgufError('CORRUPT', `corrupt GGUF: tensor '${raw.name}' offset ${raw.offset} is not aligned to ${alignment}`);
  }
  return {
    name: raw.name,
    dims: raw.dims,
    type: raw.type as GgmlType,
    typeName: traits.name,
    offset: raw.offset,
    fileOffset: dataOffset + raw.offset,
    byteSize: tensorByteSize(raw.type, raw.dims, raw.name),
    elementCount: elementCount(raw.dims),
  };
}

function checkTensorDataFits(tensors: readonly GgufTensorInfo[], fileSize: number): void {
  let last: GgufTensorInfo | undefined;
  for (const tensor of tensors) {
    if (!last || tensor.fileOffset + tensor.byteSize > last.fileOffset + last.byteSize) last = tensor;
  }
  if (last && last.fileOffset + last.byteSize > fileSize) {
    const needed = last.fileOffset + last.byteSize;
    throw new GgufError(
      'TRUNCATED',
      `truncated GGUF: tensor data needs ${needed} bytes but file has ${fileSize} (tensor '${last.name}')`,
    );
  }
}

/** Read one tensor's raw bytes (bounded reads of exactly its size). */
export async function readTensorBytes(info: GgufInfo, tensorName: string): Promise<Buffer> {
  const tensor = findTensor(info, tensorName);
  const handle: FileHandle = await open(info.path, 'r');
  try {
    const bytes = Buffer.allocUnsafe(tensor.byteSize);
    let filled = 0;
    while (filled < tensor.byteSize) {
      const { bytesRead } = await handle.read(bytes, filled, tensor.byteSize - filled, tensor.fileOffset + filled);
      if (bytesRead === 0) {
        throw new GgufError('TRUNCATED', `truncated GGUF: tensor '${tensorName}' is cut short`, info.path);
      }
      filled += bytesRead;
    }
    return bytes;
  } finally {
    await handle.close();
  }
}

/** Read one tensor and dequantize it to float32 (F32, F16, BF16, Q8_0). */
export async function readTensorData(info: GgufInfo, tensorName: string): Promise<Float32Array> {
  const tensor = findTensor(info, tensorName);
  return decodeTensorValues(tensor.type, await readTensorBytes(info, tensorName), tensor.elementCount);
}

export function findTensor(info: GgufInfo, tensorName: string): GgufTensorInfo {
  const tensor = info.tensors.find((candidate) => candidate.name === tensorName);
  if (!tensor) throw new GgufError('INVALID_ARGUMENT', `no tensor named '${tensorName}' in ${info.path}`, info.path);
  return tensor;
}

export { describeModel, type ModelDescription } from './describe.js';
