/** An inference context: KV memory, decode off the event loop, zero-copy logits, sequence ops and state. */
import { availableParallelism } from 'node:os';
import koffi from 'koffi';
import type { Pointer } from './ffi.js';
import type { TokenBatch } from './batch.js';
import { callAsync, type Model } from './model.js';

export type KvType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0';
export type FlashAttention = 'auto' | 'on' | 'off';

export interface ContextOptions {
  /** Tokens of KV memory; default min(model's training context, 4096). */
  contextSize?: number;
  /** Most tokens one decode may take; default min(contextSize, 512). */
  batchSize?: number;
  /** Physical micro-batch; default = batchSize. */
  microBatchSize?: number;
  /** Distinct sequence ids (token-tree branches need one each); default 1. */
  sequences?: number;
  /** Threads for single-token decodes; default = available cores. */
  threads?: number;
  /** Threads for multi-token batches; default = threads. */
  batchThreads?: number;
  flashAttention?: FlashAttention;
  kvType?: KvType;
  /** Also compute embeddings. */
  embeddings?: boolean;
  /**
   * One KV buffer for all sequences (default): a cell may belong to several sequences, as token
   * trees and shared prefixes need, and every token's attention spans all used cells, masked. false:
   * a buffer per sequence of contextSize / sequences cells (llama-server's default with several
   * slots): attention spans the sequence's own cells, a token belongs to one sequence, and a decode
   * is split wherever the batch's sequence ids stop being consecutive or their token counts differ.
   * bench/probes/unified-kv.mjs compares the two.
   */
  unifiedKv?: boolean;
}

/** Contexts keep one KV buffer for all sequences unless told otherwise (ContextOptions.unifiedKv). */
export const DEFAULT_UNIFIED_KV = true;

export class DecodeError extends Error {
  override name = 'DecodeError';
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

const GGML_TYPES: Record<KvType, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 8, bf16: 30 };
const FLASH_ATTENTION: Record<FlashAttention, number> = { auto: -1, off: 0, on: 1 };

export class Context {
  readonly contextSize: number;
  readonly batchSize: number;
  readonly sequences: number;
  readonly vocabularySize: number;
  readonly embeddingSize: number;
  /** One KV buffer for all sequences (see ContextOptions.unifiedKv). */
  readonly unifiedKv: boolean;
  /** The flash-attention setting asked for ('auto': llama.cpp decides, on wherever the backend supports it). */
  readonly flashAttention: FlashAttention;
  private handle: Pointer | null;
  private readonly memory: Pointer;
  private decoding = false;

  private constructor(
    readonly model: Model,
    handle: Pointer,
    unifiedKv: boolean,
    flashAttention: FlashAttention,
  ) {
    this.unifiedKv = unifiedKv;
    this.flashAttention = flashAttention;
    const { api } = model.library;
    this.handle = handle;
    this.memory = api.getMemory(handle);
    this.contextSize = api.nCtx(handle);
    this.batchSize = api.nBatch(handle);
    this.sequences = api.nSeqMax(handle);
    this.vocabularySize = model.metadata.vocabularySize;
    this.embeddingSize = model.metadata.embeddingSize;
  }

  static create(model: Model, options: ContextOptions = {}): Context {
    const { api } = model.library;
    const params = api.contextDefaultParams();
    const contextSize = options.contextSize ?? Math.min(model.metadata.contextLength || 4096, 4096);
    const batchSize = Math.min(options.batchSize ?? 512, contextSize);
    const threads = options.threads ?? availableParallelism();
    params.n_ctx = contextSize;
    params.n_batch = batchSize;
    params.n_ubatch = options.microBatchSize ?? batchSize;
    params.n_seq_max = options.sequences ?? 1;
    params.n_threads = threads;
    params.n_threads_batch = options.batchThreads ?? threads;
    const flashAttention = options.flashAttention ?? 'auto';
    params.flash_attn_type = FLASH_ATTENTION[flashAttention];
    params.type_k = params.type_v = GGML_TYPES[options.kvType ?? 'f16'];
    params.embeddings = options.embeddings ?? false;
    params.no_perf = true;
    // By default one KV buffer shared by all sequences: tree branches share their prefix cells via seq_cp.
    const unifiedKv = options.unifiedKv ?? DEFAULT_UNIFIED_KV;
    params.kv_unified = unifiedKv;
    model.library.claimLog();
    model.library.takeErrors();
    const handle = api.initFromModel(model.pointer, params);
    if (!handle) throw new Error(`cannot create context: ${model.library.takeErrors().at(-1) ?? 'llama.cpp refused the parameters'}`);
    const pool = model.library.threadpool(threads);
    const batchPool = model.library.threadpool(options.batchThreads ?? threads);
    if (pool && batchPool) api.attachThreadpool(handle, pool, batchPool);
    return new Context(model, handle, unifiedKv, flashAttention);
  }

