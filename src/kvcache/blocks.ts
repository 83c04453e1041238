/**
 * One block of KV out of a sequence and back in, through llama.cpp's per-sequence state API.
 *
 * `llama_state_seq_get_data` takes no position range and `llama_state_seq_set_data` clears its
 * destination first, so both go through a scratch sequence: a block is saved by sharing its cells
 * into the scratch (`seq_cp`, no copy in a unified cache) and reading the scratch's state; it is
 * restored into the scratch (never the request's own sequence, which a failed load would wipe),
 * checked to hold exactly the block's positions, then shared into the destination and the scratch
 * dropped. Nothing here touches any sequence but the two it is given.
 */
import { TokenBatch } from '../llama/batch.js';
import type { Context } from '../llama/context.js';
import { describeSequenceState, type SequenceStateLayout } from './state-format.js';

/** Half-open range of positions [first, end). */
export interface BlockSpan {
  readonly first: number;
  readonly end: number;
}

/** The state bytes of `source`'s cells in the span, read through `scratch` (left empty again). */
export function readBlockState(context: Context, source: number, scratch: number, span: BlockSpan): Uint8Array {
  assertEmpty(context, scratch);
  context.seqCopy(source, scratch, span.first, span.end);
  try {
    return context.saveSequence(scratch);
  } finally {
    context.seqRemove(scratch);
  }
}

/**
 * Loads a block's state into `scratch`, checks it holds exactly the span, and shares its cells into
 * `destination`. Returns false (and leaves both sequences as they were) when llama.cpp rejects it.
 */
export function restoreBlockState(context: Context, state: Uint8Array, scratch: number, destination: number, span: BlockSpan): boolean {
  assertEmpty(context, scratch);
  try {
    context.restoreSequence(scratch, state);
    if (context.seqPosMin(scratch) !== span.first || context.seqPosMax(scratch) !== span.end - 1) return false;
    context.seqCopy(scratch, destination);
    return true;
  } catch {
    return false;
  } finally {
    context.seqRemove(scratch);
  }
}

/**
 * The K/V types and V layout this context really uses, read from the state of one decoded token
 * (flash attention `auto` is only resolved inside llama.cpp). Decodes into `scratch`, then empties it.
 */
export async function probeStateLayout(context: Context, scratch: number): Promise<SequenceStateLayout> {
  assertEmpty(context, scratch);
  const batch = new TokenBatch(1);
  try {
    const { bos } = context.model.metadata.specialTokens;
    batch.add(Math.max(bos, 0), 0, scratch, true);
    await context.decode(batch);
    const { layers, kType, vType, vTransposed } = describeSequenceState(context.saveSequence(scratch));
    return { layers, kType, vType, vTransposed };
  } finally {
    batch.dispose();
    context.seqRemove(scratch);
  }
}

function assertEmpty(context: Context, scratch: number): void {
  if (context.seqPosMax(scratch) !== -1) throw new Error(`scratch sequence ${scratch} is not empty`);
}
