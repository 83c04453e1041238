#!/usr/bin/env node
// The adaptive planner replayed on plain trajectories, deterministically, in seconds: a way to
// compare planner changes where `bench spec --shape m` takes 15 minutes and moves ±4% run to run.
//
// The target's plain outputs (greedy) are decoded once with --model and cached (--cache). The
// replay then runs `auto` as the engine does for a lone request: the real drafters (n-gram, the
// suffix history kept across prompts, the draft model decoding for real), the real planner and
// decoder. Only the target is simulated: its logits are one-hot at the plain trajectory's tokens
// (so greedy acceptance takes exactly what plain decoding emits), and every cost runs on a
// virtual clock: a verify of n tokens c(n)·t₁ from the target's measured curve, a draft-model
// decode of n tokens a + b·n + c·(the sum of their positions) (measured once and cached: a small
// draft's attention over a few hundred cells costs as much as its weights), a cheap drafter's
// proposal a fixed time.
// Wall-clock noise (GC, JIT, the machine) then moves no decision, and the same code gives the
// same numbers. The oracle bound (src/bench/oracle.ts) is computed on the same trajectories.
//
// Printed per task: the replay's speedup over plain decoding (median over prompts, and over their
// summed time), the oracle's,
// their ratio, and where the steps fell short: plain steps where the drafts offered ≥ 4 accepted
// tokens, speculative steps whose whole plan was accepted while the candidates already drafted
// went deeper along the output (cut short by the plan), and those that went the wrong way.
// Then where the replay's time went, in decodes: plain steps, verify steps, draft-model decodes and
// cheap drafting, beside the plain run's and the oracle's totals.
// With --no-draft the draft model proposes nothing (the oracle keeps it): what it adds to `auto`.
// With --max-branches 1 trees are single chains, as with a KV buffer per sequence (`--kv per-sequence`).
// With --calibrated the planner runs a second time with its acceptance rates frozen at what
// every candidate node of the first run did, per task (known in advance, in-sample): a bound on
// what better calibration alone can give.
// Usage (after `npm run build`; the models as `bench spec --shape m` builds them; the cache goes to .cache/):
//   node bench/probes/planner-replay.mjs --model M --draft-model D [--tasks rewrite,longgen] [-n 10] [--calibrated] [--max-branches N] [--no-draft] [--cache FILE]
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { Engine } from '../../dist/src/engine/engine.js';
import { Model } from '../../dist/src/llama/model.js';
import { Context } from '../../dist/src/llama/context.js';
import { promptSetFiles, readJsonLines } from '../../dist/src/bench/jsonl.js';
import { DEFAULT_TASKS, promptTokens } from '../../dist/src/bench/spec.js';
import { OracleDrafting, oracleSchedule } from '../../dist/src/bench/oracle.js';
import { AcceptanceStats, CostCurve, observeVerification } from '../../dist/src/speculative/cost-model.js';
import { createDraftContext, DraftModelDrafter } from '../../dist/src/speculative/draft-model.js';
import { SpeculativeDecoder } from '../../dist/src/speculative/decoder.js';
import { NgramDrafter } from '../../dist/src/speculative/ngram.js';
import { AdaptivePlanner } from '../../dist/src/speculative/planner.js';
import { SuffixDrafter } from '../../dist/src/speculative/suffix.js';
import { Sampler } from '../../dist/src/generate/sampling.js';
import { TokenBatch } from '../../dist/src/llama/batch.js';
import { median } from '../../dist/src/stats.js';
import { ROOT } from '../../dist/src/speculative/tree.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    'draft-model': { type: 'string' },
    tasks: { type: 'string', default: DEFAULT_TASKS.join(',') },
    n: { type: 'string', short: 'n', default: '10' },
    'max-tokens': { type: 'string', default: '512' },
    cache: { type: 'string' },
    'cheap-ms': { type: 'string', default: '0.15' },
    calibrated: { type: 'boolean', default: false },
    'max-branches': { type: 'string', default: '16' },
    'no-draft': { type: 'boolean', default: false },
  },
});
if (!values.model || !values['draft-model']) throw new Error('--model and --draft-model are required');
const tasks = values.tasks.split(',');
const perTask = Number(values.n);
const maxTokens = Number(values['max-tokens']);
/** Branches a tree may have (1: chains only, as with a KV buffer per sequence). */
const maxBranches = Number(values['max-branches']);
/** What a cheap drafter's proposal costs on the virtual clock (ms): a few hundred µs a drafting step, measured warm. */
const cheapProposalMs = Number(values['cheap-ms']);