  get pointer(): Pointer {
    if (!this.handle) throw new Error('context is disposed');
    return this.handle;
  }

  get disposed(): boolean {
    return this.handle === null;
  }

  /** Runs the batch through the model on a native worker thread; the event loop stays free. */
  async decode(batch: TokenBatch): Promise<void> {
    const ctx = this.checkDecodable(batch);
    this.decoding = true;
    let code: number;
    try {
      code = await callAsync(this.model.library.api.decode, ctx, batch.toNative());
    } finally {
      this.decoding = false;
    }
    if (code !== 0) throw decodeError(code, this.model.library.takeErrors());
  }

  /**
   * Runs the batch on the calling thread. The engine loop decodes this way inside its worker
   * thread: an async call costs two cross-thread wake-ups per decode (about 70 µs), as much as a
   * sixth of a small model's token.
   */
  decodeSync(batch: TokenBatch): void {
    const ctx = this.checkDecodable(batch);
    const code = this.model.library.api.decode(ctx, batch.toNative());
    if (code !== 0) throw decodeError(code, this.model.library.takeErrors());
  }

  private checkDecodable(batch: TokenBatch): Pointer {
    const ctx = this.pointer;
    if (this.decoding) throw new Error('a decode is already running on this context');
    if (batch.size === 0) throw new RangeError('cannot decode an empty batch');
    if (batch.size > this.batchSize) throw new RangeError(`batch of ${batch.size} tokens exceeds the context's batch size ${this.batchSize}`);
    return ctx;
  }

  /**
   * Logits predicted after the token at `batchIndex` of the last decoded batch, as a zero-copy view
   * into llama.cpp's buffer: valid until the next decode on this context. Copy to keep.
   */
  logits(batchIndex: number): Float32Array {
    const ptr = this.model.library.api.getLogitsIth(this.pointer, batchIndex);
    if (!ptr) throw new RangeError(`no logits for batch index ${batchIndex} (was its output flag set?)`);
    return new Float32Array(koffi.view(ptr, this.vocabularySize * 4));
  }

  /** Embedding of the token at `batchIndex` (context created with `embeddings: true`); zero-copy view. */
  embeddings(batchIndex: number): Float32Array {
    const ptr = this.model.library.api.getEmbeddingsIth(this.pointer, batchIndex);
    if (!ptr) throw new RangeError(`no embeddings for batch index ${batchIndex}`);
    return new Float32Array(koffi.view(ptr, this.embeddingSize * 4));
  }

  // KV memory. Positions are half-open [p0, p1); -1 means "to the end" (or "from the start" for p0).

  /** Removes cells of `seq` (-1: any sequence) in [p0, p1). */
  seqRemove(seq: number, p0 = -1, p1 = -1): boolean {
    this.assertIdle();
    return this.model.library.api.memorySeqRm(this.memory, seq, p0, p1);
  }

  /**
   * Makes cells of `src` in [p0, p1) also belong to `dst` (shared, not duplicated, in a unified
   * cache). A KV buffer per sequence copies whole sequences only (`dst`'s buffer becomes a copy of
   * `src`'s; llama.cpp aborts the process on a range): see seqCopyPrefix.
   */
  seqCopy(src: number, dst: number, p0 = -1, p1 = -1): void {
    this.assertIdle();
    if (!this.unifiedKv && src !== dst && (p0 > 0 || p1 > 0)) throw new RangeError('a KV buffer per sequence copies whole sequences only (positions -1, -1)');
    this.model.library.api.memorySeqCp(this.memory, src, dst, p0, p1);
  }

