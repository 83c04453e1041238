// Public surface of the GGUF module.
export { describeModel, numberValue, type ModelDescription } from './describe.js';
export { f16BitsToF32, f32ToF16Bits, quantizeQ8_0, decodeTensorValues, encodeTensorValues } from './codec.js';
export {
  ensureTestModel,
  GENERATOR_VERSION,
  makeModel,
  MODEL_PRESETS,
  type MakeModelOptions,
  type MakeModelResult,
  type ModelPreset,
  type ModelPresetName,
  type ModelQuant,
} from './make-model.js';
export { findTensor, readGgufHeader, readTensorBytes, readTensorData, type GgufInfo, type GgufTensorInfo } from './reader.js';
export * from './types.js';
export * from './vocab.js';
export { kv, writeGguf, type GgufTensorSpec, type GgufWriteSpec, type WritableTensorType, type WriteGgufOptions, type WriteGgufResult } from './writer.js';
