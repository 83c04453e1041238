/** Tachyon's public API. */
export { Engine, type EngineOptions, type GenerateOptions, type Prompt } from './engine.js';
export { Model, ModelLoadError, type LoadModelOptions, type ModelMetadata, type SpecialTokens } from './llama/model.js';
export { Context, DecodeError, type ContextOptions, type KvType, type FlashAttention } from './llama/context.js';
export { TokenBatch } from './llama/batch.js';
export { Tokenizer, TextStreamDecoder, type TokenizeOptions } from './llama/tokenizer.js';
export { loadLlamaLibrary, type GpuChoice, type Backend } from './llama/library.js';
export { generate, generateAll, type GenerationChunk, type GenerationResult, type GenerationStats, type GenerationLimits, type StopReason } from './generate/generate.js';
export { PlainDecoder, PromptTooLongError, type Decoder, type DecoderTimings } from './generate/decoder.js';
export { Sampler, tokenDistribution, greedyToken, drawFrom, isGreedy, defaultSampling, type SamplingOptions, type TokenDistribution } from './generate/sampling.js';
export { Prng } from './generate/prng.js';
export { ChatFormatter, ChatTemplateError, type ChatMessage, type ChatRole } from './generate/chat.js';
export { readGgufHeader, describeModel, GgufError } from './gguf/reader.js';
export { makeModel, type ModelPresetName, type ModelQuant } from './gguf/make-model.js';
export { defaultModelPath, defaultDraftModelPath } from './paths.js';
export { ThinkingSegments, thinkingTagTokens, DEFAULT_THINKING_TAGS, type ThinkingTags, type ThinkingEnd } from './reasoning/segments.js';
export { ThinkingController, thinkingControllerFor, REASONING_EFFORTS, type ReasoningEffort, type ExitThresholds, type ThinkingLimits, type ThinkingIntervention } from './reasoning/controller.js';
export { parseFinalAnswer, lastConcludedResult, answerMatches, scoreAnswers, DEFAULT_ANSWER_PREFIX } from './reasoning/answers.js';