// Plain trajectories, the target's cost curve and the draft model's decode cost: measured once.
// Kept per target and draft model (a file of another pair's trajectories would be replayed as this one's).
const cacheFile = values.cache ?? `.cache/planner-replay-${basename(values.model, '.gguf')}-${basename(values['draft-model'], '.gguf')}.json`;
const cache = existsSync(cacheFile) ? JSON.parse(readFileSync(cacheFile, 'utf8')) : { runs: {} };
/** Written whole, then renamed: an interrupted run leaves the last complete cache. */
function saveCache() {
  writeFileSync(`${cacheFile}.tmp`, JSON.stringify(cache));
  renameSync(`${cacheFile}.tmp`, cacheFile);
}
const key = (task, index) => `${task}:${index}:${maxTokens}`;
const missing = tasks.flatMap((task) => Array.from({ length: perTask }, (_, index) => key(task, index))).filter((k) => !cache.runs[k]);
if (missing.length > 0 || !cache.points) {
  const engine = await Engine.load({ model: values.model, onNotice: () => {} });
  try {
    for (const [t, file] of promptSetFiles(tasks).entries()) {
      for (const [index, { line, row }] of (await readJsonLines(file)).slice(0, perTask).entries()) {
        if (cache.runs[key(tasks[t], index)]) continue;
        const prompt = await promptTokens(engine, row, file, line);
        const { tokens } = await engine.complete(prompt, { maxTokens, temperature: 0, speculation: 'off' });
        cache.runs[key(tasks[t], index)] = { prompt, output: tokens };
        process.stderr.write(`planner replay: ${tasks[t]} prompt ${index + 1} decoded plainly\n`);
      }
    }
    cache.points = await engine.costCurve();
    cache.contextSize = engine.info.contextSize;
  } finally {
    await engine.dispose();
  }
  saveCache();
}

const curve = new CostCurve(cache.points);
const singleMs = cache.points.find((point) => point.n === 1).seconds * 1000;
const target = await Model.load(values.model);
const draftModel = await DraftModelDrafter.loadModel(values['draft-model'], target);
const draftContext = createDraftContext(draftModel, { contextSize: cache.contextSize, batchSize: 512, sequences: 4 });
const vocabularySize = target.tokenizer.vocabularySize;

if (cache.draftDecode?.cBatched === undefined) cache.draftDecode = measureDraftDecode();
// What the drafters offered at every position, for the oracle: one suffix history across the
// prompts in task order, as bench spec keeps it (and as the replay's `auto` does).
const runsInOrder = tasks.flatMap((task) => Array.from({ length: perTask }, (_, index) => cache.runs[key(task, index)]));
if (runsInOrder.some((run) => !run.offered)) {
  const oracle = new OracleDrafting(draftContext);
  for (const run of runsInOrder) {
    // JSON has no Infinity: "no node of the draft model's alone" is stored as null.
    run.offered = (await oracle.steps(run.prompt, run.output)).map((step) => ({ ...step, firstCostlyDepth: Number.isFinite(step.firstCostlyDepth) ? step.firstCostlyDepth : null }));
  }
}
saveCache();

/**
 * A draft-model decode of n tokens at positions p₁…pₙ, a + b·n + c·Σp ms, where c is a single
 * token's (a chain's node) or a batch's (a catch-up: attention as a matrix product costs less a
 * cell): medians of real decodes of 1 and 64 tokens after an empty cache and after a 384-token
 * prefix.
 */
function measureDraftDecode() {
  const prefix = Math.min(384, Math.floor(cache.contextSize / 2));
  const tokens = Array.from({ length: prefix + 64 }, (_, i) => cache.runs[key(tasks[0], 0)].prompt[i % 8]);
  const batch = new TokenBatch(Math.max(prefix, 64));
  const time = (n, at) => {
    draftContext.seqRemove(0);
    if (at > 0) {
      batch.clear().addSequence(tokens.slice(0, at), 0, 0);
      draftContext.decodeSync(batch);
    }
    const times = [];
    for (let round = 0; round < 9; round++) {
      draftContext.seqRemove(0, at, -1);
      batch.clear().addSequence(tokens.slice(at, at + n), at, 0);
      const started = performance.now();
      draftContext.decodeSync(batch);
      times.push(performance.now() - started);
    }
    draftContext.seqRemove(0);
    return median(times);
  };
  const one = time(1, 0);
  const many = time(64, 0);
  const perToken = Math.max(0, (many - one) / 63);
  const perPosition = Math.max(0, (time(1, prefix) - one) / prefix);
  const perBatchedPosition = Math.max(0, (time(64, prefix) - many) / (64 * prefix));
  batch.dispose();
  return { a: one - perToken, b: perToken, c: perPosition, cBatched: perBatchedPosition };
}

