#!/usr/bin/env node
// What one decode step costs when S sequences of L cells each share llama.cpp's unified KV buffer
// (every token's attention spans every used cell, masked to its own sequence), against the same
// S-token batch over sequences of one cell each, and against a KV buffer per sequence (llama-server's
// default with several slots, where attention spans only the sequence's own cells). Usage (after `npm run build`):
//   node bench/probes/unified-kv.mjs [--model PATH] [--threads N] [--steps 20]
import { parseArgs } from 'node:util';
import { Model } from '../../dist/src/llama/model.js';
import { medianSharedStepMs } from './shared-step.mjs';
import { defaultModelPath } from '../../dist/src/paths.js';

const { values } = parseArgs({ options: { model: { type: 'string', default: defaultModelPath }, threads: { type: 'string', default: '2' }, steps: { type: 'string', default: '20' } } });
const threads = Number(values.threads);
const steps = Number(values.steps);
const model = await Model.load(values.model, { gpu: 'cpu' });
const rows = [];
for (const sequences of [1, 8, 16]) {
  for (const [length, unifiedKv] of [[1, true], [128, true], [512, true], [128, false], [512, false]]) {
    if (sequences === 1 && !unifiedKv) continue;
    const ms = medianSharedStepMs(model, { sequences, length, steps, context: { threads, unifiedKv } });
    rows.push({ sequences, kv: unifiedKv ? 'unified' : 'per sequence', cells_per_sequence: length, used_cells: sequences * length, ms_per_step: Number(ms.toFixed(3)) });
  }
}
const base = new Map(rows.filter((r) => r.cells_per_sequence === 1).map((r) => [r.sequences, r.ms_per_step]));
for (const row of rows) row.vs_short_contexts = Number((row.ms_per_step / base.get(row.sequences)).toFixed(2));
console.table(rows);
console.log(JSON.stringify({ model: values.model, threads, rows }));
model.dispose();
