/** Plain greedy decoding on one sequence of a context, the reference the KV cache is compared with. */
import assert from 'node:assert/strict';
import { TokenBatch } from '../../src/llama/batch.js';
import type { Context } from '../../src/llama/context.js';
import { argmax, top2Gap } from './models.js';

export interface GreedyRun {
  readonly tokens: number[];
  /** Top-2 logit gap before each generated token (how close that choice was to a tie). */
  readonly gaps: number[];
}

/**
 * Prefills `prompt` from position `from` (the sequence must hold exactly positions below it),
 * then decodes `steps` greedy tokens one at a time.
 */
export async function continueGreedy(context: Context, seq: number, prompt: readonly number[], from: number, steps: number): Promise<GreedyRun> {
  assert.equal(context.seqPosMax(seq), from - 1, `sequence ${seq} holds positions below ${from}`);
  const batch = new TokenBatch(context.batchSize, 1);
  try {
    for (let start = from; start < prompt.length; start += context.batchSize) {
      const chunk = prompt.slice(start, Math.min(prompt.length, start + context.batchSize));
      batch.clear().addSequence(chunk, start, seq);
      await context.decode(batch);
    }
    const run: GreedyRun = { tokens: [], gaps: [] };
    let logits = context.logits(batch.size - 1);
    for (let i = 0; i < steps; i++) {
      const token = argmax(logits);
      run.tokens.push(token);
      run.gaps.push(top2Gap(logits));
      batch.clear().add(token, prompt.length + i, seq, true);
      await context.decode(batch);
      logits = context.logits(0);
    }
    return run;
  } finally {
    batch.dispose();
  }
}

/** Below this top-2 gap, batched and single-token kernels may pick different tokens. */
export const NEAR_TIE = 1e-2;

/** The runs agree token for token, or first differ where the reference was at a near-tie. */
export function assertSameGreedy(actual: GreedyRun, reference: GreedyRun): void {
  const mismatch = reference.tokens.findIndex((token, i) => actual.tokens[i] !== token);
  if (mismatch === -1) return;
  assert.ok(
    reference.gaps[mismatch] < NEAR_TIE,
    `greedy output differs at token ${mismatch} where the top-2 gap was ${reference.gaps[mismatch]} (not a near-tie)`,
  );
}