// The virtual clock: only modeled costs move it (the code under test reads performance.now()).
let clock = 0;
/** Where the virtual clock's time went (ms): draft-model decodes, cheap proposals, plain steps, verify steps. */
const spent = { draft: 0, cheap: 0, plain: 0, verify: 0 };
performance.now = () => clock;
const decodeDraft = draftContext.decodeSync.bind(draftContext);
draftContext.decodeSync = (batch) => {
  let positions = 0;
  for (let i = 0; i < batch.size; i++) positions += batch.positionAt(i);
  const { a, b, c, cBatched } = cache.draftDecode;
  const ms = a + b * batch.size + (batch.size === 1 ? c : cBatched) * positions;
  clock += ms;
  spent.draft += ms;
  decodeDraft(batch);
};
/** A cheap drafter whose proposals cost `cheapProposalMs` on the clock. */
function timedCheaply(drafter) {
  const propose = drafter.propose.bind(drafter);
  drafter.propose = (root, budget) => {
    clock += cheapProposalMs;
    spent.cheap += cheapProposalMs;
    return propose(root, budget);
  };
  return drafter;
}

const oneHotRows = new Map();
function oneHot(token) {
  let row = oneHotRows.get(token);
  if (!row) {
    row = new Float32Array(vocabularySize).fill(-10);
    row[token] = 10;
    oneHotRows.set(token, row);
  }
  return row;
}

/** How deep `tree` follows `output` from index `from`: the accepted path's nodes. */
function pathAlong(tree, output, from) {
  const nodes = [];
  for (let node = ROOT; from + nodes.length < output.length; ) {
    node = tree.childWithToken(node, output[from + nodes.length]);
    if (node < 0) break;
    nodes.push(node);
  }
  return nodes;
}

/**
 * One replay of every task's prompts in order, as one engine serves them (one planner and one
 * suffix history across requests). `frozen` (task -> records): rates fixed in advance
 * instead of learnt; `record` (CandidateRecords): fed every step's candidates, walked along the output.
 */
async function replay({ frozen, record } = {}) {
  const planners = new AdaptivePlanner({ curve, singleDecodeMs: singleMs, costlyDrafter: true });
  const suffix = timedCheaply(new SuffixDrafter());
  const results = {};
  let step = 0;
  for (const task of tasks) {
    const rows = (results[task] = []);
    const before = { ...spent };
    for (let index = 0; index < perTask; index++) {
      const { prompt, output, offered } = cache.runs[key(task, index)];
      const sampler = new Sampler({ temperature: 0 });
      const drafters = [timedCheaply(new NgramDrafter()), suffix, ...(values['no-draft'] ? [] : [new DraftModelDrafter(draftContext, sampler.options, { seed: sampler.options.seed ^ 0x9e3779b9, seq: 0 })])];
      const planner = planners.forSequence();
      // A private field, replaced here only: the planner then plans with rates known in advance and learns nothing.
      if (frozen) planner.records = frozen.get(task);
      const decoder = new SpeculativeDecoder(sampler, { drafters, planner });
      const started = clock;
      const counts = { steps: 0, plainWithOffer: 0, cutShort: 0, cutShortTokens: 0, wrongWay: 0, wrongWayTokens: 0, rejected: 0 };
      const sequence = [...prompt, await decoder.start(prompt, oneHot(output[0]))];
      for (let i = 1; i < output.length; ) {
        const limits = { room: cache.contextSize - (sequence.length - 1), maxNodes: 64, maxBranches, batchTokens: 0, sequences: 1, step };
        const tree = await decoder.propose(sequence, limits);
        const ms = curve.cost(tree.size) * singleMs;
        clock += ms;
        spent[tree.size === 1 ? 'plain' : 'verify'] += ms;
        decoder.observeDecode(ms, { index: step++, tokens: tree.size, decodingTokens: tree.size, sequences: 1 });
        const candidates = decoder.step.candidates;
        const { tokens } = decoder.accept(tree, (node) => oneHot(output[Math.min(output.length - 1, i + tree.depth(node))]), sequence);
        if (tokens.some((token, j) => i + j < output.length && token !== output[i + j])) throw new Error(`planner replay: ${task} prompt ${index + 1} left the plain trajectory at ${i}`);
        const candidatePath = candidates.draftCount > 0 ? pathAlong(candidates, output, i) : [];
        if (candidates.draftCount > 0) record?.observe(task, candidates, candidatePath);
        tally(counts, tree, tokens.length - 1, candidatePath.length, offered[i - 1]?.acceptedDepth ?? 0);
        sequence.push(...tokens);
        i += tokens.length;
      }
      decoder.dispose();
      const plainMs = (output.length - 1) * singleMs;
      const steps = offered.map((step) => ({ ...step, firstCostlyDepth: step.firstCostlyDepth ?? Infinity }));
      const schedule = oracleSchedule(steps, curve, singleMs);
      // The oracle on the cheap drafters' nodes alone: each step's accepted path up to its first node only the draft model proposed.
      const cheapSchedule = oracleSchedule(steps.map((step) => ({ ...step, acceptedDepth: Math.min(step.acceptedDepth, step.firstCostlyDepth - 1), firstCostlyDepth: Infinity })), curve, singleMs);
      rows.push({ plainMs, ms: clock - started, oracleMs: schedule.ms, cheapOracleMs: cheapSchedule.ms, speedup: plainMs / (clock - started), oracle: plainMs / schedule.ms, tau: (output.length - 1) / counts.steps, ...counts });
    }
    rows.spent = Object.fromEntries(Object.entries(spent).map(([k, v]) => [k, v - before[k]]));
  }
  return results;
}

