#!/usr/bin/env node
// Where `auto` loses to the oracle bound, step by step (bench spec reports only the ratio).
// For each prompt: plain decoding, then `auto` streamed (each chunk is one step: its tokens, its
// time); then, on this thread once the engine has exited, the oracle's drafting along the plain
// trajectory and its schedule (src/bench/oracle.ts). Compared up to where auto's output first
// differs from plain's (kernel drift at a near-tie):
//   - auto's plain steps, by how deep a chain the drafters could have had accepted there;
//   - auto's plain steps where the oracle speculated, and the tokens the oracle took there;
//   - auto's speculative steps that accepted fewer tokens than were on offer.
// Usage (after `npm run build`; the models as `bench spec --shape m` builds them):
//   node bench/probes/realized-vs-oracle.mjs --model M --draft-model D [--task longgen] [-n 3] [--max-tokens 512]
import { parseArgs } from 'node:util';
import { Engine } from '../../dist/src/engine/engine.js';
import { Model } from '../../dist/src/llama/model.js';
import { Context } from '../../dist/src/llama/context.js';
import { CostCurve } from '../../dist/src/speculative/cost-model.js';
import { createDraftContext, DraftModelDrafter } from '../../dist/src/speculative/draft-model.js';
import { OracleDrafting, oracleSchedule } from '../../dist/src/bench/oracle.js';
import { promptSetFiles, readJsonLines } from '../../dist/src/bench/jsonl.js';
import { commonPrefixLength } from '../../dist/src/token-sequences.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    'draft-model': { type: 'string' },
    task: { type: 'string', default: 'longgen' },
    n: { type: 'string', short: 'n', default: '3' },
    'max-tokens': { type: 'string', default: '512' },
  },
});
if (!values.model || !values['draft-model']) throw new Error('--model and --draft-model are required');
const maxTokens = Number(values['max-tokens']);
const rows = (await readJsonLines(promptSetFiles([values.task])[0])).slice(0, Number(values.n));

const engine = await Engine.load({ model: values.model, draftModel: values['draft-model'] });
const runs = [];
let contextSize;
let costPoints;
try {
  const prompts = await Promise.all(rows.map(({ row }) => engine.userPrompt(String(row.prompt))));
  await engine.complete(prompts[0], { maxTokens: 32, speculation: 'auto' });
  for (const prompt of prompts) {
    const plain = await engine.complete(prompt, { maxTokens, temperature: 0, speculation: 'off' });
    const steps = [];
    const autoTokens = [];
    let last = performance.now();
    const stream = engine.generate(prompt, { maxTokens, temperature: 0, speculation: 'auto' });
    for (let chunk = await stream.next(); !chunk.done; chunk = await stream.next()) {
      if (chunk.value.tokens.length === 0) continue;
      const now = performance.now();
      // A step with output token `pending` pending emits `tokens` tokens (the first chunk comes from the prompt).
      steps.push({ pending: autoTokens.length - 1, tokens: chunk.value.tokens.length, ms: now - last });
      autoTokens.push(...chunk.value.tokens);
      last = now;
    }
    runs.push({ prompt, plain, steps, autoTokens });
    process.stderr.write(`probe: prompt ${runs.length}/${prompts.length} done\n`);
  }
  contextSize = engine.info.contextSize;
  costPoints = await engine.costCurve();
} finally {
  await engine.dispose();
}

// The engine's worker has exited: this thread may load the models now (one llama.cpp user at a time).
const target = await Model.load(values.model);
const context = Context.create(target, { contextSize });
const draftModel = await DraftModelDrafter.loadModel(values['draft-model'], target);
const draftContext = createDraftContext(draftModel, context);
const oracle = new OracleDrafting(draftContext);
const curve = new CostCurve(costPoints);
const depthClass = (depth) => (depth === 0 ? '0' : depth < 4 ? '1-3' : depth < 8 ? '4-7' : depth < 16 ? '8-15' : '16+');
try {
  for (const [index, run] of runs.entries()) {
    const offered = await oracle.steps(run.prompt, run.plain.tokens);
    const singleMs = run.plain.stats.decodeMs / Math.max(1, offered.length);
    const schedule = oracleSchedule(offered, curve, singleMs);
    const oracleAt = new Map(schedule.speculative.map(({ at, tokens }) => [at, tokens]));
    const same = commonPrefixLength(run.plain.tokens, run.autoTokens);
    const steps = run.steps.filter((step) => step.pending >= 0 && step.pending + step.tokens < same);
    const plainSteps = steps.filter((step) => step.tokens === 1);
    const specSteps = steps.filter((step) => step.tokens > 1);
    const missed = plainSteps.filter((step) => (oracleAt.get(step.pending) ?? 0) > 1);
    const short = specSteps.filter((step) => step.tokens - 1 < offered[step.pending].acceptedDepth);
    const onOffer = {};
    for (const step of plainSteps) onOffer[depthClass(offered[step.pending].acceptedDepth)] = (onOffer[depthClass(offered[step.pending].acceptedDepth)] ?? 0) + 1;
    const mean = (list, of) => (list.length ? list.reduce((sum, item) => sum + of(item), 0) / list.length : 0);
    console.log(`prompt ${index + 1}: identical for ${same} of ${run.plain.tokens.length} tokens; plain decode ${run.plain.stats.decodeMs.toFixed(0)} ms (${singleMs.toFixed(1)} ms/token), oracle schedule ${schedule.ms.toFixed(0)} ms`);
    console.log(`  auto: ${plainSteps.length} plain steps (${mean(plainSteps, (s) => s.ms).toFixed(1)} ms each), ${specSteps.length} speculative (${mean(specSteps, (s) => s.ms).toFixed(1)} ms, ${mean(specSteps, (s) => s.tokens).toFixed(1)} tokens each)`);
    console.log(`  oracle: ${schedule.speculative.length} speculative steps (${mean(schedule.speculative, (s) => s.tokens).toFixed(1)} tokens each), ${schedule.steps - schedule.speculative.length} plain`);
    console.log(`  auto's plain steps by the accepted depth on offer there: ${JSON.stringify(onOffer)}`);
    console.log(`  auto decoded plainly where the oracle speculated: ${missed.length} steps (${missed.reduce((sum, s) => sum + oracleAt.get(s.pending), 0)} tokens there)`);
    console.log(`  auto accepted less than was on offer: ${short.length} steps (${short.reduce((sum, s) => sum + offered[s.pending].acceptedDepth - (s.tokens - 1), 0)} tokens)`);
  }
} finally {
  draftContext.dispose();
  draftModel.dispose();
  context.dispose();
  target.dispose();
}
