// Embeds a small llama-architecture model exactly in a larger shape: the big model computes the
// small one's function (same logits up to rounding), but costs what its shape costs. This gives
// speculative decoding a realistic regime (tens of ms per decode, a real verify-cost curve) with
// trained weights, where random-weight models of the same shape would accept nothing.
//
// Why it is exact, for a residual that is zero beyond the small width d:
// - RMSNorm over D sees mean(x²)·d/D, so ε·d/D and weights ×√(d/D) give RMSNorm over d back;
// - query head h of KV group g sits at slot g·(H/Hkv) + (h mod group), which reads KV head g; the
//   other slots' Q rows and attn_output columns are zero, so they add nothing;
// - rows beyond the small model's (Q/K/V, FFN, outputs into dims ≥ d) are zero, so the residual
//   stays zero beyond d; extra layers are all zero, an identity on the residual.

import { modelFingerprint } from './fingerprint.js';
import { cachedModel } from './cached-model.js';
import { describeModel, type ModelDescription } from './describe.js';
import { type ModelQuant, type ModelShape, shapeMetadata, writeModel } from './make-model.js';
import { findTensor, type GgufInfo, readGgufHeader, readTensorData } from './reader.js';
import { GgmlType, GgufError, type GgufMetadataEntry, LlamaFileType } from './types.js';
import { type GgufTensorSpec, kv } from './writer.js';

export type { ModelShape } from './make-model.js';

export type EmbedShapeName = 'm' | 's';

/** `m`: a 0.37B, 0.5B-class target; `s`: a 25M draft. Both take 64-wide heads. */
export const EMBED_SHAPES: Readonly<Record<EmbedShapeName, ModelShape>> = {
  m: { embeddingLength: 1024, blockCount: 24, headCount: 16, headCountKv: 4, feedForwardLength: 4096 },
  s: { embeddingLength: 512, blockCount: 8, headCount: 8, headCountKv: 2, feedForwardLength: 1536 },
};

/** Bumped whenever embedded files' bytes change, so cached embeddings are rebuilt. */
export const EMBED_VERSION = 1;

export interface EmbedModelOptions {
  readonly source: string;
  readonly shape: ModelShape;
  /** Named in general.name (e.g. 'm'); defaults to the dimensions. */
  readonly shapeName?: string;
  readonly out: string;
  readonly quant: ModelQuant;
  /** Fraction of bytes written, 0..1. */
  readonly onProgress?: (fraction: number) => void;
}

export interface EmbedModelResult {
  readonly path: string;
  readonly bytes: number;
  readonly parameterCount: number;
}

/** A source model's shape, as read from its metadata. */
export interface SmallShape extends ModelShape {
  readonly headDim: number;
  readonly rmsNormEpsilon: number;
}

/** Write SMALL's function in a bigger shape (see the header for why it is exact). */
export async function embedModel(options: EmbedModelOptions): Promise<EmbedModelResult> {
  const info = await readGgufHeader(options.source);
  const small = smallShape(info);
  checkEmbeddable(small, options.shape, options.source);
  const tensors = embeddedTensors(info, small, options.shape, options.quant);
  return writeModel(options.out, embeddedMetadata(info, small, options), tensors, options.onProgress);
}

function smallShape(info: GgufInfo): SmallShape {
  const description = describeModel(info);
  const fail = (why: string) => new GgufError('UNSUPPORTED', `cannot embed ${info.path}: ${why}`, info.path);
  if (description.architecture !== 'llama') throw fail(`architecture '${description.architecture}' is not llama`);
  const required = (key: keyof ModelDescription): number => {
    const value = description[key];
    if (typeof value !== 'number') throw fail(`its metadata lacks ${key}`);
    return value;
  };
  const shape = {
    embeddingLength: required('embeddingLength'),
    blockCount: required('blockCount'),
    headCount: required('headCount'),
    headCountKv: description.headCountKv ?? required('headCount'),
    feedForwardLength: required('feedForwardLength'),
    rmsNormEpsilon: required('rmsNormEpsilon'),
  };
  const unknown = info.tensors.find((tensor) => tensorRole(tensor.name, shape.blockCount) === undefined);
  if (unknown) throw fail(`tensor '${unknown.name}' is not part of a plain llama model`);
  const headDim = shape.embeddingLength / shape.headCount;
  // The big shape's head size is its width over its heads, so a source must have that layout too.
  for (const key of ['llama.attention.key_length', 'llama.attention.value_length']) {
    const length = info.metadata.get(key)?.value;
    if (length !== undefined && Number(length) !== headDim) throw fail(`${key} ${String(length)} differs from width / heads = ${headDim}`);
  }
  return { ...shape, headDim };
}

