#!/usr/bin/env node
// What one decode step costs when S sequences of L cells each share llama.cpp's unified KV buffer
// (every token's attention spans every used cell, masked to its own sequence), against the same
// S-token batch over sequences of one cell each, and against a KV buffer per sequence (llama-server's
// default with several slots, where attention spans only the sequence's own cells). Usage (after `npm run build`):
//   node bench/probes/unified-kv.mjs [--model PATH] [--threads N] [--steps 20]
import { parseArgs } from 'node:util';
import { Model } from '../../dist/src/llama/model.js';
import { Context, evaluateTokens } from '../../dist/src/llama/context.js';
import { TokenBatch } from '../../dist/src/llama/batch.js';
import { median } from '../../dist/src/bench/stats.js';
import { defaultModelPath } from '../../dist/src/paths.js';

const { values } = parseArgs({ options: { model: { type: 'string', default: defaultModelPath }, threads: { type: 'string', default: '2' }, steps: { type: 'string', default: '20' } } });
const threads = Number(values.threads);
const steps = Number(values.steps);
const model = await Model.load(values.model, { gpu: 'cpu' });
const rows = [];
for (const sequences of [1, 8, 16]) {
  for (const [length, unifiedKv] of [[1, true], [128, true], [512, true], [128, false], [512, false]]) {
    if (sequences === 1 && !unifiedKv) continue;
    const context = Context.create(model, { contextSize: sequences * (length + steps + 8), sequences, threads, unifiedKv });
    const batch = new TokenBatch(Math.max(sequences, Math.min(512, length)), 1);
    for (let seq = 0; seq < sequences; seq++) evaluateTokens(context, batch, Array.from({ length }, (_, i) => 300 + ((i * 7 + seq) % 500)), 0, seq);
    const times = [];
    for (let step = 0; step < steps; step++) {
      batch.clear();
      for (let seq = 0; seq < sequences; seq++) batch.add(300 + seq, length + step, seq, true);
      const started = performance.now();
      context.decodeSync(batch);
      times.push(performance.now() - started);
    }
    rows.push({ sequences, kv: unifiedKv ? 'unified' : 'per sequence', cells_per_sequence: length, used_cells: sequences * length, ms_per_step: Number(median(times).toFixed(3)) });
    batch.dispose();
    context.dispose();
  }
}
const base = new Map(rows.filter((r) => r.cells_per_sequence === 1).map((r) => [r.sequences, r.ms_per_step]));
for (const row of rows) row.vs_short_contexts = Number((row.ms_per_step / base.get(row.sequences)).toFixed(2));
console.table(rows);
console.log(JSON.stringify({ model: values.model, threads, rows }));
model.dispose();
