/**
 * Keeps each request's KV cells in runs in the unified buffer.
 *
 * llama.cpp puts a batch's tokens into the first free cells from its head, and a freed cell pulls
 * the head back to it. Requests decoding in lockstep leave one cell of each in turn, a pattern the
 * CPU predicts. But a request that ends, or a tree's rejected nodes, free cells among the others',
 * and the next steps fill those holes one token of one request at a time: the layout turns into a
 * shuffle. llama.cpp's CPU flash attention scans every cell up to n_kv for each query row and head
 * and skips another sequence's cell on a branch, so a shuffled layout costs a misprediction per
 * switch: on embedded m, a decode step of 8 sequences × 200 cells takes 27% longer over a shuffled
 * layout than over a round-robin one, 2% over runs of 4 cells, and 4% less over runs of 8
 * (`node bench/probes/kv-layout.mjs --run 1|4|8`). Speculation at 8 concurrent ran its plain
 * steps up to 25% slower than plain decoding beside it, and lost to it, on that alone.
 *
 * Compaction moves every request's cells into one run each: their bytes are saved, the cells
 * freed, and the bytes restored, which fills the freed cells in order (8 × 200 shuffled cells:
 * 42 ms, and the next step 23% faster). The KV values are the very same bytes at the same
 * positions; only the order attention sums them in changes, as it does with any other layout.
 */
import type { Context } from '../llama/context.js';
import { readBlockState, restoreBlockState } from '../kvcache/blocks.js';
import type { SequenceIdPool } from './sequence-ids.js';

/** A sequence whose cells may move: those from `pinned` on (the leading ones may be shared with another sequence, and stay). */
export interface MovableSequence {
  seq: number;
  pinned: number;
}

/** When compaction is due: once the cells freed among other requests' since the last one reach `freedShare` of the cells in use, and at least `minFreedCells`. */
export interface KvCompactionPolicy {
  minFreedCells: number;
  freedShare: number;
}

/** Moving cells takes ~25 µs each (8 × 200 shuffled cells: 42 ms), so 2,400 take under one step of 8 sequences, and a shuffled layout costs up to a fifth of every step. */
export const DEFAULT_KV_COMPACTION: KvCompactionPolicy = Object.freeze({ minFreedCells: 256, freedShare: 0.5 });

export class KvCompactor {
  /** Cells freed among running requests' since the last compaction (their holes get refilled one token at a time). */
  private freed = 0;
  private compactions = 0;

  constructor(
    private readonly context: Context,
    private readonly ids: SequenceIdPool,
    private readonly policy: KvCompactionPolicy = DEFAULT_KV_COMPACTION,
  ) {}

  /** `cells` were freed while other requests kept theirs (a request ended, a tree's rejected nodes went). */
  noteFreed(cells: number): void {
    this.freed += Math.max(0, cells);
  }

  /** Whether compacting now pays: a unified buffer shared by several sequences, with enough of it refilled out of order. */
  due(cellsInUse: number, sequences: number): boolean {
    const { minFreedCells, freedShare } = this.policy;
    return this.context.unifiedKv && sequences >= 2 && this.freed >= Math.max(minFreedCells, cellsInUse * freedShare);
  }

  /** Compactions so far (tests and diagnostics). */
  get count(): number {
    return this.compactions;
  }

  /**
   * Moves each sequence's cells from its `pinned` position on into one run. All are saved and freed
   * before any is restored, so each restore finds the freed cells together. Throws only if llama.cpp
   * refuses a restore (the cells it needs were just freed); the sequences restored before it are whole.
   * Without a free sequence id to stage through, it waits for the next step.
   */
  compact(sequences: readonly MovableSequence[]): void {
    const staging = this.ids.acquire();
    if (staging === undefined) return;
    try {
      // Read and restored through the staging id, as the prefix cache moves its blocks (kvcache/blocks.ts).
      const saved = sequences
        .map(({ seq, pinned }) => ({ seq, span: { first: pinned, end: this.context.seqPosMax(seq) + 1 } }))
        .filter(({ span }) => span.end > span.first)
        .map((sequence) => ({ ...sequence, bytes: readBlockState(this.context, sequence.seq, staging, sequence.span) }));
      for (const { seq, span } of saved) this.context.seqRemove(seq, span.first, -1);
      for (const { seq, span, bytes } of saved) {
        if (!restoreBlockState(this.context, bytes, staging, seq, span)) throw new Error(`KV compaction: llama.cpp refused to restore sequence ${seq}'s cells`);
      }
      this.freed = 0;
      this.compactions++;
    } finally {
      this.context.seqRemove(staging, -1, -1);
      this.ids.release(staging);
    }
  }
}