/** Throws a one-line GgufError naming the first dimension of `big` that cannot hold `small`. */
export function checkEmbeddable(small: SmallShape, big: ModelShape, source = 'the source model'): void {
  const fail = (why: string) => new GgufError('INVALID_ARGUMENT', `shape cannot hold ${source}: ${why}`);
  const bigHeadDim = big.embeddingLength / big.headCount;
  if (big.embeddingLength < small.embeddingLength) throw fail(`width ${big.embeddingLength} is narrower than ${small.embeddingLength}`);
  if (big.blockCount < small.blockCount) throw fail(`${big.blockCount} layers are fewer than ${small.blockCount}`);
  if (big.feedForwardLength < small.feedForwardLength) throw fail(`feed-forward size ${big.feedForwardLength} is below ${small.feedForwardLength}`);
  if (bigHeadDim !== small.headDim) throw fail(`head size ${bigHeadDim} differs from ${small.headDim} (attention scale and RoPE depend on it)`);
  if (big.headCount % big.headCountKv !== 0) throw fail(`${big.headCount} heads do not split into ${big.headCountKv} KV groups`);
  if (big.headCountKv < small.headCountKv) throw fail(`${big.headCountKv} KV heads are fewer than ${small.headCountKv}`);
  const smallGroup = small.headCount / small.headCountKv;
  const bigGroup = big.headCount / big.headCountKv;
  if (bigGroup < smallGroup) throw fail(`GQA groups of ${bigGroup} query heads cannot hold groups of ${smallGroup}`);
}

type TensorRole =
  | 'token_embd' | 'output_norm' | 'output'
  | 'attn_norm' | 'attn_q' | 'attn_k' | 'attn_v' | 'attn_output'
  | 'ffn_norm' | 'ffn_gate' | 'ffn_up' | 'ffn_down';

const GLOBAL_ROLES = new Set<TensorRole>(['token_embd', 'output_norm', 'output']);
const LAYER_ROLES: readonly TensorRole[] = ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down'];

function tensorRole(name: string, blockCount: number): TensorRole | undefined {
  const global = /^(\w+)\.weight$/.exec(name);
  if (global && GLOBAL_ROLES.has(global[1] as TensorRole)) return global[1] as TensorRole;
  const layer = /^blk\.(\d+)\.(\w+)\.weight$/.exec(name);
  if (layer && Number(layer[1]) < blockCount && LAYER_ROLES.includes(layer[2] as TensorRole)) return layer[2] as TensorRole;
  return undefined;
}

function embeddedMetadata(info: GgufInfo, small: SmallShape, options: EmbedModelOptions): [string, GgufMetadataEntry][] {
  const big = options.shape;
  const shapeName = options.shapeName ?? `${big.embeddingLength}x${big.blockCount}`;
  const quantized = options.quant === 'q8_0';
  const sourceName = describeModel(info).name ?? 'model';
  const replaced = new Map<string, GgufMetadataEntry>([
    ['general.name', kv.string(`${sourceName}-embedded-${shapeName}-${options.quant}`)],
    ['general.description', kv.string(`${sourceName} embedded exactly in shape ${shapeName} (tachyon embed v${EMBED_VERSION})`)],
    ['general.file_type', kv.u32(quantized ? LlamaFileType.MOSTLY_Q8_0 : LlamaFileType.MOSTLY_F16)],
    ...shapeMetadata(big),
    ['llama.attention.layer_norm_rms_epsilon', kv.f32(small.rmsNormEpsilon * (small.embeddingLength / big.embeddingLength))],
  ]);
  const metadata: [string, GgufMetadataEntry][] = [];
  for (const [key, entry] of info.metadata) {
    if (key === 'general.quantization_version') continue;
    metadata.push([key, replaced.get(key) ?? entry]);
    replaced.delete(key);
  }
  metadata.push(...replaced);
  if (quantized) metadata.push(['general.quantization_version', kv.u32(2)]);
  return metadata;
}

