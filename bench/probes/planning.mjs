#!/usr/bin/env node
// What a cheap drafting step costs in JavaScript, part by part: along the plain outputs of the bench
// prompts (decoded once with --model), every 4th position asks the n-gram and suffix drafters for
// full 64-node trees, estimates what each is expected to give (the check that decides whether a
// draft model is asked), merges them and plans the union, as the adaptive planner does, and feeds
// back which nodes plain decoding then emitted. Prints µs per drafting step for each part. The
// plans' sizes are summed into a signature, so that a change meant to be a pure speed-up can be
// checked to plan the same trees. Usage (after `npm run build`):
//   node bench/probes/planning.mjs [--model PATH] [--prompts 20] [--tokens 512]
import { parseArgs } from 'node:util';
import { Engine } from '../../dist/src/engine/engine.js';
import { promptSetFiles, readJsonLines } from '../../dist/src/bench/jsonl.js';
import { DEFAULT_TASKS, promptTokens } from '../../dist/src/bench/spec.js';
import { NgramDrafter } from '../../dist/src/speculative/ngram.js';
import { SuffixDrafter } from '../../dist/src/speculative/suffix.js';
import { AdaptivePlanner, MAX_DRAFT_BUDGET } from '../../dist/src/speculative/planner.js';
import { CostCurve } from '../../dist/src/speculative/cost-model.js';
import { unionTrees } from '../../dist/src/speculative/combine.js';
import { defaultModelPath } from '../../dist/src/paths.js';

const { values } = parseArgs({ options: { model: { type: 'string', default: defaultModelPath }, prompts: { type: 'string', default: '20' }, tokens: { type: 'string', default: '512' } } });

async function plainOutputs() {
  const engine = await Engine.load({ model: values.model, onNotice: () => {} });
  try {
    const runs = [];
    for (const [index, file] of promptSetFiles(DEFAULT_TASKS).entries()) {
      for (const { line, row } of (await readJsonLines(file)).slice(0, Number(values.prompts))) {
        const prompt = await promptTokens(engine, row, file, line);
        runs.push({ prompt, output: (await engine.complete(prompt, { maxTokens: Number(values.tokens), speculation: 'off' })).tokens });
      }
      process.stderr.write(`planning probe: ${DEFAULT_TASKS[index]} decoded\n`);
    }
    return runs;
  } finally {
    await engine.dispose();
  }
}

const runs = await plainOutputs();
// Embedded m's measured curve (reports/embedded-m): how deep plans go depends on it, not their cost.
const curve = new CostCurve([[1, 1], [2, 1.96], [8, 3.68], [32, 11.28], [64, 16.3]].map(([n, c]) => ({ n, seconds: c })));
const planner = new AdaptivePlanner({ curve }).forSequence();
const suffix = new SuffixDrafter();
const ms = { ngram: 0, suffix: 0, expected: 0, union: 0, plan: 0, observe: 0 };
let steps = 0;
let signature = 0;
const timed = (part, work) => {
  const started = performance.now();
  const result = work();
  ms[part] += performance.now() - started;
  return result;
};
for (let round = 0; round < 2; round++) {
  for (const { prompt, output } of runs) {
    const ngram = new NgramDrafter();
    ngram.begin(prompt);
    suffix.begin(prompt);
    for (let i = 0; i + 1 < output.length; i++) {
      ngram.append([output[i]]);
      suffix.append([output[i]]);
      if (i % 4 !== 0) continue;
      const trees = [timed('ngram', () => ngram.propose(output[i], MAX_DRAFT_BUDGET)), timed('suffix', () => suffix.propose(output[i], MAX_DRAFT_BUDGET))];
      timed('expected', () => trees.map((tree) => planner.expectedAccepted(tree)));
      const union = timed('union', () => unionTrees(trees));
      const plan = timed('plan', () => planner.plan(union, { maxNodes: MAX_DRAFT_BUDGET.maxNodes, maxLeaves: MAX_DRAFT_BUDGET.maxNodes }));
      timed('observe', () => {
        const accepted = [];
        for (let node = 0, d = 1; i + d < output.length; d++) {
          node = plan.childWithToken(node, output[i + d]);
          if (node < 0) break;
          accepted.push(node);
        }
        planner.observe(plan, accepted);
      });
      steps++;
      signature = (Math.imul(signature, 31) + plan.draftCount) | 0;
    }
    suffix.end();
  }
}
const perStep = Object.fromEntries(Object.entries(ms).map(([part, total]) => [part, Number(((total / steps) * 1000).toFixed(1))]));
console.table([perStep]);
console.log(JSON.stringify({ model: values.model, steps, us_per_step: perStep, plan_signature: signature }));
