// Shared GGUF/GGML definitions: value types, the ggml tensor type table and the error type.
// The table mirrors `enum ggml_type` in the pinned llama.cpp (shared/reference/ggml.h) and the
// block structs of ggml-common.h; sizes were checked with sizeof() against that source.

/** Why a GGUF file was rejected; lets callers branch without parsing messages. */
export type GgufErrorCode =
  | 'BAD_MAGIC'
  | 'UNSUPPORTED_VERSION'
  | 'TRUNCATED'
  | 'CORRUPT'
  | 'UNKNOWN_TENSOR_TYPE'
  | 'UNSUPPORTED'
  | 'INVALID_ARGUMENT';

/** Every GGUF parse/write failure; `message` is a single, human readable line. */
export class GgufError extends Error {
  override readonly name = 'GgufError';
  constructor(
    readonly code: GgufErrorCode,
    message: string,
    readonly path?: string,
  ) {
    super(message);
  }
}

/** Metadata value types, as numbered in the GGUF spec (gguf.h `enum gguf_type`). */
export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

export type GgufScalarType = Exclude<GgufValueType, GgufValueType.ARRAY>;

/** Fixed byte size of a scalar value type on disk (strings are variable, see reader). */
export const GGUF_SCALAR_SIZE: Readonly<Record<number, number>> = {
  [GgufValueType.UINT8]: 1,
  [GgufValueType.INT8]: 1,
  [GgufValueType.UINT16]: 2,
  [GgufValueType.INT16]: 2,
  [GgufValueType.UINT32]: 4,
  [GgufValueType.INT32]: 4,
  [GgufValueType.FLOAT32]: 4,
  [GgufValueType.BOOL]: 1,
  [GgufValueType.UINT64]: 8,
  [GgufValueType.INT64]: 8,
  [GgufValueType.FLOAT64]: 8,
};

export type GgufScalar = number | bigint | boolean | string;

/**
 * Array payloads. Numeric arrays are typed arrays (compact for 150k-entry score/type lists);
 * 64-bit integer arrays are BigInt arrays so no value is silently rounded.
 */
export type GgufArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array
  | boolean[]
  | string[]
  | GgufArrayEntry[];

export interface GgufScalarEntry {
  readonly type: GgufScalarType;
  /** 64-bit integers are `bigint` when read; the writer accepts number or bigint. */
  readonly value: GgufScalar;
}

export interface GgufArrayEntry {
  readonly type: GgufValueType.ARRAY;
  readonly itemType: GgufValueType;
  /** The writer also accepts plain number/bigint arrays here. */
  readonly value: GgufArray | readonly (number | bigint)[];
}

export type GgufMetadataEntry = GgufScalarEntry | GgufArrayEntry;

/** GGML tensor types (`enum ggml_type`). Gaps are removed types. */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
  Q2_0 = 42,
}

export interface GgmlTypeTraits {
  readonly name: string;
  /** Elements per block (1 for plain scalar types). */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
}

const QK_K = 256;

