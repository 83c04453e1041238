/** Tachyon's public API. */
export { Engine, type EngineOptions, type GenerateOptions, type Prompt } from './engine/engine.js';
export { EngineLoop, type EngineLoopOptions, type EngineStatus } from './engine/loop.js';
export { QueueFullError, EngineDisposedError } from './engine/errors.js';
export type { EngineInfo } from './engine/protocol.js';
export { Model, ModelLoadError, type LoadModelOptions, type ModelMetadata, type SpecialTokens } from './llama/model.js';
export { Context, DecodeError, type ContextOptions, type KvType, type FlashAttention } from './llama/context.js';
export { TokenBatch } from './llama/batch.js';
export { Tokenizer, TextStreamDecoder, type TokenizeOptions } from './llama/tokenizer.js';
export { loadLlamaLibrary, type GpuChoice, type Backend } from './llama/library.js';
export { generateAll, type GenerationChunk, type GenerationResult, type GenerationStats, type GenerationLimits, type StopReason } from './generate/generate.js';
export { PlainDecoder, PromptTooLongError, type SequenceDecoder, type DecoderTimings } from './generate/decoder.js';
export { Sampler, tokenDistribution, greedyToken, drawFrom, isGreedy, defaultSampling, type SamplingOptions, type TokenDistribution } from './generate/sampling.js';
export { Prng } from './generate/prng.js';
export { ChatFormatter, ChatTemplateError, type ChatMessage, type ChatRole } from './generate/chat.js';
export { readGgufHeader, describeModel, GgufError } from './gguf/reader.js';
export { makeModel, type ModelPresetName, type ModelQuant } from './gguf/make-model.js';
export { defaultModelPath, defaultDraftModelPath } from './paths.js';
