/**
 * A llama_batch in native memory, written from JS through typed-array views (no per-token FFI).
 *
 * Every token carries its position, a *set* of sequence ids and an output flag: putting a shared
 * prefix in several sequences is how a token tree is verified in one decode.
 */
import koffi from 'koffi';
import type { BatchValue, Pointer } from './ffi.js';

export class TokenBatch {
  private readonly tokenPtr: Pointer;
  private readonly posPtr: Pointer;
  private readonly nSeqPtr: Pointer;
  private readonly seqIdsPtr: Pointer;
  private readonly seqTablePtr: Pointer;
  private readonly outputPtr: Pointer;
  private readonly tokens: Int32Array;
  private readonly positions: Int32Array;
  private readonly seqCounts: Int32Array;
  private readonly seqIds: Int32Array;
  private readonly outputs: Int8Array;
  private count = 0;
  private outputCount = 0;
  private freed = false;

  constructor(
    readonly capacity: number,
    /** Most sequence ids one token may carry. */
    readonly maxSeqIdsPerToken = 1,
  ) {
    if (!(capacity > 0) || !(maxSeqIdsPerToken > 0)) throw new RangeError('batch capacity and sequence count must be positive');
    this.tokenPtr = koffi.alloc('int32_t', capacity);
    this.posPtr = koffi.alloc('int32_t', capacity);
    this.nSeqPtr = koffi.alloc('int32_t', capacity);
    this.seqIdsPtr = koffi.alloc('int32_t', capacity * maxSeqIdsPerToken);
    this.seqTablePtr = koffi.alloc('void *', capacity);
    this.outputPtr = koffi.alloc('int8_t', capacity);
    this.tokens = new Int32Array(koffi.view(this.tokenPtr, capacity * 4));
    this.positions = new Int32Array(koffi.view(this.posPtr, capacity * 4));
    this.seqCounts = new Int32Array(koffi.view(this.nSeqPtr, capacity * 4));
    this.seqIds = new Int32Array(koffi.view(this.seqIdsPtr, capacity * maxSeqIdsPerToken * 4));
    this.outputs = new Int8Array(koffi.view(this.outputPtr, capacity));
    // seq_id is an array of pointers, one per token, into the flat seqIds storage.
    const table = new BigUint64Array(koffi.view(this.seqTablePtr, capacity * 8));
    const base = koffi.address(this.seqIdsPtr);
    for (let i = 0; i < capacity; i++) table[i] = base + BigInt(i * maxSeqIdsPerToken * 4);
  }

  get size(): number {
    return this.count;
  }

  /** Tokens in this batch that request logits. */
  get outputsRequested(): number {
    return this.outputCount;
  }

  clear(): this {
    this.count = 0;
    this.outputCount = 0;
    return this;
  }

  /** Appends one token; returns its index in the batch (the index for `Context.logits`). */
  add(token: number, position: number, seqIds: number | readonly number[], output = false): number {
    if (this.count >= this.capacity) throw new RangeError(`batch is full (${this.capacity} tokens)`);
    const i = this.count++;
    this.tokens[i] = token;
    this.positions[i] = position;
    this.outputs[i] = output ? 1 : 0;
    if (output) this.outputCount++;
    const base = i * this.maxSeqIdsPerToken;
    if (typeof seqIds === 'number') {
      this.seqIds[base] = seqIds;
      this.seqCounts[i] = 1;
    } else {
      if (seqIds.length === 0 || seqIds.length > this.maxSeqIdsPerToken) {
        throw new RangeError(`a token needs 1..${this.maxSeqIdsPerToken} sequence ids, got ${seqIds.length}`);
      }
      for (let s = 0; s < seqIds.length; s++) this.seqIds[base + s] = seqIds[s];
      this.seqCounts[i] = seqIds.length;
    }
    return i;
  }

  /** Adds consecutive tokens of one sequence starting at `position`; only the last requests logits unless `allOutputs`. */
  addSequence(tokens: readonly number[], position: number, seqId = 0, allOutputs = false): void {
    for (let i = 0; i < tokens.length; i++) this.add(tokens[i], position + i, seqId, allOutputs || i === tokens.length - 1);
  }

  setOutput(index: number, output: boolean): void {
    if (index < 0 || index >= this.count) throw new RangeError(`no token ${index} in batch`);
    const was = this.outputs[index] === 1;
    this.outputs[index] = output ? 1 : 0;
    this.outputCount += Number(output) - Number(was);
  }

  tokenAt(index: number): number {
    return this.tokens[index];
  }

  positionAt(index: number): number {
    return this.positions[index];
  }

  /** The struct passed by value to llama_decode. */
  toNative(): BatchValue {
    if (this.freed) throw new Error('batch is disposed');
    return { n_tokens: this.count, token: this.tokenPtr, embd: null, pos: this.posPtr, n_seq_id: this.nSeqPtr, seq_id: this.seqTablePtr, logits: this.outputPtr };
  }

  dispose(): void {
    if (this.freed) return;
    this.freed = true;
    for (const ptr of [this.tokenPtr, this.posPtr, this.nSeqPtr, this.seqIdsPtr, this.seqTablePtr, this.outputPtr]) koffi.free(ptr);
  }
}
