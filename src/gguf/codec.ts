// Conversions between float32 values and the on-disk tensor encodings the writer produces
// (F32, F16, BF16, Q8_0) and the reader can dequantize. Q8_0 follows ggml's reference
// quantize_row_q8_0_ref bit for bit: d = max|x|/127 in f32, q = roundf(x * (1/d)), so our files
// match what llama-quantize would write for the same float32 input.

import { GgmlType, GgufError, ggmlTypeName, ggmlTypeTraits } from './types.js';

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** float32 → IEEE half bits, round-to-nearest-even, with subnormals, inf and NaN. */
export function f32ToF16Bits(value: number): number {
  scratchF32[0] = value;
  return f32BitsToF16Bits(scratchU32[0]);
}

function f32BitsToF16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) return sign | subnormalHalfMantissa(mantissa, halfExponent);
  const truncated = sign | (halfExponent << 10) | (mantissa >>> 13);
  const remainder = mantissa & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  const roundUp = remainder > 0x1000 || (remainder === 0x1000 && (truncated & 1) === 1);
  return roundUp ? truncated + 1 : truncated;
}

/** Half subnormals are m·2^-24; shift the implicit-1 mantissa and round to nearest even. */
function subnormalHalfMantissa(mantissa: number, halfExponent: number): number {
  if (halfExponent < -10) return 0;
  const full = mantissa | 0x800000;
  const shift = 14 - halfExponent;
  const half = 1 << (shift - 1);
  const truncated = full >>> shift;
  const remainder = full & ((1 << shift) - 1);
  const roundUp = remainder > half || (remainder === half && (truncated & 1) === 1);
  return roundUp ? truncated + 1 : truncated;
}

export function f16BitsToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function bf16BitsToF32(bits: number): number {
  scratchU32[0] = bits << 16;
  return scratchF32[0];
}

/** float32 → bfloat16 bits, round-to-nearest-even (NaN kept quiet). */
function f32BitsToBf16Bits(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x40) & 0xffff;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

const Q8_0_BLOCK = 32;
const Q8_0_BYTES = 34;

/** Quantize `values` (length a multiple of 32) into Q8_0 blocks: f16 scale d, then 32 int8. */
export function quantizeQ8_0(values: Float32Array): Buffer {
  const blocks = values.length / Q8_0_BLOCK;
  const out = Buffer.allocUnsafe(blocks * Q8_0_BYTES);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const quants = new Int8Array(out.buffer, out.byteOffset, out.byteLength);
  for (let block = 0; block < blocks; block++) {
    const start = block * Q8_0_BLOCK;
    const at = block * Q8_0_BYTES;
    let absMax = 0;
    for (let i = start; i < start + Q8_0_BLOCK; i++) {
      const magnitude = values[i] < 0 ? -values[i] : values[i];
      if (magnitude > absMax) absMax = magnitude;
    }
    const scale = Math.fround(absMax / 127);
    const inverse = scale !== 0 ? Math.fround(1 / scale) : 0;
    view.setUint16(at, f32ToF16Bits(scale), true);
    for (let i = 0; i < Q8_0_BLOCK; i++) {
      const scaled = Math.fround(values[start + i] * inverse);
      // roundf (halves away from zero): exact here since scaled + 0.5 is exact in a double.
      const rounded = scaled < 0 ? (scaled - 0.5) | 0 : (scaled + 0.5) | 0;
      quants[at + 2 + i] = rounded > 127 ? 127 : rounded < -128 ? -128 : rounded;
    }
  }
  return out;
}

/** 16-bit formats (F16, BF16): each f32's bits narrowed by `narrow`, little-endian. */
function encodeHalfWidth(values: Float32Array, narrow: (f32Bits: number) => number): Buffer {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = Buffer.allocUnsafe(values.length * 2);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < values.length; i++) view.setUint16(i * 2, narrow(bits[i]), true);
  return out;
}

function encodeF32(values: Float32Array): Buffer {
  const out = Buffer.allocUnsafe(values.length * 4);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true);
  return out;
}

/** The tensor types the writer can produce. */
export type WritableTensorType = GgmlType.F32 | GgmlType.F16 | GgmlType.BF16 | GgmlType.Q8_0;

export function isWritableTensorType(type: GgmlType): type is WritableTensorType {
  return type === GgmlType.F32 || type === GgmlType.F16 || type === GgmlType.BF16 || type === GgmlType.Q8_0;
}

/** Encode a run of values (whole blocks) to the on-disk bytes of `type`. */
export function encodeTensorValues(type: WritableTensorType, values: Float32Array): Buffer {
  switch (type) {
    case GgmlType.F32:
      return encodeF32(values);
    case GgmlType.F16:
      return encodeHalfWidth(values, f32BitsToF16Bits);
    case GgmlType.BF16:
      return encodeHalfWidth(values, f32BitsToBf16Bits);
    case GgmlType.Q8_0:
      return quantizeQ8_0(values);
  }
}

/** Dequantize raw tensor bytes to float32. Supports F32, F16, BF16, Q8_0. */
export function decodeTensorValues(type: GgmlType, bytes: Uint8Array, count: number): Float32Array {
  const { typeSize, blockSize } = ggmlTypeTraits(type);
  const needed = (count / blockSize) * typeSize;
  if (bytes.length < needed) {
    throw new GgufError('INVALID_ARGUMENT', `tensor data has ${bytes.length} bytes, ${needed} needed`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  switch (type) {
    case GgmlType.F32:
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    case GgmlType.F16:
      for (let i = 0; i < count; i++) out[i] = f16BitsToF32(view.getUint16(i * 2, true));
      return out;
    case GgmlType.BF16:
      for (let i = 0; i < count; i++) out[i] = bf16BitsToF32(view.getUint16(i * 2, true));
      return out;
    case GgmlType.Q8_0:
      return dequantizeQ8_0(view, out);
    default:
      throw new GgufError('UNSUPPORTED', `dequantizing ${ggmlTypeName(type)} tensors is not supported`);
  }
}

function dequantizeQ8_0(view: DataView, out: Float32Array): Float32Array {
  for (let block = 0; block < out.length / Q8_0_BLOCK; block++) {
    const at = block * Q8_0_BYTES;
    const scale = f16BitsToF32(view.getUint16(at, true));
    for (let i = 0; i < Q8_0_BLOCK; i++) {
      out[block * Q8_0_BLOCK + i] = scale * view.getInt8(at + 2 + i);
    }
  }
  return out;
}
