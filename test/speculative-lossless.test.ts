/**
 * Losslessness on real models: every drafter and the combined tree against plain decoding of the
 * same model, token for token (greedy) and in distribution (sampling); no stray KV cells after
 * rejected branches; the contextual repetition penalty stays lossless.
 */
import type { CostlyDraft } from '../src/speculative/costly-drafts.js';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Context, type FlashAttention } from '../src/llama/context.js';
import { costCurveCacheKey } from '../src/speculative/cost-curve.js';
import { TokenBatch } from '../src/llama/batch.js';
import { PlainDecoder, type DecodedStep } from '../src/generate/decoder.js';
import type { GenerationResult } from '../src/generate/generate.js';
import type { Sampler, SamplingOptions } from '../src/generate/sampling.js';
import { EngineLoop } from '../src/engine/loop.js';
import { SpeculativeDecoder } from '../src/speculative/decoder.js';
import { DraftModelDrafter, MAX_DRAFT_DEPTH, checkSameVocabulary, createDraftContext, type DraftModelOptions } from '../src/speculative/draft-model.js';
import { NgramDrafter } from '../src/speculative/ngram.js';
import { AdaptivePlanner, FixedPlanner } from '../src/speculative/planner.js';
import { acceptanceKey, CostCurve, proposersKey } from '../src/speculative/cost-model.js';
import { SuffixDrafter } from '../src/speculative/suffix.js';
import { ROOT, type DraftBudget, type Drafter, type TokenTree } from '../src/speculative/tree.js';
import type { Drafting } from '../src/speculative/decoder.js';
import { loadModel, testbedDraft, testbedPrompts, testbedTarget, tinyModelPath } from './helpers/models.js';
import { decoderSource, drive, runLoop, runSolo } from './helpers/loop.js';
import { draftBatcherOf } from '../src/speculative/draft-batcher.js';

const budget = { maxNodes: 24, maxDepth: 10, maxBranches: 3 };

/**
 * The adaptive planner on made-up timings: 1 ms per plain decode, tree decodes as its curve says,
 * 0.05 ms of drafting. Its decisions then depend on the tokens only, never on this machine's load,
 * so a test that needs drafts to be judged cannot pass on one run and fail on the next.
 */
class FixedTimingPlanner extends AdaptivePlanner {
  private decodeMs = 0;

  constructor(private readonly fixedCurve: CostCurve) {
    super({ curve: fixedCurve });
  }

  override observeDecode(step: DecodedStep): void {
    this.decodeMs = this.fixedCurve.cost(step.tokens);
    super.observeDecode(step, this.decodeMs);
  }

  override observeStep(emitted: number, _ms: number, drafting: Drafting): void {
    super.observeStep(emitted, this.decodeMs + (drafting === 'none' ? 0 : 0.05), drafting);
  }
}
type DrafterKind = 'ngram' | 'suffix' | 'draft';

interface Rig {
  target: Context;
  draft: Context;
}

async function rig(targetPath: string, draftPath: string, flashAttention?: FlashAttention): Promise<Rig> {
  const targetModel = await loadModel(targetPath);
  const draftModel = await loadModel(draftPath);
  checkSameVocabulary(targetModel, draftModel);
  const target = Context.create(targetModel, { contextSize: 1024, sequences: 8, flashAttention });
  return { target, draft: createDraftContext(draftModel, target) };
}

function disposeRig(rig: Rig): void {
  rig.draft.dispose();
  rig.target.dispose();
}

function drafters(kinds: readonly DrafterKind[], rig: Rig, sampling: SamplingOptions, seq: number, suffix = new SuffixDrafter()): Drafter[] {
  return kinds.map((kind) => (kind === 'ngram' ? new NgramDrafter() : kind === 'suffix' ? suffix : new DraftModelDrafter(rig.draft, sampling, { seed: 7, seq })));
}

