#!/usr/bin/env node
// What a step of S sequences costs as it carries more tokens (tree nodes beside each sequence's
// pending token) in llama.cpp's unified KV cache, decoded as one micro-batch or split into
// micro-batches below 64 tokens. From 64 query rows on, the CPU flash-attention kernel takes a tiled
// path that skips a 64x64 tile only when every row masks it; below 64 it skips masked cells row by
// row. With the cells of many sequences interleaved, the tiled path attends over all of them.
// Usage (after `npm run build`):
//   node bench/probes/tiled-attention.mjs [--model PATH] [--threads N] [--sequences 16] [--length 512] [--steps 6]
import { parseArgs } from 'node:util';
import { Model } from '../../dist/src/llama/model.js';
import { medianSharedStepMs } from './shared-step.mjs';
import { defaultModelPath } from '../../dist/src/paths.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: defaultModelPath },
    threads: { type: 'string', default: '2' },
    sequences: { type: 'string', default: '16' },
    length: { type: 'string', default: '512' },
    steps: { type: 'string', default: '6' },
  },
});
const [threads, sequences, length, steps] = [values.threads, values.sequences, values.length, values.steps].map(Number);
const model = await Model.load(values.model, { gpu: 'cpu' });
const rows = [];
for (const perSequence of [1, 2, 4, 8]) {
  for (const microBatch of [512, 63]) {
    const ms = medianSharedStepMs(model, { sequences, length, tokensPerSequence: perSequence, steps, context: { threads, batchSize: 512, microBatchSize: microBatch } });
    rows.push({ sequences, cells_per_sequence: length, tokens: sequences * perSequence, micro_batch: microBatch, ms_per_step: Number(ms.toFixed(1)) });
  }
}
console.table(rows);
console.log(JSON.stringify({ model: values.model, threads, rows }));
model.dispose();