/** Where a step fell short of what was on offer. */
function tally(counts, tree, accepted, inCandidates, onOffer) {
  counts.steps++;
  if (tree.size === 1) {
    if (onOffer >= 4) counts.plainWithOffer++;
    return;
  }
  counts.rejected += tree.size - 1 - accepted;
  if (accepted >= onOffer) return;
  if (accepted === tree.maxDepth() && inCandidates > accepted) {
    counts.cutShort++;
    counts.cutShortTokens += inCandidates - accepted;
  } else if (accepted < tree.maxDepth()) {
    counts.wrongWay++;
    counts.wrongWayTokens += onOffer - accepted;
  }
}

const sum = (rows, field) => rows.reduce((total, row) => total + row[field], 0);

function report(label, results) {
  console.log(label);
  for (const [task, rows] of Object.entries(results)) {
    const speedup = median(rows.map((row) => row.speedup));
    const oracle = median(rows.map((row) => row.oracle));
    // Over all prompts' time too: a median of per-prompt ratios moves with one prompt's decisions.
    console.log(`  ${task.padEnd(10)} ${speedup.toFixed(3)}x (all prompts' time: ${(sum(rows, 'plainMs') / sum(rows, 'ms')).toFixed(3)}x), oracle ${oracle.toFixed(3)}x, realized/oracle ${(speedup / oracle).toFixed(3)}; tau ${median(rows.map((row) => row.tau)).toFixed(2)}; ` +
      `${sum(rows, 'plainWithOffer')} plain steps with >= 4 tokens on offer, ${sum(rows, 'cutShort')} plans cut short (${sum(rows, 'cutShortTokens')} tokens already drafted beyond them), ` +
      `${sum(rows, 'wrongWay')} gone the wrong way (${sum(rows, 'wrongWayTokens')} tokens on offer), ${sum(rows, 'rejected')} rejected nodes`);
    const decodes = (ms) => (ms / singleMs).toFixed(0);
    console.log(`             in decodes: plain run ${decodes(sum(rows, 'plainMs'))}, oracle ${decodes(sum(rows, 'oracleMs'))} (without the draft model's nodes ${decodes(sum(rows, 'cheapOracleMs'))}), replay ${decodes(sum(rows, 'ms'))} = plain steps ${decodes(rows.spent.plain)} + verify steps ${decodes(rows.spent.verify)} + draft model ${decodes(rows.spent.draft)} + cheap drafting ${decodes(rows.spent.cheap)}`);
  }
}

/**
 * Every candidate node's outcome, per task, counted without decay: the rates a planner that knew
 * them in advance would plan with. `frozen` reads them and learns nothing.
 */
class CandidateRecords {
  byTask = new Map();

  observe(task, tree, path) {
    if (!this.byTask.has(task)) this.byTask.set(task, new AcceptanceStats({ decay: 1 }));
    observeVerification(this.byTask.get(task), tree, path);
  }

  frozen() {
    return new Map([...this.byTask].map(([task, stats]) => [task, { observe() {}, rate: (source, depth, prior) => stats.rate(source, depth, prior) }]));
  }
}

console.log(`planner replay: ${perTask} prompts per task, ${maxTokens} tokens; t1 ${singleMs.toFixed(2)} ms, c(8) ${curve.cost(8).toFixed(2)}, c(32) ${curve.cost(32).toFixed(2)}, c(64) ${curve.cost(64).toFixed(2)}; ` +
  `draft decode ${cache.draftDecode.a.toFixed(2)} + ${cache.draftDecode.b.toFixed(2)}·n + (${cache.draftDecode.c.toFixed(5)} alone, ${cache.draftDecode.cBatched.toFixed(5)} batched)·Σp ms, cheap proposal ${cheapProposalMs} ms`);
try {
  const candidates = values.calibrated ? new CandidateRecords() : undefined;
  report('auto (rates learnt as it goes):', await replay({ record: candidates }));
  if (candidates) {
    report('auto with every rate known in advance (in-sample, per task):', await replay({ frozen: candidates.frozen() }));
  }
} finally {
  draftContext.dispose();
  draftModel.dispose();
  target.dispose();
}