function plain(rig: Rig, prompt: number[], sampling: SamplingOptions, maxTokens: number): Promise<GenerationResult> {
  return runSolo(rig.target, (sampler) => new PlainDecoder(sampler), prompt, { ...sampling, maxTokens });
}

function speculativeDecoder(rig: Rig, kinds: readonly DrafterKind[], sampling: SamplingOptions, suffix?: SuffixDrafter) {
  return (sampler: Sampler, seq: number) => new SpeculativeDecoder(sampler, { drafters: drafters(kinds, rig, sampling, seq, suffix), planner: new FixedPlanner(budget) });
}

function speculative(rig: Rig, kinds: readonly DrafterKind[], prompt: number[], sampling: SamplingOptions, maxTokens: number, suffix?: SuffixDrafter): Promise<GenerationResult> {
  return runSolo(rig.target, speculativeDecoder(rig, kinds, sampling, suffix), prompt, { ...sampling, maxTokens });
}

/** Mid-story, where the testbed hesitates between places (big / stone / rock ≈ 0.39 / 0.32 / 0.29). */
const samplingPrompt = '<|user|>\nWrite a long bedtime story.<|end|>\n<|assistant|>\nBram walked and walked until he came to a';

const configurations: DrafterKind[][] = [['ngram'], ['suffix'], ['draft'], ['ngram', 'suffix', 'draft']];

