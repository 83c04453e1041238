// Typed view of the metadata a runtime needs, pulled out of a parsed GGUF header.
// Architecture-specific keys live under "<arch>." (e.g. llama.context_length).

import type { GgufInfo } from './reader.js';
import { type GgufMetadataEntry, GgufValueType } from './types.js';

export interface ModelDescription {
  readonly architecture: string;
  readonly name?: string;
  readonly contextLength?: number;
  readonly embeddingLength?: number;
  readonly blockCount?: number;
  readonly feedForwardLength?: number;
  readonly headCount?: number;
  readonly headCountKv?: number;
  readonly ropeFreqBase?: number;
  readonly rmsNormEpsilon?: number;
  /** Length of tokenizer.ggml.tokens (0 when the file has no vocabulary). */
  readonly vocabSize: number;
  readonly tokenizerModel?: string;
  readonly chatTemplate?: string;
  readonly bosTokenId?: number;
  readonly eosTokenId?: number;
  readonly eotTokenId?: number;
  readonly addBosToken?: boolean;
  /** general.file_type (llama_ftype, e.g. 1 = mostly F16, 7 = mostly Q8_0). */
  readonly fileType?: number;
  /** Sum of all tensor element counts (a tied embedding is counted once). */
  readonly parameterCount: number;
}

export function describeModel(info: GgufInfo): ModelDescription {
  const architecture = stringValue(info, 'general.architecture') ?? 'unknown';
  const archNumber = (suffix: string): number | undefined => numberValue(info, `${architecture}.${suffix}`);
  return {
    architecture,
    name: stringValue(info, 'general.name'),
    contextLength: archNumber('context_length'),
    embeddingLength: archNumber('embedding_length'),
    blockCount: archNumber('block_count'),
    feedForwardLength: archNumber('feed_forward_length'),
    headCount: archNumber('attention.head_count'),
    headCountKv: archNumber('attention.head_count_kv'),
    ropeFreqBase: archNumber('rope.freq_base'),
    rmsNormEpsilon: archNumber('attention.layer_norm_rms_epsilon'),
    vocabSize: arrayLength(info.metadata.get('tokenizer.ggml.tokens')),
    tokenizerModel: stringValue(info, 'tokenizer.ggml.model'),
    chatTemplate: stringValue(info, 'tokenizer.chat_template'),
    bosTokenId: numberValue(info, 'tokenizer.ggml.bos_token_id'),
    eosTokenId: numberValue(info, 'tokenizer.ggml.eos_token_id'),
    eotTokenId: numberValue(info, 'tokenizer.ggml.eot_token_id'),
    addBosToken: booleanValue(info, 'tokenizer.ggml.add_bos_token'),
    fileType: numberValue(info, 'general.file_type'),
    parameterCount: info.tensors.reduce((sum, tensor) => sum + tensor.elementCount, 0),
  };
}

function stringValue(info: GgufInfo, key: string): string | undefined {
  const entry = info.metadata.get(key);
  return entry?.type === GgufValueType.STRING && typeof entry.value === 'string' ? entry.value : undefined;
}

function booleanValue(info: GgufInfo, key: string): boolean | undefined {
  const value = info.metadata.get(key)?.value;
  return typeof value === 'boolean' ? value : undefined;
}

/** Any scalar numeric type, 64-bit ones included (converted; metadata sizes fit a double). */
export function numberValue(info: GgufInfo, key: string): number | undefined {
  const value = info.metadata.get(key)?.value;
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return Number(value);
  return undefined;
}

function arrayLength(entry: GgufMetadataEntry | undefined): number {
  return entry?.type === GgufValueType.ARRAY ? entry.value.length : 0;
}
