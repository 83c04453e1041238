// One measurement for the probes of shared steps: S sequences, each already holding L cells, then
// steps in which every sequence adds the same number of tokens at its next positions.
import { Context, evaluateTokens } from '../../dist/src/llama/context.js';
import { TokenBatch } from '../../dist/src/llama/batch.js';
import { median } from '../../dist/src/bench/stats.js';

/**
 * Median time (ms) of `steps` decodes in which each of `sequences` sequences of `length` cells adds
 * `tokensPerSequence` tokens; `context` holds the other Context.create options (threads, KV layout,
 * micro-batch).
 */
export function medianSharedStepMs(model, { sequences, length, tokensPerSequence = 1, steps, context = {} }) {
  const ctx = Context.create(model, { contextSize: sequences * (length + steps * tokensPerSequence + 8), sequences, ...context });
  const batch = new TokenBatch(ctx.batchSize, 1);
  try {
    for (let seq = 0; seq < sequences; seq++) evaluateTokens(ctx, batch, Array.from({ length }, (_, i) => 300 + ((i * 7 + seq) % 500)), 0, seq);
    const times = [];
    for (let step = 0; step < steps; step++) {
      batch.clear();
      for (let seq = 0; seq < sequences; seq++) {
        for (let k = 0; k < tokensPerSequence; k++) batch.add(300 + seq + k, length + step * tokensPerSequence + k, seq, true);
      }
      const started = performance.now();
      ctx.decodeSync(batch);
      times.push(performance.now() - started);
    }
    return median(times);
  } finally {
    batch.dispose();
    ctx.dispose();
  }
}
