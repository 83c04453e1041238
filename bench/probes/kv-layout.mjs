#!/usr/bin/env node
// What the order of S sequences' cells in llama.cpp's unified KV buffer costs a decode-only step.
// Two contexts hold the same cells (S sequences × L), filled in different orders:
//   - `round-robin`: one cell of each sequence in turn, as S requests decoding in lockstep leave them;
//   - `shuffled`: runs of --run cells of one sequence, the runs in a random order, as staggered
//     requests, rejected tree nodes and the holes they leave (filled by whatever the next steps
//     bring) leave them over time.
// Then steps in which each sequence adds one token (removed after the step, so the layout stays),
// alternating between the two contexts. llama.cpp's CPU flash attention (below 64 query rows)
// scans every cell up to n_kv for each query row and head, and skips another sequence's cell on a
// branch: a pattern the CPU can predict (round-robin, long runs) costs little, a shuffled one costs
// a misprediction per switch. Usage (after `npm run build`):
//   node bench/probes/kv-layout.mjs [--model PATH] [--threads N] [--sequences 8] [--length 200] [--run 1] [--steps 40]
import { parseArgs } from 'node:util';
import { Model } from '../../dist/src/llama/model.js';
import { Context } from '../../dist/src/llama/context.js';
import { TokenBatch } from '../../dist/src/llama/batch.js';
import { median } from '../../dist/src/bench/stats.js';
import { defaultModelPath } from '../../dist/src/paths.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: defaultModelPath },
    threads: { type: 'string', default: '2' },
    sequences: { type: 'string', default: '8' },
    length: { type: 'string', default: '200' },
    run: { type: 'string', default: '1' },
    steps: { type: 'string', default: '40' },
  },
});
const [threads, sequences, length, run, steps] = ['threads', 'sequences', 'length', 'run', 'steps'].map((name) => Number(values[name]));
if (length % run !== 0) throw new Error('--length must be a multiple of --run');

const token = (position, seq) => 300 + ((position * 7 + seq * 31) % 500);
let seed = 12345;
const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;

/** The sequence of each cell, in the order llama.cpp will place them (it fills free cells in batch order). */
function roundRobin() {
  return Array.from({ length: length * sequences }, (_, i) => i % sequences);
}
function shuffled() {
  const runs = Array.from({ length: (length / run) * sequences }, (_, i) => i % sequences);
  for (let i = runs.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [runs[i], runs[j]] = [runs[j], runs[i]];
  }
  return runs.flatMap((seq) => Array(run).fill(seq));
}

function filled(model, order) {
  const ctx = Context.create(model, { contextSize: sequences * length + 256, sequences, threads });
  const batch = new TokenBatch(ctx.batchSize, 1);
  const next = Array(sequences).fill(0);
  for (let from = 0; from < order.length; from += ctx.batchSize) {
    batch.clear();
    for (const seq of order.slice(from, from + ctx.batchSize)) batch.add(token(next[seq], seq), next[seq]++, seq, false);
    ctx.decodeSync(batch);
  }
  batch.dispose();
  return ctx;
}

/** One step: every sequence's next token, timed; then removed, so each step sees the same layout. */
function stepMs(ctx, batch, step) {
  batch.clear();
  for (let seq = 0; seq < sequences; seq++) batch.add(token(length + step, seq), length, seq, true);
  const started = performance.now();
  ctx.decodeSync(batch);
  const ms = performance.now() - started;
  for (let seq = 0; seq < sequences; seq++) ctx.seqRemove(seq, length, -1);
  return ms;
}

const model = await Model.load(values.model, { gpu: 'cpu' });
const layouts = { 'round-robin': filled(model, roundRobin()), shuffled: filled(model, shuffled()) };
const batch = new TokenBatch(sequences, 1);
const times = { 'round-robin': [], shuffled: [] };
const names = Object.keys(layouts);
for (let step = -4; step < steps; step++) {
  // Alternate which goes first: a machine whose speed drifts favours neither.
  for (const name of step % 2 ? names : [...names].reverse()) {
    const ms = stepMs(layouts[name], batch, step + 4);
    if (step >= 0) times[name].push(ms);
  }
}
const slower = times.shuffled.filter((ms, i) => ms > times['round-robin'][i]).length;
const result = {
  model: values.model,
  threads,
  sequences,
  cells_per_sequence: length,
  shuffled_run: run,
  round_robin_ms: Number(median(times['round-robin']).toFixed(2)),
  shuffled_ms: Number(median(times.shuffled).toFixed(2)),
  shuffled_vs_round_robin: Number((median(times.shuffled) / median(times['round-robin'])).toFixed(3)),
  shuffled_slower_in: `${slower}/${steps} steps`,
};
console.log(JSON.stringify(result));
batch.dispose();
for (const ctx of Object.values(layouts)) ctx.dispose();
model.dispose();