describe('greedy speculative decoding is token-identical to plain decoding (testbed)', () => {
  let testbed: Rig;
  before(async () => (testbed = await rig(testbedTarget, testbedDraft)));
  after(() => disposeRig(testbed));

  for (const kinds of configurations) {
    test(`drafters: ${kinds.join(' + ')}`, async () => {
      for (const [name, text, maxTokens] of [['reasoning', testbedPrompts.reasoning, 300], ['story', testbedPrompts.story, 200]] as const) {
        const prompt = testbed.target.model.tokenizer.tokenize(text);
        const reference = await plain(testbed, prompt, {}, maxTokens);
        const result = await speculative(testbed, kinds, prompt, {}, maxTokens);
        assert.deepEqual(result.tokens, reference.tokens, `${name}: identical tokens`);
        const spec = result.stats.speculation!;
        assert.ok(spec.speculativeSteps > 0, `${name}: drafts were verified`);
        assert.ok(spec.emitted > spec.steps, `${name}: drafts were accepted (τ ${spec.tau.toFixed(2)})`);
      }
    });
  }

  test("logprobs read from verified trees equal plain decoding's, to the batched kernels' last bits", async () => {
    const prompt = testbed.target.model.tokenizer.tokenize(testbedPrompts.story);
    const withLogprobs = { maxTokens: 120, logprobs: 3 };
    const reference = await runSolo(testbed.target, (sampler) => new PlainDecoder(sampler), prompt, withLogprobs);
    const result = await runSolo(testbed.target, speculativeDecoder(testbed, ['ngram', 'suffix', 'draft'], {}), prompt, withLogprobs);
    assert.deepEqual(result.tokens, reference.tokens);
    assert.ok(result.stats.speculation!.emitted > result.stats.speculation!.steps, 'drafts were accepted');
    assert.equal(result.logprobs!.length, result.tokens.length);
    let drift = 0;
    for (const [i, entry] of result.logprobs!.entries()) {
      assert.equal(entry.token, result.tokens[i]);
      drift = Math.max(drift, Math.abs(entry.logprob - reference.logprobs![i].logprob));
      assert.equal(entry.top.length, 3);
      assert.equal(entry.top[0].token, entry.token, 'greedy: the emitted token is the most likely');
      assert.ok(entry.top.every((top, k) => k === 0 || top.logprob <= entry.top[k - 1].logprob), 'alternatives most likely first');
      assert.ok(entry.top.reduce((sum, top) => sum + Math.exp(top.logprob), 0) <= 1 + 1e-9, 'probabilities, not raw logits');
    }
    assert.ok(drift < 1e-3, `largest logprob difference ${drift}`);
  });

  test('with flash attention off (target and draft context alike; its cost curve filed apart), every drafter equals plain decoding', async () => {
    const off = await rig(testbedTarget, testbedDraft, 'off');
    try {
      assert.equal(off.draft.flashAttention, 'off', 'the draft context follows the target');
      assert.notEqual(await costCurveCacheKey(off.target, 2), await costCurveCacheKey(testbed.target, 2), 'a curve measured with flash attention on is not read for it');
      const prompt = off.target.model.tokenizer.tokenize(testbedPrompts.story);
      const reference = await plain(off, prompt, {}, 160);
      for (const kinds of configurations) {
        const result = await speculative(off, kinds, prompt, {}, 160);
        assert.deepEqual(result.tokens, reference.tokens, kinds.join(' + '));
        assert.ok(result.stats.speculation!.emitted > result.stats.speculation!.steps, `${kinds.join(' + ')}: drafts were accepted`);
      }
    } finally {
      disposeRig(off);
    }
  });

  test('the contextual repetition penalty (θ 1.2 over a window) stays lossless', async () => {
    const penalty = { repeatPenalty: 1.2, penaltyLastN: 1024 };
    const prompt = testbed.target.model.tokenizer.tokenize(testbedPrompts.story);
    const reference = await plain(testbed, prompt, penalty, 200);
    const unpenalized = await plain(testbed, prompt, {}, 200);
    assert.notDeepEqual(reference.tokens, unpenalized.tokens, 'the penalty changes the output');
    const result = await speculative(testbed, ['ngram', 'suffix', 'draft'], prompt, penalty, 200);
    assert.deepEqual(result.tokens, reference.tokens);
  });

  test('a logit bias (the thinking tag banned) stays lossless', async () => {
    const tokenizer = testbed.target.model.tokenizer;
    const [think] = tokenizer.tokenize('<think>', { addSpecial: false, parseSpecial: true });
    const bias = { logitBias: { [think]: -100 } };
    const prompt = tokenizer.tokenize(testbedPrompts.reasoning);
    const reference = await plain(testbed, prompt, bias, 160);
    assert.ok(!reference.tokens.includes(think), 'the banned token never comes');
    assert.equal((await plain(testbed, prompt, {}, 160)).tokens[0], think, 'unbiased, the answer starts by thinking');
    const result = await speculative(testbed, ['ngram', 'suffix', 'draft'], prompt, bias, 160);
    assert.deepEqual(result.tokens, reference.tokens);
  });

  test('no stray KV cells survive rejected branches', async () => {
    const prompt = testbed.target.model.tokenizer.tokenize(testbedPrompts.story);
    const loop = new EngineLoop(testbed.target, testbed.target.model.tokenizer, decoderSource(speculativeDecoder(testbed, ['ngram', 'suffix', 'draft'], {})));
    const tokens: number[] = [];
    let result: GenerationResult | undefined;
    loop.submit(1, prompt, { maxTokens: 400 }, (event) => {
      if (event.type === 'chunk') tokens.push(...event.chunk.tokens);
      if (event.type === 'done') result = event.result;
    });
    // After every step the request's sequence holds exactly its committed positions, and no other sequence holds anything.
    while (tokens.length < 150) {
      await loop.step();
      const committed = prompt.length + tokens.length - 1; // the last token is pending, not decoded
      assert.deepEqual(loop.kvAudit(), [{ seq: 0, min: 0, max: committed - 1 }], `after ${tokens.length} tokens`);
    }
    // The cache must now behave like a fresh evaluation of the same tokens (up to the float
    // rounding that separates incremental from batched evaluation, ~3e-3 here, the same for plain
    // decoding); one stray cell in the attention would move the logits far more.
    const committed = prompt.length + tokens.length - 1;
    const sequence = [...prompt, ...tokens];
    const batch = new TokenBatch(8, 1);
    batch.add(sequence[committed], committed, 0, true);
    testbed.target.decodeSync(batch);
    const continued = testbed.target.logits(0).slice();
    testbed.target.seqRemove(0, committed, -1);
    batch.dispose();
    const fresh = loop.logitsAfter(sequence.slice(0, committed + 1), []);
    let worst = 0;
    for (let i = 0; i < fresh.length; i++) worst = Math.max(worst, Math.abs(fresh[i] - continued[i]));
    assert.ok(worst < 2e-2, `largest logit difference ${worst}`);
    loop.cancel(1);
    while (!loop.idle) await loop.step();
    assert.equal(result?.stats.stopReason, 'abort');
    const spec = result.stats.speculation!;
    assert.ok(spec.verifiedNodes > spec.emitted - spec.steps, `some drafted nodes were rejected (verified ${spec.verifiedNodes}, accepted ${spec.emitted - spec.steps})`);
    assert.deepEqual(loop.kvAudit(), [], 'the cancelled request freed its cells');
    loop.dispose();
  });

  test('the adaptive planner is lossless too', async () => {
    for (const text of [testbedPrompts.reasoning, testbedPrompts.story]) {
      const prompt = testbed.target.model.tokenizer.tokenize(text);
      const reference = await plain(testbed, prompt, {}, 300);
      // Whether a tree is worth verifying depends on the timings (fixed here); losslessness must not.
      const planner = new FixedTimingPlanner(CostCurve.linear(0.5));
      const suffix = new SuffixDrafter();
      for (const round of [1, 2]) {
        const result = await runSolo(testbed.target, (sampler) => new SpeculativeDecoder(sampler, { drafters: [new NgramDrafter(), suffix], planner }), prompt, { maxTokens: 300 });
        assert.deepEqual(result.tokens, reference.tokens, `round ${round}`);
        // The suffix drafter's sure nodes, proposed alone or with the n-gram drafter.
        const learnt = [['suffix'], ['ngram', 'suffix']].map((sources) => planner.stats.rate(acceptanceKey(proposersKey(sources), 1), 1));
        assert.ok(learnt.some((rate) => rate !== 0.5), `round ${round}: drafts were judged (verified, or followed in the shadow of plain steps)`);
      }
    }
  });

  test("concurrent requests share the draft model's decodes and each equals its plain solo run", async () => {
    const texts = [testbedPrompts.reasoning, testbedPrompts.story, '<|user|>\nWhat is 19 + 23?<|end|>\n<|assistant|>\n', samplingPrompt];
    const prompts = texts.map((text) => testbed.target.model.tokenizer.tokenize(text));
    const references = [];
    for (const prompt of prompts) references.push((await plain(testbed, prompt, {}, 120)).tokens);
    const before = draftBatcherOf(testbed.draft).stats;
    const requests = prompts.map((prompt) => ({ prompt, options: { maxTokens: 120 } }));
    const results = await runLoop(testbed.target, decoderSource(speculativeDecoder(testbed, ['draft'], {})), requests);
    assert.deepEqual(
      results.map((result) => result.tokens),
      references,
    );
    const after = draftBatcherOf(testbed.draft).stats;
    const perDecode = (after.entries - before.entries) / (after.decodes - before.decodes);
    assert.ok(perDecode > 1.5, `a draft decode served ${perDecode.toFixed(2)} requests on average (4 drafting)`);
    assert.ok(results.every((result) => result.stats.speculation!.tau > 1.5), 'every request accepted drafts');
  });

  test('concurrent speculative requests equal their plain solo runs while their KV cells are moved into runs after every freed cell', async () => {
    const texts = [testbedPrompts.reasoning, testbedPrompts.story, '<|user|>\nWhat is 19 + 23?<|end|>\n<|assistant|>\n', samplingPrompt];
    const prompts = texts.map((text) => testbed.target.model.tokenizer.tokenize(text));
    // Requests end at different times, so their cells free up among the others' (and rejected tree nodes do every step).
    const lengths = [150, 60, 110, 80];
    const references = [];
    for (const [i, prompt] of prompts.entries()) references.push((await plain(testbed, prompt, {}, lengths[i])).tokens);
    const loop = new EngineLoop(testbed.target, testbed.target.model.tokenizer, decoderSource(speculativeDecoder(testbed, ['ngram', 'suffix', 'draft'], {})), { kvCompaction: { minFreedCells: 1, freedShare: 0 } });
    const results = await drive(loop, prompts.map((prompt, i) => ({ prompt, options: { maxTokens: lengths[i] } })));
    assert.deepEqual(
      results.map((result) => result.tokens),
      references,
    );
    assert.ok(loop.status().kvCompactions >= 10, `${loop.status().kvCompactions} compactions`);
    assert.deepEqual(loop.kvAudit(), [], 'every request freed its cells, and compaction left none behind');
    loop.dispose();
  });

  test('a costly drafter is asked only when the planner says it pays, and reports every draft to it', async () => {
    const prompt = testbed.target.model.tokenizer.tokenize(testbedPrompts.story);
    const reference = await plain(testbed, prompt, {}, 200);
    const proposals = async (pays: boolean): Promise<{ asked: number; drafted: number; reported: number; steps: number }> => {
      const drafter = new DraftModelDrafter(testbed.draft, {}, { seed: 7, seq: 0 });
      let asked = 0;
      let drafted = 0;
      let reported = 0;
      const counting: Drafter = {
        name: drafter.name,
        costly: true,
        begin: (prompt) => drafter.begin(prompt),
        append: (tokens) => drafter.append(tokens),
        propose: async (root: number, budget: DraftBudget): Promise<TokenTree> => {
          asked++;
          const tree = await drafter.propose(root, budget);
          drafted += tree.draftCount;
          return tree;
        },
        end: () => drafter.end(),
      };
      const planner = Object.assign(new FixedPlanner(budget), {
        costlyDrafterPays: () => pays,
        observeCostlyDraft: (name: string, draft: CostlyDraft) => {
          assert.equal(name, drafter.name);
          assert.ok(draft.ms >= draft.catchUpMs && draft.catchUpMs >= 0, `${draft.ms} ms, ${draft.catchUpMs} catching up`);
          reported += draft.nodes;
        },
      });
      const result = await runSolo(testbed.target, (sampler) => new SpeculativeDecoder(sampler, { drafters: [counting], planner }), prompt, { maxTokens: 200 });
      assert.deepEqual(result.tokens, reference.tokens);
      return { asked, drafted, reported, steps: result.stats.speculation!.steps };
    };
    const always = await proposals(true);
    assert.equal(always.asked, always.steps, 'a drafter that pays is asked every step');
    assert.ok(always.drafted > always.steps, `${always.drafted} nodes drafted in ${always.steps} steps`);
    assert.equal(always.reported, always.drafted, 'every drafted node is reported');
    const never = await proposals(false);
    assert.equal(never.asked, 0);
  });

  test('a draft model says how many tokens it must catch up on before drafting, and counts those its catch-ups took', async () => {
    const prompt = testbed.target.model.tokenizer.tokenize(testbedPrompts.reasoning);
    const drafter = new DraftModelDrafter(testbed.draft, {}, { seed: 7, seq: 0, minPathProbability: 0 });
    drafter.begin(prompt);
    assert.equal(drafter.pendingTokens, prompt.length, 'a new request: the whole prompt');
    const chain = await drafter.propose(prompt[prompt.length - 1], { maxNodes: 4, maxDepth: 4, maxBranches: 1 });
    assert.equal(drafter.catchUpTokens, prompt.length, "the first proposal's catch-up took the prompt");
    const [first, second, third] = chain.pathTo(chain.leaves()[0]);
    // Along the chain the draft KV holds the text already: one decode's worth, the choice it read.
    drafter.append([first, second]);
    assert.equal(drafter.pendingTokens, 1);
    // Text that leaves the chain: the token where it left, then every token since.
    const other = third === 0 ? 1 : 0;
    drafter.append([other, 5, 6]);
    assert.equal(drafter.pendingTokens, 3);
    drafter.end();
  });

  test("a draft model's chains grow while plain steps confirm them one token at a time, and lose one step at a miss", async () => {
    const prompt = testbed.target.model.tokenizer.tokenize(testbedPrompts.reasoning);
    // Chains as deep as the drafter's depth, wherever the draft is unsure.
    const drafter = new DraftModelDrafter(testbed.draft, {}, { seed: 7, seq: 0, minPathProbability: 0 });
    const wide: DraftBudget = { maxNodes: 64, maxDepth: 64, maxBranches: 1 };
    drafter.begin(prompt);
    let root = prompt[prompt.length - 1];
    const depths: number[] = [];
    // Steps that verify nothing emit one token: here always the chain's first, as when the draft is right.
    for (let step = 0; step < 48; step++) {
      const chain = await drafter.propose(root, wide);
      depths.push(chain.maxDepth());
      root = chain.token(chain.children(ROOT)[0]);
      drafter.append([root]);
    }
    assert.ok(Math.max(...depths.slice(-16)) >= 12, `chain depths ${depths.join(' ')}`);
    const before = await drafter.propose(root, wide);
    const wrong = before.token(before.children(ROOT)[0]) === 300 ? 301 : 300;
    drafter.append([wrong]);
    const after = await drafter.propose(wrong, wide);
    drafter.end();
    assert.equal(after.maxDepth(), before.maxDepth() - 4, 'a miss at the first token costs one step of 4, not half the chain');
  });

  test("an exploring step asks a draft model for a chain as deep as the budget, whatever its recent chains were", async () => {
    const prompt = testbed.target.model.tokenizer.tokenize(testbedPrompts.reasoning);
    const drafter = new DraftModelDrafter(testbed.draft, {}, { seed: 7, seq: 0, minPathProbability: 0 });
    const wide: DraftBudget = { maxNodes: 64, maxDepth: 64, maxBranches: 1 };
    drafter.begin(prompt);
    const root = prompt[prompt.length - 1];
    const usual = await drafter.propose(root, wide);
    const explored = await drafter.propose(root, { ...wide, explore: true });
    drafter.end();
    assert.equal(usual.maxDepth(), 4, 'a request starts from 4-token chains');
    assert.equal(explored.maxDepth(), MAX_DRAFT_DEPTH);
    const head = (tree: TokenTree) => [1, 2, 3, 4].map((node) => tree.token(node));
    assert.deepEqual(head(explored), head(usual), 'the same chain, deeper');
  });

  test("the part of a draft model's chain past what the target accepted is not drafted again", async () => {
    const prompt = testbed.target.model.tokenizer.tokenize(testbedPrompts.reasoning);
    const explore: DraftBudget = { maxNodes: 64, maxDepth: 64, maxBranches: 1, explore: true };
    const chainOf = (tree: TokenTree) => Array.from({ length: tree.maxDepth() }, (_, k) => tree.token(k + 1));
    const decodes = () => draftBatcherOf(testbed.draft).stats.decodes;
    const drafter = new DraftModelDrafter(testbed.draft, {}, { seed: 7, seq: 0, minPathProbability: 0 });
    drafter.begin(prompt);
    const first = chainOf(await drafter.propose(prompt[prompt.length - 1], explore));
    assert.equal(first.length, MAX_DRAFT_DEPTH);
    // The plan verified 9 nodes, all accepted, and the bonus token was the chain's 10th.
    const accepted = first.slice(0, 10);
    drafter.append(accepted);
    const before = { decodes: decodes(), nodes: drafter.draftedNodes };
    const second = chainOf(await drafter.propose(accepted[accepted.length - 1], explore));
    const spent = decodes() - before.decodes;
    drafter.end();
    // Its first 14 tokens were drafted already (the last of them, the old chain's end, was never decoded).
    assert.deepEqual(second.slice(0, 14), first.slice(10));
    assert.equal(spent, MAX_DRAFT_DEPTH - 14, 'a decode per new token, none to catch up');
    assert.equal(drafter.draftedNodes - before.nodes, spent, 'only the new nodes are reported drafted (and priced)');
    // The same chain as a drafter that starts from the accepted text.
    const fresh = new DraftModelDrafter(testbed.draft, {}, { seed: 7, seq: 1, minPathProbability: 0 });
    fresh.begin([...prompt, ...accepted]);
    assert.deepEqual(chainOf(await fresh.propose(accepted[accepted.length - 1], explore)), second);
    fresh.end();
  });

  /** The testbed draft's exploring chain on the reasoning prompt, then its chain from the same root with `cut` added to the budget. */
  async function exploredChain(options: DraftModelOptions, cut: Partial<DraftBudget>): Promise<{ full: TokenTree; cut: TokenTree }> {
    const prompt = testbed.target.model.tokenizer.tokenize(testbedPrompts.reasoning);
    const drafter = new DraftModelDrafter(testbed.draft, {}, { seed: 7, seq: 0, ...options });
    const explore: DraftBudget = { maxNodes: 64, maxDepth: 64, maxBranches: 1, explore: true };
    drafter.begin(prompt);
    const root = prompt[prompt.length - 1];
    try {
      return { full: await drafter.propose(root, explore), cut: await drafter.propose(root, { ...explore, ...cut }) };
    } finally {
      drafter.end();
    }
  }

  test("a draft model's chain stops where the budget says a node no longer pays for its verification", async () => {
    const floor = 0.8;
    const { full, cut } = await exploredChain({ minPathProbability: 0 }, { minPathProbability: floor });
    const pathProbabilities = Array.from({ length: full.maxDepth() }, (_, k) => full.score(k + 1));
    const expected = Math.max(1, pathProbabilities.filter((p) => p >= floor).length);
    assert.ok(expected < full.maxDepth(), `the testbed draft's path probabilities ${pathProbabilities.map((p) => p.toFixed(2)).join(' ')} fall below ${floor} within the chain`);
    assert.equal(cut.maxDepth(), expected);
  });

  test("given the planner's acceptance rates, a draft model's chain stops where the target is expected to stop accepting it", async () => {
    const asked: { source: string; depth: number; own: number }[] = [];
    // Every node accepted 9 times in 10: 0.9^6 = 0.53 pays against a floor of 0.5, 0.9^7 = 0.48 does not.
    const acceptance = (source: string, depth: number, own: number) => (asked.push({ source, depth, own }), 0.9);
    const { full, cut } = await exploredChain({}, { minPathProbability: 0.5, acceptance });
    assert.ok(full.maxDepth() > 7, `the draft's own chain runs on (${full.maxDepth()} nodes)`);
    assert.equal(cut.maxDepth(), 6);
    assert.deepEqual(
      asked.map(({ source, depth }) => [source, depth]),
      Array.from({ length: 7 }, (_, k) => ['draft', k + 1]),
    );
    for (const { depth, own } of asked) assert.ok(Math.abs(own - full.score(depth) / full.score(depth - 1)) < 1e-6, 'asked with the chain conditional at that depth');
  });

  test('the suffix history carries across requests', async () => {
    const suffix = new SuffixDrafter();
    const prompt = testbed.target.model.tokenizer.tokenize(testbedPrompts.reasoning);
    const first = await speculative(testbed, ['suffix'], prompt, {}, 300, suffix);
    const second = await speculative(testbed, ['suffix'], prompt, {}, 300, suffix);
    assert.deepEqual(second.tokens, first.tokens);
    assert.ok(second.stats.speculation!.tau > first.stats.speculation!.tau + 1, 'the repeated answer is drafted from history');
  });
});