function embeddedTensors(info: GgufInfo, small: SmallShape, big: ModelShape, quant: ModelQuant): GgufTensorSpec[] {
  const matrixType = quant === 'q8_0' ? GgmlType.Q8_0 : GgmlType.F16;
  const d = small.embeddingLength;
  const D = big.embeddingLength;
  const headDim = small.headDim;
  const vocab = findTensor(info, 'token_embd.weight').dims[1];
  const normScale = Math.sqrt(d / D);
  const slots = querySlots(small, big);
  const read = (name: string) => readTensorData(info, name);

  const matrix = (name: string, rowLength: number, rows: number, fill?: (values: Float32Array) => Promise<void>): GgufTensorSpec => ({
    name,
    dims: [rowLength, rows],
    type: matrixType,
    data: () => valuesOf(rowLength * rows, fill),
  });
  const norm = (name: string, source?: string): GgufTensorSpec => ({
    name,
    dims: [D],
    type: GgmlType.F32,
    data: () => valuesOf(D, source === undefined ? undefined : async (values) => {
      const weights = await read(source);
      for (let i = 0; i < d; i++) values[i] = weights[i] * normScale;
    }),
  });
  /** Source rows (row length `from`) mapped to big rows (length `to`): `rowMap(r)` is the big row of source row r. */
  const padRows = (source: string, from: number, to: number, rowMap: (row: number) => number = (row) => row) => async (values: Float32Array) => {
    const weights = await read(source);
    for (let row = 0; row < weights.length / from; row++) values.set(weights.subarray(row * from, (row + 1) * from), rowMap(row) * to);
  };

  const tensors = [matrix('token_embd.weight', D, vocab, padRows('token_embd.weight', d, D))];
  for (let block = 0; block < big.blockCount; block++) {
    const prefix = `blk.${block}`;
    const live = block < small.blockCount;
    const from = (role: string) => (live ? `${prefix}.${role}.weight` : undefined);
    const when = <T>(fill: T) => (live ? fill : undefined);
    const headRow = (row: number) => slots[Math.floor(row / headDim)] * headDim + (row % headDim);
    tensors.push(
      norm(`${prefix}.attn_norm.weight`, from('attn_norm')),
      matrix(`${prefix}.attn_q.weight`, D, big.headCount * headDim, when(padRows(`${prefix}.attn_q.weight`, d, D, headRow))),
      matrix(`${prefix}.attn_k.weight`, D, big.headCountKv * headDim, when(padRows(`${prefix}.attn_k.weight`, d, D))),
      matrix(`${prefix}.attn_v.weight`, D, big.headCountKv * headDim, when(padRows(`${prefix}.attn_v.weight`, d, D))),
      matrix(`${prefix}.attn_output.weight`, big.headCount * headDim, D, when(attentionOutput(`${prefix}.attn_output.weight`))),
      norm(`${prefix}.ffn_norm.weight`, from('ffn_norm')),
      matrix(`${prefix}.ffn_gate.weight`, D, big.feedForwardLength, when(padRows(`${prefix}.ffn_gate.weight`, d, D))),
      matrix(`${prefix}.ffn_up.weight`, D, big.feedForwardLength, when(padRows(`${prefix}.ffn_up.weight`, d, D))),
      matrix(`${prefix}.ffn_down.weight`, big.feedForwardLength, D, when(padRows(`${prefix}.ffn_down.weight`, small.feedForwardLength, big.feedForwardLength))),
    );
  }
  tensors.push(norm('output_norm.weight', 'output_norm.weight'));
  // A tied model has no output matrix; llama.cpp then reuses token_embd, which is embedded already.
  if (info.tensors.some((tensor) => tensor.name === 'output.weight')) {
    tensors.push(matrix('output.weight', D, vocab, padRows('output.weight', d, D)));
  }
  return tensors;

  /** Each output row's input columns are per query head: small head h's columns go to its slot. */
  function attentionOutput(source: string) {
    return async (values: Float32Array) => {
      const weights = await read(source);
      const smallRow = small.headCount * headDim;
      const bigRow = big.headCount * headDim;
      for (let row = 0; row < d; row++) {
        for (let head = 0; head < small.headCount; head++) {
          const at = row * smallRow + head * headDim;
          values.set(weights.subarray(at, at + headDim), row * bigRow + slots[head] * headDim);
        }
      }
    };
  }
}