/** blck_size / sizeof(block) for every type the pinned ggml can load from a GGUF file. */
const GGML_TYPE_TRAITS: ReadonlyMap<GgmlType, GgmlTypeTraits> = new Map([
  [GgmlType.F32, { name: 'F32', blockSize: 1, typeSize: 4 }],
  [GgmlType.F16, { name: 'F16', blockSize: 1, typeSize: 2 }],
  [GgmlType.Q4_0, { name: 'Q4_0', blockSize: 32, typeSize: 18 }],
  [GgmlType.Q4_1, { name: 'Q4_1', blockSize: 32, typeSize: 20 }],
  [GgmlType.Q5_0, { name: 'Q5_0', blockSize: 32, typeSize: 22 }],
  [GgmlType.Q5_1, { name: 'Q5_1', blockSize: 32, typeSize: 24 }],
  [GgmlType.Q8_0, { name: 'Q8_0', blockSize: 32, typeSize: 34 }],
  [GgmlType.Q8_1, { name: 'Q8_1', blockSize: 32, typeSize: 36 }],
  [GgmlType.Q2_K, { name: 'Q2_K', blockSize: QK_K, typeSize: 84 }],
  [GgmlType.Q3_K, { name: 'Q3_K', blockSize: QK_K, typeSize: 110 }],
  [GgmlType.Q4_K, { name: 'Q4_K', blockSize: QK_K, typeSize: 144 }],
  [GgmlType.Q5_K, { name: 'Q5_K', blockSize: QK_K, typeSize: 176 }],
  [GgmlType.Q6_K, { name: 'Q6_K', blockSize: QK_K, typeSize: 210 }],
  [GgmlType.Q8_K, { name: 'Q8_K', blockSize: QK_K, typeSize: 292 }],
  [GgmlType.IQ2_XXS, { name: 'IQ2_XXS', blockSize: QK_K, typeSize: 66 }],
  [GgmlType.IQ2_XS, { name: 'IQ2_XS', blockSize: QK_K, typeSize: 74 }],
  [GgmlType.IQ3_XXS, { name: 'IQ3_XXS', blockSize: QK_K, typeSize: 98 }],
  [GgmlType.IQ1_S, { name: 'IQ1_S', blockSize: QK_K, typeSize: 50 }],
  [GgmlType.IQ4_NL, { name: 'IQ4_NL', blockSize: 32, typeSize: 18 }],
  [GgmlType.IQ3_S, { name: 'IQ3_S', blockSize: QK_K, typeSize: 110 }],
  [GgmlType.IQ2_S, { name: 'IQ2_S', blockSize: QK_K, typeSize: 82 }],
  [GgmlType.IQ4_XS, { name: 'IQ4_XS', blockSize: QK_K, typeSize: 136 }],
  [GgmlType.I8, { name: 'I8', blockSize: 1, typeSize: 1 }],
  [GgmlType.I16, { name: 'I16', blockSize: 1, typeSize: 2 }],
  [GgmlType.I32, { name: 'I32', blockSize: 1, typeSize: 4 }],
  [GgmlType.I64, { name: 'I64', blockSize: 1, typeSize: 8 }],
  [GgmlType.F64, { name: 'F64', blockSize: 1, typeSize: 8 }],
  [GgmlType.IQ1_M, { name: 'IQ1_M', blockSize: QK_K, typeSize: 56 }],
  [GgmlType.BF16, { name: 'BF16', blockSize: 1, typeSize: 2 }],
  [GgmlType.TQ1_0, { name: 'TQ1_0', blockSize: QK_K, typeSize: 54 }],
  [GgmlType.TQ2_0, { name: 'TQ2_0', blockSize: QK_K, typeSize: 66 }],
  [GgmlType.MXFP4, { name: 'MXFP4', blockSize: 32, typeSize: 17 }],
  [GgmlType.NVFP4, { name: 'NVFP4', blockSize: 64, typeSize: 36 }],
  [GgmlType.Q1_0, { name: 'Q1_0', blockSize: 128, typeSize: 18 }],
  [GgmlType.Q2_0, { name: 'Q2_0', blockSize: 64, typeSize: 18 }],
]);

/** Traits of a ggml type; throws a GgufError for ids that this ggml does not know. */
export function ggmlTypeTraits(type: number, tensorName?: string): GgmlTypeTraits {
  const traits = GGML_TYPE_TRAITS.get(type);
  if (!traits) {
    const where = tensorName === undefined ? '' : ` (tensor '${tensorName}')`;
    throw new GgufError('UNKNOWN_TENSOR_TYPE', `unknown ggml tensor type ${type}${where}`);
  }
  return traits;
}

export function ggmlTypeName(type: number): string {
  return GGML_TYPE_TRAITS.get(type)?.name ?? `UNKNOWN(${type})`;
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((product, dim) => product * dim, 1);
}

/**
 * Bytes taken by a tensor's data. ggml stores whole blocks along ne0 only, so ne0 must be a
 * multiple of the block size (ggml rejects the file otherwise, and so do we).
 */
export function tensorByteSize(type: number, dims: readonly number[], tensorName?: string): number {
  const { name, blockSize, typeSize } = ggmlTypeTraits(type, tensorName);
  const rowLength = dims.length > 0 ? dims[0] : 1;
  if (rowLength % blockSize !== 0) {
    const where = tensorName === undefined ? 'tensor' : `tensor '${tensorName}'`;
    throw new GgufError(
      'CORRUPT',
      `${where} of type ${name} has ${rowLength} elements per row, not a multiple of its block size ${blockSize}`,
    );
  }
  return (elementCount(dims) / blockSize) * typeSize;
}

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

export const GGUF_MAGIC = 'GGUF';
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_DIMS: tensors have at most 4 dimensions. */
export const GGML_MAX_DIMS = 4;

/** llama.cpp token types (tokenizer.ggml.token_type), `enum llama_token_type`. */
export enum LlamaTokenType {
  UNDEFINED = 0,
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

/** llama.cpp `enum llama_ftype` values used by this project (general.file_type). */
export enum LlamaFileType {
  ALL_F32 = 0,
  MOSTLY_F16 = 1,
  MOSTLY_Q8_0 = 7,
  MOSTLY_BF16 = 32,
}
