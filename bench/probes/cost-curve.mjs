#!/usr/bin/env node
// The verify cost curve c(n) = t(n)/t(1) of a model on this machine, measured the way speculation
// meets it (src/speculative/cost-curve.ts), without the cache: run it on an idle machine to see
// what the planner will see. Usage (after `npm run build`):
//   node bench/probes/cost-curve.mjs MODEL.gguf [--threads 2] [--repeats 2] [--flash-attention auto|on|off] [--sizes 2,4,…,256]
import { parseArgs } from 'node:util';
import { Model } from '../../dist/src/llama/model.js';
import { Context } from '../../dist/src/llama/context.js';
import { measureCostCurve } from '../../dist/src/speculative/cost-curve.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { threads: { type: 'string', default: '2' }, repeats: { type: 'string', default: '2' }, 'flash-attention': { type: 'string', default: 'auto' }, sizes: { type: 'string' } },
});
if (positionals.length !== 1) throw new Error('usage: node bench/probes/cost-curve.mjs MODEL.gguf [--threads N] [--repeats N] [--flash-attention auto|on|off] [--sizes LIST]');
const model = await Model.load(positionals[0], { gpu: 'cpu' });
const context = Context.create(model, { contextSize: 1024, threads: Number(values.threads), flashAttention: values['flash-attention'] });
for (let round = 0; round < Number(values.repeats); round++) {
  const points = measureCostCurve(context, 0, 5, values.sizes ? values.sizes.split(',').map(Number) : undefined);
  const single = points[0].seconds;
  console.log(`t(1) ${(single * 1000).toFixed(2)} ms  ${points.map((p) => `c(${p.n}) ${(p.seconds / single).toFixed(2)}`).join('  ')}`);
}
context.dispose();
model.dispose();