  /** Gives the empty sequence `dst` the cells of `src` at positions [0, end): shared in a unified cache, copied whole then cut in a buffer per sequence. */
  seqCopyPrefix(src: number, dst: number, end: number): void {
    if (this.unifiedKv) return this.seqCopy(src, dst, 0, end);
    this.seqCopy(src, dst);
    this.seqRemove(dst, end, -1);
  }

  /** Drops every cell that does not belong to `seq`. */
  seqKeep(seq: number): void {
    this.assertIdle();
    this.model.library.api.memorySeqKeep(this.memory, seq);
  }

  /** Shifts positions of `seq` in [p0, p1) by `delta`. */
  seqShift(seq: number, p0: number, p1: number, delta: number): void {
    this.assertIdle();
    this.model.library.api.memorySeqAdd(this.memory, seq, p0, p1, delta);
  }

  /** Smallest position stored for `seq`, or -1 when it is empty. */
  seqPosMin(seq: number): number {
    return this.model.library.api.memorySeqPosMin(this.memory, seq);
  }

  /** Largest position stored for `seq`, or -1 when it is empty. */
  seqPosMax(seq: number): number {
    return this.model.library.api.memorySeqPosMax(this.memory, seq);
  }

  clearMemory(): void {
    this.assertIdle();
    this.model.library.api.memoryClear(this.memory, true);
  }

  /** The KV state of one sequence as bytes (to store elsewhere and restore later). */
  saveSequence(seq: number): Uint8Array {
    this.assertIdle();
    const { api } = this.model.library;
    const size = Number(api.stateSeqGetSize(this.pointer, seq));
    const bytes = new Uint8Array(size);
    const written = Number(api.stateSeqGetData(this.pointer, bytes, size, seq));
    if (written !== size) throw new Error(`sequence state: expected ${size} bytes, got ${written}`);
    return bytes;
  }

  /** Restores bytes from `saveSequence` into sequence `seq` (which should be empty). */
  restoreSequence(seq: number, bytes: Uint8Array): void {
    this.assertIdle();
    const read = Number(this.model.library.api.stateSeqSetData(this.pointer, bytes, bytes.length, seq));
    if (read === 0) throw new Error(`cannot restore sequence ${seq}: ${this.model.library.takeErrors().at(-1) ?? 'state rejected'}`);
  }

  dispose(): void {
    if (!this.handle) return;
    if (this.decoding) throw new Error('cannot dispose a context while it decodes');
    this.model.library.api.free(this.handle);
    this.handle = null;
  }

  private assertIdle(): void {
    if (this.decoding) throw new Error('KV memory cannot change while a decode runs');
    this.pointer;
  }
}

/**
 * Decodes `tokens` into sequence `seq` from `position` on this thread, in batch-size chunks; only
 * the last token requests logits. Returns the batch index of the last token (for `logits`).
 */
export function evaluateTokens(context: Context, batch: TokenBatch, tokens: readonly number[], position = 0, seq = 0): number {
  let index = 0;
  for (let start = 0; start < tokens.length; start += batch.capacity) {
    const chunk = tokens.slice(start, start + batch.capacity);
    batch.clear();
    const last = start + chunk.length === tokens.length;
    for (let i = 0; i < chunk.length; i++) index = batch.add(chunk[i], position + start + i, seq, last && i === chunk.length - 1);
    context.decodeSync(batch);
  }
  return index;
}

function decodeError(code: number, errors: string[]): DecodeError {
  const detail = errors.at(-1);
  if (code === 1) return new DecodeError(`no room in the KV cache for this batch (context full)${detail ? `: ${detail}` : ''}`, code);
  if (code === 2) return new DecodeError('decode aborted', code);
  return new DecodeError(`llama_decode failed with code ${code}${detail ? `: ${detail}` : ''}`, code);
}