/** Big query slot of each small query head: same KV head index, first free place in its group. */
export function querySlots(small: ModelShape, big: ModelShape): number[] {
  const smallGroup = small.headCount / small.headCountKv;
  const bigGroup = big.headCount / big.headCountKv;
  return Array.from({ length: small.headCount }, (_, head) => Math.floor(head / smallGroup) * bigGroup + (head % smallGroup));
}

/** One tensor's values, zero except where `fill` writes (written as a single chunk: at most tens of MB). */
async function* valuesOf(count: number, fill?: (values: Float32Array) => Promise<void>): AsyncGenerator<Float32Array> {
  const values = new Float32Array(count);
  await fill?.(values);
  yield values;
}

export interface EmbeddedModelRequest {
  readonly source: string;
  readonly shape: EmbedShapeName;
  readonly quant: ModelQuant;
  readonly onProgress?: (fraction: number) => void;
}

/**
 * Path of SMALL embedded in a named shape, cached under <project>/.cache/models/ and keyed by
 * the source file's SHA-256 and EMBED_VERSION; built when missing.
 */
export async function ensureEmbeddedModel(request: EmbeddedModelRequest): Promise<string> {
  const hash = await modelFingerprint(request.source);
  const { source, shape, quant, onProgress } = request;
  return cachedModel(`embed-${shape}-${quant}-${hash.slice(0, 16)}-v${EMBED_VERSION}.gguf`, (out) =>
    embedModel({ source, shape: EMBED_SHAPES[shape], shapeName: shape, out, quant, onProgress }));
}

/** Which shapes a named target/draft pair is embedded in. */
export const EMBED_PAIRS: Readonly<Record<'m', { readonly target: EmbedShapeName; readonly draft: EmbedShapeName }>> = {
  m: { target: 'm', draft: 's' },
};

export type EmbedPairName = keyof typeof EMBED_PAIRS;

/**
 * A target (and draft) embedded in the pair's shapes, each built on first use and cached;
 * `progress` hears every 10% of a build.
 */
export async function ensureEmbeddedPair(
  pair: EmbedPairName,
  sources: { readonly model: string; readonly draftModel?: string },
  progress: (line: string) => void,
): Promise<{ model: string; draftModel?: string }> {
  const build = (role: 'target' | 'draft', source: string) => {
    let reported = -1;
    return ensureEmbeddedModel({
      source,
      shape: EMBED_PAIRS[pair][role],
      quant: 'q8_0',
      onProgress: (fraction) => {
        const tenth = Math.floor(fraction * 10);
        if (tenth > reported) progress(`building the ${role} in shape ${EMBED_PAIRS[pair][role]} (once; cached under .cache/models): ${tenth * 10}%`);
        reported = tenth;
      },
    });
  };
  const model = await build('target', sources.model);
  return { model, draftModel: sources.draftModel && (await build('draft', sources.draftModel)) };
}