/** Two-sample chi-square statistic over the categories seen in either sample. */
function chiSquare(a: Map<string, number>, b: Map<string, number>, na: number, nb: number): { statistic: number; df: number } {
  let statistic = 0;
  let df = -1;
  for (const key of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(key) ?? 0;
    const y = b.get(key) ?? 0;
    const total = x + y;
    const ea = (total * na) / (na + nb);
    const eb = (total * nb) / (na + nb);
    statistic += (x - ea) ** 2 / ea + (y - eb) ** 2 / eb;
    df++;
  }
  return { statistic, df };
}

/** Upper 0.1% point of chi-square (Wilson–Hilferty): a false alarm once in a thousand seeds. */
function critical(df: number): number {
  const z = 3.09;
  return df * (1 - 2 / (9 * df) + z * Math.sqrt(2 / (9 * df))) ** 3;
}

describe('sampled speculative decoding follows the plain sampling distribution', () => {
  // The trained pair: peaked target distributions that the draft model only approximates, so a
  // biased acceptance rule would show. A small effective vocabulary (top-k 3) lets every outcome
  // be seen often.
  let pair: Rig;
  before(async () => (pair = await rig(testbedTarget, testbedDraft)));
  after(() => disposeRig(pair));

  const sampling = (seed: number, temperature: number): SamplingOptions => ({ temperature, topK: 3, topP: 1, minP: 0, seed });
  const runs = 400;
  const length = 3;

  async function outcomes(kinds: DrafterKind[] | 'plain', seedOffset: number, temperature = 1): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    const prompt = pair.target.model.tokenizer.tokenize(samplingPrompt);
    for (let i = 0; i < runs; i++) {
      const options = sampling(seedOffset + i, temperature);
      const result = kinds === 'plain' ? await plain(pair, prompt, options, length) : await speculative(pair, kinds, prompt, options, length);
      const key = result.tokens.join(',');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    return counts;
  }

  test('draft model with rejection sampling: chi-square against plain sampling', async () => {
    const reference = await outcomes('plain', 1_000_000);
    const result = await outcomes(['draft'], 2_000_000);
    const { statistic, df } = chiSquare(reference, result, runs, runs);
    assert.ok(df >= 3, `enough distinct outcomes (${df + 1})`);
    assert.ok(statistic < critical(df), `chi-square ${statistic.toFixed(1)} < ${critical(df).toFixed(1)} (df ${df})`);
  });

  test('all drafters (sample-and-match + rejection sampling): chi-square against plain sampling', async () => {
    const reference = await outcomes('plain', 3_000_000);
    const result = await outcomes(['ngram', 'suffix', 'draft'], 4_000_000);
    const { statistic, df } = chiSquare(reference, result, runs, runs);
    assert.ok(statistic < critical(df), `chi-square ${statistic.toFixed(1)} < ${critical(df).toFixed(1)} (df ${df})`);
  });

  test('the test is sensitive: a biased sampler is rejected', async () => {
    const reference = await outcomes('plain', 5_000_000);
    const biased = await outcomes('plain', 6_000_000, 0.25);
    const { statistic, df } = chiSquare(reference, biased, runs, runs);
    assert.ok(statistic > critical(df), `a different temperature is detected (chi-square ${statistic.toFixed(1)})`);
  });
});

describe('greedy speculative decoding on a seeded random-weight model', () => {
  test('every drafter matches plain decoding', async () => {
    const random = await rig(await tinyModelPath(1), await tinyModelPath(2));
    const prompt = random.target.model.tokenizer.tokenize('the cat sat on the mat and the dog');
    const reference = await plain(random, prompt, {}, 100);
    for (const kinds of configurations) {
      const result = await speculative(random, kinds, prompt, {}, 100);
      assert.deepEqual(result.tokens, reference.tokens, kinds.join('+'));
    }
    disposeRig(random);
  });
});
