import { plausibleCurve } from '../src/speculative/cost-curve.js';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  acceptanceKey,
  AcceptanceStats,
  CostCurve,
  calibratedScores,
  chooseTreeSize,
  expectedTokens,
  LayeredRecords,
  observeVerification,
  planTree,
  type WalkProgress,
} from '../src/speculative/cost-model.js';
import { AdaptivePlanner } from '../src/speculative/planner.js';
import { CostlyDrafts } from '../src/speculative/costly-drafts.js';
import type { DecodedStep } from '../src/generate/decoder.js';
import { RealizedJudge, SharedStepJudges } from '../src/speculative/realized.js';
import { SharedStepCosts } from '../src/speculative/shared-step-costs.js';
import { ROOT, TokenTree, type Drafter } from '../src/speculative/tree.js';
import { unionTrees } from '../src/speculative/combine.js';
import { pathNodes } from './helpers/trees.js';
import { SpeculativeDecoder, type SharedBatch } from '../src/speculative/decoder.js';
import { Sampler } from '../src/generate/sampling.js';

/** A decode of one sequence alone, `tokens` tokens. */
const alone = (tokens: number): DecodedStep => ({ index: -1, tokens, decodingTokens: tokens, sequences: 1 });

const close = (a: number, b: number, tolerance = 1e-9): boolean => Math.abs(a - b) <= tolerance;
/** Room for a whole 64-node tree with up to 4 branches. */
const LIMITS = { maxNodes: 64, maxLeaves: 4 };

/** A chain whose k-th node scores alpha^k. */
function chain(alpha: number, length: number): TokenTree {
  const tree = new TokenTree(0);
  tree.addPath(
    Array.from({ length }, (_, k) => k + 1),
    Array.from({ length }, (_, k) => alpha ** (k + 1)),
    'ngram',
  );
  return tree;
}

describe('CostCurve', () => {
  it('normalizes by t(1), interpolates linearly, keeps the dips the kernels have and extrapolates per token', () => {
    // Embedded m on 2 threads (median of 3 rounds): a batch of 8 costs less than one of 6.
    const curve = new CostCurve([
      { n: 1, seconds: 0.016 },
      { n: 6, seconds: 0.016 * 5.55 },
      { n: 8, seconds: 0.016 * 4.24 },
      { n: 16, seconds: 0.016 * 6.09 },
      { n: 32, seconds: 0.016 * 11.95 },
    ]);
    assert.equal(curve.cost(1), 1);
    assert.ok(close(curve.cost(6), 5.55));
    assert.ok(close(curve.cost(8), 4.24), 'the dip is kept');
    assert.ok(close(curve.cost(7), (5.55 + 4.24) / 2));
    assert.ok(close(curve.cost(12), (4.24 + 6.09) / 2));
    assert.ok(close(curve.cost(64), 2 * 11.95), 'beyond the largest size, at its cost per token');
    assert.ok(close(curve.cheapestFrom(6, 33), 4.24), 'a batch of 6 filled up to 8 costs c(8)');
    assert.ok(close(curve.cheapestFrom(9, 33), curve.cost(9)));
  });

  it('a plan verifies 7 drafted nodes rather than 5 where a batch of 8 costs less than one of 6', () => {
    const curve = new CostCurve([
      { n: 1, seconds: 1 },
      { n: 6, seconds: 5.55 },
      { n: 7, seconds: 5.8 },
      { n: 8, seconds: 4.24 },
      { n: 9, seconds: 4.9 },
    ]);
    // A chain whose every node is accepted with probability 0.95.
    const scores = Array.from({ length: 8 }, (_, k) => 0.95 ** (k + 1));
    assert.equal(chooseTreeSize(scores, curve).size, 7);
  });

  it('one slow outlier at a small size does not raise every larger size', () => {
    const curve = new CostCurve([
      { n: 1, seconds: 1 },
      { n: 2, seconds: 3.6 }, // a scheduler hiccup
      { n: 4, seconds: 1.3 },
      { n: 8, seconds: 1.6 },
      { n: 16, seconds: 2.4 },
    ]);
    assert.ok(curve.cost(8) < 2.2, `cost(8) = ${curve.cost(8)}`);
    assert.ok(close(curve.cost(16), 2.4));
  });

  it('averages repeated sizes and is flat below the smallest size', () => {
    const curve = new CostCurve([
      { n: 2, seconds: 1 },
      { n: 2, seconds: 3 },
      { n: 4, seconds: 4 },
    ]);
    assert.equal(curve.cost(1), 1);
    assert.equal(curve.cost(4), 2);
    assert.throws(() => new CostCurve([]), RangeError);
  });
});

describe('expectedTokens', () => {
  it('matches Leviathan et al. (1 - a^(g+1)) / (1 - a) on a chain', () => {
    for (const alpha of [0.3, 0.7, 0.9]) {
      for (const gamma of [1, 4, 10]) {
        assert.ok(close(expectedTokens(chain(alpha, gamma)), (1 - alpha ** (gamma + 1)) / (1 - alpha)));
      }
    }
  });
});

describe('chooseTreeSize', () => {
  it('picks plain decoding when acceptance is tiny', () => {
    const scores = Array.from({ length: 64 }, (_, k) => 0.02 ** (k + 1));
    const choice = chooseTreeSize(scores, CostCurve.linear(0.05));
    assert.equal(choice.size, 0);
    assert.equal(choice.speedup, 1);
  });

  it('picks a large tree when acceptance is ~1 and verification cost is flat', () => {
    const scores = Array.from({ length: 64 }, (_, k) => 0.999 ** (k + 1));
    const choice = chooseTreeSize(scores, CostCurve.flat());
    assert.equal(choice.size, 64);
    assert.ok(choice.speedup > 50);
  });

  it('maximizes expected tokens per cost (brute force), draft cost included', () => {
    const scores = Array.from({ length: 40 }, (_, k) => 0.8 ** (k + 1));
    const curve = CostCurve.linear(0.04);
    const extraCost = (n: number): number => 0.05 + 0.01 * n;
    const choice = chooseTreeSize(scores, curve, extraCost);
    let best = { size: 0, speedup: 1 };
    for (let n = 1; n <= 40; n++) {
      const tokens = 1 + scores.slice(0, n).reduce((a, b) => a + b, 0);
      const speedup = tokens / (curve.cost(n + 1) + extraCost(n));
      if (speedup > best.speedup) best = { size: n, speedup };
    }
    assert.equal(choice.size, best.size);
    assert.ok(close(choice.speedup, best.speedup));
    assert.ok(choice.size > 1 && choice.size < 40, `an interior optimum, got ${choice.size}`);
  });

  it('returns 0 when drafting alone costs more than it can gain', () => {
    const scores = [0.5, 0.25];
    assert.equal(chooseTreeSize(scores, CostCurve.flat(), 1).size, 0);
  });
});

describe('AcceptanceStats', () => {
  it('layered: a sequence\'s own record starts from the shared rate and takes over; both learn', () => {
    const shared = new AcceptanceStats();
    for (let k = 0; k < 100; k++) shared.observe('suffix', 1, true);
    const layered = new LayeredRecords(shared, new AcceptanceStats({ priorWeight: 4 }));
    assert.equal(layered.rate('suffix', 1), shared.rate('suffix', 1), 'no record of its own: the shared rate');
    for (let k = 0; k < 12; k++) layered.observe('suffix', 1, false);
    assert.ok(layered.rate('suffix', 1) < 0.3, `its own misses outweigh the shared record (${layered.rate('suffix', 1)})`);
    assert.ok(shared.rate('suffix', 1) > 0.7, 'which learnt them too, among its many successes');
    assert.equal(layered.rate('ngram', 1, 0.3), 0.3, 'a key no one has a record of: the prior');
  });

  it('starts at the prior, converges to the observed rate, and tracks changes (decay)', () => {
    const stats = new AcceptanceStats({ priorRate: 0.5, priorWeight: 2, decay: 0.95 });
    assert.equal(stats.rate('ngram', 1), 0.5);
    for (let k = 0; k < 400; k++) stats.observe('ngram', 1, k % 10 < 9);
    // Effective window ~20 observations, ending on a failure: about 0.84.
    assert.ok(Math.abs(stats.rate('ngram', 1) - 0.9) < 0.08, `rate ${stats.rate('ngram', 1)}`);
    assert.equal(stats.rate('ngram', 2), stats.rate('ngram', 1), 'a depth without data inherits the rate above it');
    for (let k = 0; k < 400; k++) stats.observe('ngram', 2, false);
    assert.ok(stats.rate('ngram', 2) < 0.1 && stats.rate('ngram', 1) > 0.8, 'depths with data are separate');
    assert.equal(stats.rate('suffix', 1), 0.5, 'drafters are separate');
    for (let k = 0; k < 100; k++) stats.observe('ngram', 1, false);
    assert.ok(stats.rate('ngram', 1) < 0.1, 'old successes decay away (the prior alone keeps ~1/22)');
  });

  it('observeVerification scores every child of a reached node, keyed by drafter and own confidence', () => {
    const tree = new TokenTree(0);
    const [a, b] = tree.addPath([1, 2], [0.9, 0.8], 'ngram'); // own conditionals 0.9 and 0.89
    tree.addPath([3], [0.5], 'suffix'); // own 0.5
    tree.addChild(a, 4, 0.3, 'suffix'); // own 0.33
    const stats = new AcceptanceStats({ priorWeight: 1e-9, decay: 1 });
    observeVerification(stats, tree, [a]);
    assert.ok(close(stats.rate(acceptanceKey('ngram', 0.9), 1), 1, 1e-6));
    assert.ok(close(stats.rate(acceptanceKey('suffix', 0.5), 1), 0, 1e-6));
    assert.ok(close(stats.rate(acceptanceKey('ngram', 0.8 / 0.9), 2), 0, 1e-6), 'walk stopped before node 2');
    assert.ok(close(stats.rate(acceptanceKey('suffix', 0.3 / 0.9), 2), 0, 1e-6));
    assert.notEqual(acceptanceKey('suffix', 1), acceptanceKey('suffix', 0.5), 'confident drafts are learnt apart');
    assert.ok(b > a);
  });

  it('observeVerification of a walk reported in parts, as it goes, learns what the whole walk teaches', () => {
    const tree = new TokenTree(0);
    const [a, b, c] = tree.addPath([1, 2, 3, 4], [0.95, 0.9, 0.6, 0.3], 'suffix');
    tree.addChild(ROOT, 5, 0.5, 'ngram');
    tree.addChild(a, 6, 0.4, 'ngram');
    tree.addChild(c, 7, 0.2, 'ngram');
    const whole = new AcceptanceStats({ decay: 1 });
    observeVerification(whole, tree, [a, b, c]);
    const parts = new AcceptanceStats({ decay: 1 });
    observeVerification(parts, tree, [a], { settled: 0, ended: false });
    const early = calibratedScores(tree, parts);
    observeVerification(parts, tree, [a, b], { settled: 1, ended: false });
    observeVerification(parts, tree, [a, b, c], { settled: 2, ended: true });
    assert.deepEqual(calibratedScores(tree, parts), calibratedScores(tree, whole));
    assert.ok(early[a] > calibratedScores(tree, new AcceptanceStats({ decay: 1 }))[a], 'the first node passed is learnt at once');
  });

  it('calibratedScores are path products of rates, never above the parent, summing to <= 1 per node', () => {
    const tree = new TokenTree(0);
    const [x, x2] = tree.addPath([1, 2, 3], [0.95, 0.5, 0.4], 'ngram');
    const [z] = tree.addPath([4], [0.95], 'ngram');
    const [y] = tree.addPath([6, 5], [0.95, 0.1], 'suffix');
    const scores = calibratedScores(tree, new AcceptanceStats());
    assert.equal(scores[ROOT], 1);
    // Root: children 1, 4 and 6 are 95% sure, and start from that bucket's prior 0.8; together
    // 2.4 > 1, so in order (ties broken by child order) the first keeps 0.8, the next is capped
    // at what is left, 0.2, and the last gets nothing.
    assert.ok(close(scores[x], 0.8));
    assert.ok(close(scores[z], 0.2));
    assert.ok(close(scores[y], 0));
    // Node 2 is 0.5/0.95 ≈ 53% sure given node 1: prior 0.4 of the 40% bucket, times its parent's score.
    assert.ok(close(scores[x2], 0.8 * 0.4));
    for (let i = 1; i < tree.size; i++) assert.ok(scores[i] <= scores[tree.parent(i)] + 1e-12);
    for (let i = 0; i < tree.size; i++) {
      const sum = tree.children(i).reduce((acc, c) => acc + scores[c], 0);
      assert.ok(sum <= scores[i] + 1e-12);
    }
  });
});

describe('evidence', () => {
  it('learns acceptance per evidence class: a long match is trusted, a short one with the same confidence is not', () => {
    const stats = new AcceptanceStats();
    for (let k = 0; k < 50; k++) {
      const tree = new TokenTree(0);
      const long = tree.addChild(ROOT, 1, 1, 'suffix', 40);
      tree.addChild(ROOT, 2, 1, 'suffix', 2);
      observeVerification(stats, tree, [long]);
    }
    const tree = new TokenTree(0);
    const long = tree.addChild(ROOT, 1, 1, 'suffix', 40);
    const short = tree.addChild(ROOT, 2, 1, 'suffix', 2);
    const scores = calibratedScores(tree, stats);
    assert.ok(scores[long] > 0.9, `long match ${scores[long]}`);
    assert.ok(scores[short] < 0.1, `short match ${scores[short]}`);
  });

  it('an evidence class without data starts from its drafter and confidence rate', () => {
    const stats = new AcceptanceStats();
    for (let k = 0; k < 50; k++) {
      const tree = new TokenTree(0);
      observeVerification(stats, tree, [tree.addChild(ROOT, 1, 1, 'suffix', 10)]);
    }
    const tree = new TokenTree(0);
    const unseen = tree.addChild(ROOT, 1, 1, 'suffix', 100);
    assert.ok(calibratedScores(tree, stats)[unseen] > 0.9);
  });

  it('learns nodes that several drafters agree on apart from those one drafter proposes alone', () => {
    const stats = new AcceptanceStats();
    // The draft model and the n-gram agree and are right; the n-gram alone is wrong; the suffix
    // drafter alone is right.
    for (let k = 0; k < 50; k++) {
      const tree = new TokenTree(0);
      const agreed = tree.addChild(ROOT, 1, 0.95, 'draft');
      tree.addChild(ROOT, 1, 0.95, 'ngram');
      tree.addChild(ROOT, 2, 0.95, 'ngram');
      observeVerification(stats, tree, [agreed]);
      const suffixAlone = new TokenTree(0);
      observeVerification(stats, suffixAlone, [suffixAlone.addChild(ROOT, 3, 0.95, 'suffix')]);
    }
    const tree = new TokenTree(0);
    const alone = tree.addChild(ROOT, 2, 0.95, 'ngram');
    const scores = calibratedScores(tree, stats);
    assert.ok(scores[alone] < 0.1, `the n-gram alone keeps its own record (${scores[alone]}), not the agreement's`);
    const both = new TokenTree(0);
    const agreed = both.addChild(ROOT, 1, 0.95, 'ngram');
    both.addChild(ROOT, 1, 0.95, 'draft');
    assert.ok(calibratedScores(both, stats)[agreed] > 0.9, 'the agreement keeps its record, whatever the drafters\' order');
    const unseen = new TokenTree(0);
    const newSet = unseen.addChild(ROOT, 3, 0.95, 'suffix');
    unseen.addChild(ROOT, 3, 0.95, 'draft');
    assert.ok(calibratedScores(unseen, stats)[newSet] > 0.9, 'a set without a record starts from its best member\'s');
  });

  it('learns a node another drafter contests apart from the same drafter\'s undisputed nodes', () => {
    // Long generation that loops with a counter: the suffix drafter, sure of the round it matched,
    // is right wherever no one disputes it and wrong where the n-gram drafter offers other values.
    const stats = new AcceptanceStats();
    const unionOf = (contestedStep: boolean) => {
      const suffix = new TokenTree(0);
      suffix.addPath([1, 2], [1, 1], 'suffix');
      const ngram = new TokenTree(0);
      ngram.addPath(contestedStep ? [1, 3] : [1], contestedStep ? [1, 0.5] : [1], 'ngram');
      return unionTrees([suffix, ngram]);
    };
    for (let k = 0; k < 50; k++) {
      const undisputed = unionOf(false);
      observeVerification(stats, undisputed, pathNodes(undisputed, [1, 2]));
      const disputed = unionOf(true);
      observeVerification(stats, disputed, pathNodes(disputed, [1]));
    }
    const undisputed = unionOf(false);
    const disputed = unionOf(true);
    const sure = calibratedScores(undisputed, stats)[pathNodes(undisputed, [1, 2])[1]];
    const unsure = calibratedScores(disputed, stats)[pathNodes(disputed, [1, 2])[1]];
    assert.ok(sure > 0.9, `the suffix drafter's undisputed node keeps its record (${sure})`);
    assert.ok(unsure < 0.2, `its disputed node learns its own (${unsure})`);
    const fresh = unionOf(true);
    const prior = calibratedScores(fresh, new AcceptanceStats())[pathNodes(fresh, [1, 2])[1]];
    const priorUndisputed = calibratedScores(unionOf(false), new AcceptanceStats())[pathNodes(unionOf(false), [1, 2])[1]];
    assert.equal(prior, priorUndisputed, 'without a record a disputed node starts from the undisputed one\'s');
  });

  it('merging keeps the evidence of each source', () => {
    const tree = new TokenTree(0);
    const node = tree.addChild(ROOT, 1, 0.5, 'ngram', 3);
    tree.addChild(ROOT, 1, 0.9, 'suffix', 12);
    tree.addChild(ROOT, 1, 0.9, 'suffix', 8);
    assert.equal(tree.evidence(node, 'ngram'), 3);
    assert.equal(tree.evidence(node, 'suffix'), 12);
    assert.equal(tree.evidence(node, 'draft'), 0);
    assert.equal(tree.subtree([node]).evidence(1, 'suffix'), 12);
  });
});

describe('planTree', () => {
  it('prunes to nothing when the drafters are never accepted, and keeps the tree when they always are', () => {
    const tree = chain(0.9, 20);
    const bad = new AcceptanceStats();
    const good = new AcceptanceStats();
    for (let k = 0; k < 500; k++) {
      for (let depth = 1; depth <= 20; depth++) {
        bad.observe(acceptanceKey('ngram', 0.9), depth, false);
        good.observe(acceptanceKey('ngram', 0.9), depth, true);
      }
    }
    const curve = CostCurve.linear(0.05);
    assert.equal(planTree(tree, bad, curve).tree.draftCount, 0);
    const plan = planTree(tree, good, curve);
    assert.equal(plan.size, 20);
    assert.equal(plan.tree.draftCount, 20);
    assert.ok(plan.speedup > 10);
    assert.ok(close(plan.expectedTokens, expectedTokens(plan.tree, plan.scores)));
  });
  it('cuts a tree larger than its limits by calibrated acceptance, not by the drafters\' own scores', () => {
    const plan = planTree(unsureNgramBesideDraftChain(0), recordsOfNgramAndDraft(new AcceptanceStats()), CostCurve.linear(0.05), 0, { maxNodes: 16, maxLeaves: 4 });
    assert.equal(plan.size, 12, 'the whole draft chain, within 16 nodes');
    assert.deepEqual([...plan.tree.sources(1)], ['draft']);
  });
});

/** Records that say the n-gram's sure-looking first tokens fail and the draft model's chains hold. */
function recordsOfNgramAndDraft(stats: AcceptanceStats): AcceptanceStats {
  for (let k = 0; k < 200; k++) {
    stats.observe(acceptanceKey('ngram', 1), 1, false);
    for (let depth = 1; depth <= 12; depth++) stats.observe(acceptanceKey('draft', 0.9), depth, true);
  }
  return stats;
}

/** 40 n-gram nodes the n-gram is sure of (own score 1) beside a 12-token draft-model chain. */
function unsureNgramBesideDraftChain(root: number, only?: 'ngram' | 'draft'): TokenTree {
  const tree = new TokenTree(root);
  if (only !== 'draft') tree.addPath(Array.from({ length: 40 }, (_, k) => 100 + k), Array(40).fill(1), 'ngram');
  if (only !== 'ngram') tree.addPath(Array.from({ length: 12 }, (_, k) => 200 + k), Array.from({ length: 12 }, (_, k) => 0.9 ** (k + 1)), 'draft');
  return tree;
}

describe('SpeculativeDecoder', () => {
  it('hands the planner every drafter\'s whole proposal: sure-looking n-gram nodes do not crowd out a right draft chain', async () => {
    const planner = new AdaptivePlanner({ curve: CostCurve.linear(0.05) });
    recordsOfNgramAndDraft(planner.stats);
    acceptedRun(planner, 16);
    const stub = (name: 'ngram' | 'draft'): Drafter => ({
      name,
      costly: name === 'draft',
      begin() {},
      append() {},
      end() {},
      propose: (root) => unsureNgramBesideDraftChain(root, name),
    });
    const decoder = new SpeculativeDecoder(new Sampler({ temperature: 0 }), { drafters: [stub('ngram'), stub('draft')], planner });
    const tree = await decoder.propose([7], { room: 100, maxNodes: 17, maxBranches: 4, batchTokens: 0, sequences: 1, step: 0 });
    assert.equal(tree.draftCount, 12, 'the draft chain is verified whole');
    assert.deepEqual([...tree.sources(1)], ['draft']);
  });

  it('follows every unverified draft in the shadow of plain steps, also those made while earlier ones are followed', async () => {
    // The text plain decoding writes is 10, 11, 12, …; at each step the drafter proposes the next
    // 4 tokens, wrong from the first on every fifth step. Nothing is verified.
    const text = (k: number) => 10 + k;
    const draftedAt = new WeakMap<TokenTree, number>();
    const observed: { step: number; accepted: number; settled: number; ended: boolean }[] = [];
    let step = 0;
    const planner = {
      budget: () => ({ maxNodes: 4, maxDepth: 4, maxBranches: 1 }),
      plan: (tree: TokenTree) => tree.prune(0),
      observe: (tree: TokenTree, accepted: readonly number[], walk?: WalkProgress) =>
        observed.push({ step: draftedAt.get(tree)!, accepted: accepted.length, settled: walk?.settled ?? 0, ended: walk?.ended ?? true }),
    };
    const chain = (k: number): TokenTree => {
      const tree = new TokenTree(text(k));
      tree.addPath(Array.from({ length: 4 }, (_, d) => (k % 5 === 4 && d === 0 ? 99 : text(k + 1 + d))), [0.9, 0.8, 0.7, 0.6], 'suffix');
      draftedAt.set(tree, k);
      return tree;
    };
    const drafter: Drafter = { name: 'suffix', begin() {}, append() {}, end() {}, propose: () => chain(step) };
    const decoder = new SpeculativeDecoder(new Sampler({ temperature: 0 }), { drafters: [drafter], planner });
    const logits = (token: number) => Float32Array.from({ length: 128 }, (_, t) => (t === token ? 1 : 0));
    const sequence = [text(0)];
    for (; step < 20; step++) {
      const tree = await decoder.propose(sequence, { room: 100, maxNodes: 64, maxBranches: 4, batchTokens: 0, sequences: 1, step });
      assert.equal(tree.draftCount, 0);
      sequence.push(...decoder.accept(tree, () => logits(text(step + 1)), sequence).tokens);
    }
    // A right chain drafted at step k is confirmed whole at step k + 3, a wrong one at once; the
    // right chains of steps 17 and 18 are still being followed.
    const ended = observed.filter((o) => o.ended).map(({ step, accepted }) => ({ step, accepted }));
    const expected = [...Array.from({ length: 17 }, (_, k) => k), 19].map((k) => ({ step: k, accepted: k % 5 === 4 ? 0 : 4 }));
    assert.deepEqual(ended.sort((a, b) => a.step - b.step), expected);
    // Meanwhile each node is reported as plain decoding passes it, not when the walk ends.
    const following = (k: number) => observed.filter((o) => o.step === k && !o.ended).map(({ accepted, settled }) => ({ accepted, settled }));
    assert.deepEqual(following(17), [{ accepted: 1, settled: 0 }, { accepted: 2, settled: 1 }, { accepted: 3, settled: 2 }]);
    assert.deepEqual(following(18), [{ accepted: 1, settled: 0 }, { accepted: 2, settled: 1 }]);
    assert.deepEqual(observed.find((o) => o.step === 16 && o.ended), { step: 16, accepted: 4, settled: 3, ended: true });
  });
});

/** A suffix-drafted chain of `length` sure tokens resting on a long match. */
function sureChain(length: number): TokenTree {
  const tree = new TokenTree(0);
  let node = ROOT;
  for (let k = 1; k <= length; k++) node = tree.addChild(node, k, 1, 'suffix', 20 + k);
  return tree;
}

/** A sequence that has had a sure chain of `length` accepted whole: its plans may go twice as deep (AdaptivePlanner.planCap). */
function acceptedRun(planner: AdaptivePlanner, length: number): void {
  planner.observe(sureChain(length), Array.from({ length }, (_, k) => k + 1));
}

/** Plans and verifies `steps` sure chains; every drafted node is accepted. Returns the last plan's size. */
function feed(planner: AdaptivePlanner, steps: number, onStep: (size: number) => void = () => {}): number {
  let size = 0;
  for (let step = 0; step < steps; step++) {
    const plan = planner.plan(sureChain(16), LIMITS);
    planner.observe(plan, Array.from({ length: plan.draftCount }, (_, k) => k + 1));
    size = plan.draftCount;
    onStep(plan.size);
  }
  return size;
}

describe('AdaptivePlanner', () => {
  it('learns that sure chains go on: it verifies deep chains, not one node at a time', () => {
    const planner = new AdaptivePlanner({ curve: CostCurve.linear(0.3) });
    assert.ok(feed(planner, 40) >= 12, 'deep nodes inherit the rate of the depth above until they have data');
  });

  it('a sequence whose text the shared records overrate plans by its own record, and a new sequence by the shared one', () => {
    const learnt = new AdaptivePlanner({ curve: CostCurve.linear(0.3) });
    feed(learnt, 40);
    const overrated = learnt.forSequence();
    for (let step = 0; step < 4; step++) overrated.observe(overrated.plan(sureChain(16), LIMITS), [1]);
    const fresh = learnt.forSequence();
    const overratedSize = overrated.plan(sureChain(16), LIMITS).draftCount;
    const freshSize = fresh.plan(sureChain(16), LIMITS).draftCount;
    assert.ok(overratedSize < freshSize, `the sequence whose chains broke after one node plans ${overratedSize} nodes, a new one ${freshSize}`);
  });

  it('a new sequence verifies at most 8 nodes, however sure the shared records are, and doubles its plans as its own drafts are accepted', () => {
    const learnt = new AdaptivePlanner({ curve: CostCurve.linear(0.05) });
    feed(learnt, 40);
    const fresh = learnt.forSequence();
    const sizes: number[] = [];
    for (let step = 0; step < 5; step++) {
      const plan = fresh.plan(sureChain(48), { maxNodes: 48, maxLeaves: 4 });
      sizes.push(plan.draftCount);
      fresh.observe(plan, Array.from({ length: plan.draftCount }, (_, k) => k + 1));
    }
    assert.deepEqual(sizes, [8, 16, 32, 48, 48]);
    // A run that breaks early brings the plans back down (to twice the longest recent run).
    const broken = learnt.forSequence();
    broken.observe(broken.plan(sureChain(48), { maxNodes: 48, maxLeaves: 4 }), [1, 2, 3]);
    assert.equal(broken.plan(sureChain(48), { maxNodes: 48, maxLeaves: 4 }).draftCount, 8);
  });

  it('stops verifying trees when they cost far more in place than the curve says', () => {
    const planner = new AdaptivePlanner({ curve: CostCurve.linear(0.3) });
    for (let k = 0; k < 16; k++) planner.observeDecode(alone(1), 1);
    let verified = 0;
    feed(planner, 60, (size) => {
      planner.observeDecode(alone(size), size === 1 ? 1 : 10 * size);
      verified = size;
    });
    assert.ok(verified <= 2, `at most a probe once the costs are known (last batch ${verified})`);
  });

  it('charges plans for the slow single-token decode that follows a tree, and keeps it out of the single-decode time', () => {
    const planner = new AdaptivePlanner({ curve: CostCurve.linear(0.3) });
    for (let k = 0; k < 16; k++) planner.observeDecode(alone(1), 1);
    let verified = 0;
    feed(planner, 60, (size) => {
      // Trees cost exactly what the curve says, but the decode after each one costs 30 plain decodes.
      planner.observeDecode(alone(size), size === 1 ? 1 : 1 + 0.3 * (size - 1));
      if (size > 1) planner.observeDecode(alone(1), 30);
      verified = size;
    });
    assert.ok(verified <= 2, `at most a probe once the cost of coming back is known (last batch ${verified})`);
    assert.ok(close(planner.acceptedTokenValueMs()!, 1 - 0.3), 'the single-decode time stays that of settled decodes');
  });

  it('expects accepted tokens only from the part of a tree worth verifying', () => {
    const planner = plannerAfterPlans(CostCurve.linear(0.3), 0.3);
    assert.ok(planner.expectedAccepted(sureChain(16)) > 8, 'sure chains are verified and pay');
    // A 60-node chain whose every node is accepted 9 times in 10: about 9 tokens in all, most of
    // them deep, where verifying costs more than they bring.
    const likely = chain(0.5, 60);
    let seed = 1;
    for (let k = 0; k < 400; k++) {
      let accepted = 0;
      while (accepted < 60 && ((seed = (seed * 48271) % 2147483647) % 10) !== 0) accepted++;
      planner.observe(likely, Array.from({ length: accepted }, (_, i) => i + 1));
    }
    const whole = expectedTokens(likely, calibratedScores(likely, planner.stats)) - 1;
    assert.ok(whole >= 8, `the whole chain expects ${whole}`);
    assert.ok(planner.expectedAccepted(likely) < 8, `its plan expects ${planner.expectedAccepted(likely)}`);
  });

  it("expects of cheap drafts the share of their promise that the sequence's own cheap plans lately kept", () => {
    const learnt = new AdaptivePlanner({ curve: CostCurve.linear(0.3) });
    feed(learnt, 40);
    const full = learnt.forSequence().expectedAccepted(sureChain(16));
    /** A sequence whose verified plans, drafted as `drafting`, each gave a quarter of their nodes. */
    const underDelivering = (drafting: 'cheap' | 'costly') => {
      const sequence = learnt.forSequence();
      for (let step = 0; step < 6; step++) {
        const plan = sequence.plan(sureChain(16), LIMITS, undefined, drafting);
        sequence.observeStep(1 + plan.draftCount / 4, 1, drafting);
      }
      return sequence;
    };
    const cheap = underDelivering('cheap').expectedAccepted(sureChain(16));
    assert.ok(full > 8 && cheap < full / 2, `cheap plans that kept a quarter of their promise: ${cheap} expected, against ${full}`);
    assert.equal(underDelivering('costly').expectedAccepted(sureChain(16)), full, 'plans with a draft model in them say nothing of cheap drafts');
    assert.equal(learnt.forSequence().expectedAccepted(sureChain(16)), full, "a new sequence starts from the records' promise");
  });

  it('values an accepted token at a plain decode minus its marginal verify cost', () => {
    const planner = new AdaptivePlanner({ curve: CostCurve.linear(0.25) });
    assert.equal(planner.acceptedTokenValueMs(), undefined);
    for (let k = 0; k < 5; k++) planner.observeDecode(alone(1), 2);
    assert.ok(close(planner.acceptedTokenValueMs()!, 1.5));
  });
});

describe('CostlyDrafts', () => {
  /** A record of 64-node drafts at `msPerNode`, `accepted` nodes of each emitted by plain decoding. */
  function drafts(msPerNode: number, nodes: number, accepted: number): CostlyDrafts {
    const record = new CostlyDrafts();
    for (let k = 0; k < 20; k++) {
      // Asked every step, a draft model catches up in the decode that gives its first node.
      record.observeDraft('draft', { ms: msPerNode * nodes, catchUpMs: msPerNode, nodes });
      for (let i = 0; i < accepted; i++) record.observeAccepted('draft');
    }
    return record;
  }

  it('prices a drafter per node drafted, not per node verified', () => {
    // An accepted token saves 0.17 ms, a drafted node costs 0.1 ms. Ten sure nodes pay; the same
    // ten at the head of a 64-node chain do not (the old price, per verified node, said they did).
    assert.equal(drafts(0.1, 10, 10).pays('draft', 0.17, 1), true);
    assert.equal(drafts(0.1, 64, 10).pays('draft', 0.17, 1), false);
    // On a large target a token saves 30 ms: the long chain pays easily.
    assert.equal(drafts(1.5, 64, 10).pays('draft', 30, 1), true);
  });

  it('prices a node at a draft decode, not at the catch-up of a drafter asked rarely', () => {
    const record = new CostlyDrafts();
    // 8-node chains: 0.1 ms per decode, but each first caught up on 200 tokens in 5 ms.
    for (let k = 0; k < 20; k++) {
      record.observeDraft('draft', { ms: 5 + 7 * 0.1, catchUpMs: 5, nodes: 8 });
      for (let i = 0; i < 6; i++) record.observeAccepted('draft');
    }
    assert.equal(record.pays('draft', 0.17, 1), true);
  });

  it('restarts a drafter after a gap only where what its drafts give repays the catch-up', () => {
    /** 8-node drafts, 4 nodes of each emitted; the last first caught up on 300 tokens at `msPerToken`. */
    const restarted = (msPerToken: number): CostlyDrafts => {
      const record = drafts(0.4, 8, 4);
      record.observeDraft('draft', { ms: 300 * msPerToken + 7 * 0.4, catchUpMs: 300 * msPerToken, catchUpTokens: 300, nodes: 8 });
      for (let i = 0; i < 4; i++) record.observeAccepted('draft');
      return record;
    };
    // The tiny testbed on a CPU (measured: a token saves 1.3 ms, a catch-up costs 0.06 ms a
    // token). Caught up step by step, the drafter pays; 600 tokens behind (36 ms, 7 drafts' worth)
    // it is not asked, and it is asked again at once when a few tokens behind.
    const tiny = restarted(0.06);
    assert.equal(tiny.pays('draft', 1.3, 1, 600), false);
    assert.equal(tiny.pays('draft', 1.3, 2, 3), true);
    // A draft decode at a hundredth of a 24 ms target decode (embedded m): the restart pays.
    assert.equal(restarted(0.34).pays('draft', 21, 1, 600), true);
    // Not asked for a restart that does not pay, the drafter is re-checked as rarely as keeps such
    // restarts within 2% of the time: 36 ms against steps worth 1.3 ms, 1,385 steps, so 2,048.
    const asked: number[] = [];
    for (let step = 1; step <= 5000; step++) if (tiny.pays('draft', 1.3, step, 600)) asked.push(step);
    assert.deepEqual(asked, [2048, 4096]);
  });

  it('prices by the typical draft: one slowed by a moment of load does not shut the drafter out', () => {
    // 1.5 ms per node against a 30 ms token, then one 8-node draft 100 times slower (another
    // process had the cores). Priced by a mean it cost more than a token saves, and the drafter
    // was re-checked only every 4,096 steps.
    const record = drafts(1.5, 8, 6);
    record.observeDraft('draft', { ms: 1.5 + 7 * 150, catchUpMs: 1.5, nodes: 8 });
    assert.equal(record.msPerNode, 1.5);
    assert.equal(record.pays('draft', 30, 1), true);
    // Load that lasts is the machine's price: most of the recent drafts slow, the price follows.
    for (let k = 0; k < 5; k++) record.observeDraft('draft', { ms: 1.5 + 7 * 150, catchUpMs: 1.5, nodes: 8 });
    assert.equal(record.msPerNode, 150);
    assert.equal(record.pays('draft', 30, 2), false);
  });

  it('a one-node draft prices no node: its time is the catch-up', () => {
    // A first draft that stopped at one node after catching up on a 300-token prompt (40 ms).
    const record = new CostlyDrafts();
    record.observeDraft('draft', { ms: 40, catchUpMs: 40, nodes: 1 });
    assert.equal(record.msPerNode, undefined);
    assert.equal(record.pays('draft', 11, 1), true, 'still unmeasured: asked');
    record.observeDraft('draft', { ms: 40 + 4 * 2, catchUpMs: 40, nodes: 5 });
    assert.equal(record.msPerNode, 2);
  });

  it('asks an unmeasured drafter, and ignores acceptance credited to other drafters', () => {
    const record = new CostlyDrafts();
    assert.equal(record.pays('draft', 0.17, 1), true);
    record.observeAccepted('ngram');
    assert.equal(record.pays('draft', undefined, 1), true, 'an unknown token value asks');
    assert.equal(drafts(0.1, 64, 0).pays('draft', 0.17, 1), false);
  });

  it('re-checks a drafter that does not pay on steps twice as far apart each time, one sequence a step', () => {
    const record = drafts(0.1, 64, 10);
    const asked: number[] = [];
    for (let step = 1; step <= 10000; step++) {
      const first = record.pays('draft', 0.17, step);
      assert.equal(record.pays('draft', 0.17, step), false, `a second sequence in step ${step} does not re-check`);
      if (first) asked.push(step);
    }
    assert.deepEqual(asked, [64, 128, 256, 512, 1024, 2048, 4096, 8192]);
  });

  it('re-checks a drafter whose node costs more than an accepted token saves only at the longest interval', () => {
    // 0.25 ms per node against 0.17 ms saved: no acceptance could pay (the tiny testbed's draft model).
    const record = drafts(0.25, 64, 64);
    const asked: number[] = [];
    for (let step = 1; step <= 10000; step++) if (record.pays('draft', 0.17, step)) asked.push(step);
    assert.deepEqual(asked, [4096, 8192]);
  });

  it('is shared by the planners of all sequences', () => {
    const planner = new AdaptivePlanner({ curve: CostCurve.linear(0.25) });
    for (let k = 0; k < 5; k++) planner.observeDecode(alone(1), 2);
    const other = planner.forSequence();
    assert.equal(other.costlyDrafterPays('draft', undefined, 1), true);
    // 1 ms per node drafted, a tenth accepted, against a token worth 1.5 ms.
    for (let k = 0; k < 20; k++) {
      planner.observeCostlyDraft('draft', { ms: 64, catchUpMs: 1, nodes: 64 });
      const tree = new TokenTree(0);
      tree.addPath([1, 2, 3, 4, 5, 6], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], 'draft');
      planner.observe(tree, [1, 2, 3, 4, 5, 6]);
    }
    assert.equal(other.costlyDrafterPays('draft', undefined, 1), false);
  });
});

/**
 * A planner that has timed plain steps (10 ms decodes, 0.1 ms around them), then verified eight
 * sure 16-token chains whose steps spent `draftingMs` outside the decode; it knows that sure
 * chains are accepted and n-gram proposals of low confidence never are.
 */
function plannerAfterPlans(curve: CostCurve, draftingMs: number, options: { costlyDrafter?: boolean } = {}): AdaptivePlanner {
  const planner = new AdaptivePlanner({ curve, costlyDrafter: options.costlyDrafter });
  for (let k = 0; k < 20; k++) {
    planner.observe(chain(0.2, 2), []);
    planner.observe(sureChain(16), Array.from({ length: 16 }, (_, i) => i + 1));
  }
  for (let k = 0; k < 16; k++) {
    planner.observeDecode(alone(1), 10);
    planner.observeStep(1, 10.1, 'none');
  }
  for (let k = 0; k < 8; k++) {
    planner.budget();
    const plan = planner.plan(sureChain(16), LIMITS);
    planner.observe(plan, Array.from({ length: plan.draftCount }, (_, i) => i + 1));
    planner.observeDecode(alone(plan.size), 10 * curve.cost(plan.size));
    planner.observeStep(plan.draftCount + 1, 10 * curve.cost(plan.size) + draftingMs, 'cheap');
  }
  return planner;
}

/** Steps whose proposal does not pay that the planner keeps drafting through (up to `limit`). */
function missesBeforeBackOff(planner: AdaptivePlanner, limit: number, batch?: SharedBatch): number {
  let misses = 0;
  while (misses < limit && planner.budget(batch).maxNodes > 0) {
    assert.equal(planner.plan(chain(0.2, 2), LIMITS, batch).draftCount, 0, 'the proposal does not pay');
    misses++;
  }
  return misses;
}

/** Once backed off, the steps between the last two of `probes` probes whose drafts do not pay (beside `batch` when shared). */
function probeGap(planner: AdaptivePlanner, probes: number, batch?: SharedBatch): number {
  missesBeforeBackOff(planner, 10_000, batch);
  let gap = 0;
  for (let probe = 0; probe < probes; probe++) {
    gap = 1;
    while (planner.budget(batch).maxNodes === 0) gap++;
    planner.plan(chain(0.2, 2), LIMITS, batch);
  }
  return gap;
}

describe('AdaptivePlanner after a plan that does not pay', () => {
  it('probes as often as their drafting cost allows: rarely when drafting costs a decode, nearly every step when it is cheap', () => {
    const dear = probeGap(plannerAfterPlans(CostCurve.linear(0.6), 10.1), 12);
    assert.ok(dear >= 32, `a probe every ${dear} steps when drafting costs a decode`);
    const cheap = probeGap(plannerAfterPlans(CostCurve.linear(0.3), 0.3), 12);
    assert.ok(cheap <= 2, `a probe every ${cheap} steps when drafting costs 2% of a decode`);
  });

  it('spaces its probes by their cost from the first one that finds nothing, without working up to it', () => {
    // Without a draft model: one kind of probe, one schedule to measure.
    const curve = CostCurve.linear(0.6);
    // Probes fall on multiples of the interval, so the gap before the second one also depends on
    // where the first fell; from the second on, the gaps are the interval itself.
    const third = probeGap(plannerAfterPlans(curve, 10.1, { costlyDrafter: false }), 3);
    const settled = probeGap(plannerAfterPlans(curve, 10.1, { costlyDrafter: false }), 12);
    // Drafting costs about a decode: a 1% share spaces probes ~100 steps apart (128, a power of two).
    assert.ok(settled >= 64, `a probe every ${settled} steps when drafting costs a decode`);
    assert.equal(third, settled, `the third probe came ${third} steps after the second, later ones every ${settled}`);
  });

  it('charges a probe the slower decode its drafting leaves behind, not only its own time', () => {
    const gapAfterDrafting = (decodeMs: number): number => {
      const planner = plannerAfterPlans(CostCurve.linear(0.3), 0.3);
      // Steps that drafted for 0.3 ms, then decoded their pending token alone, among plain steps
      // whose decodes take 10 ms.
      for (let k = 0; k < 16; k++) {
        for (let plain = 0; plain < 3; plain++) {
          planner.observeDecode(alone(1), 10);
          planner.observeStep(1, 10.1, 'none');
        }
        planner.observeDecode(alone(1), decodeMs);
        planner.observeStep(1, decodeMs + 0.3, 'cheap');
      }
      return probeGap(planner, 12);
    };
    const settled = gapAfterDrafting(10);
    // Drafting takes 3% of a decode: a 1% share of the time probes every 3 steps (4, a power of two).
    assert.ok(settled <= 4, `a probe every ${settled} steps when drafting leaves the decode as it was`);
    const displaced = gapAfterDrafting(20);
    assert.ok(displaced >= 32, `a probe every ${displaced} steps when the decode after drafting takes twice as long`);
  });

  it('has no draft-model probes without a draft model: the cheap drafters are probed on their schedule alone', () => {
    const planner = plannerAfterPlans(CostCurve.linear(0.3), 0.3, { costlyDrafter: false });
    missesBeforeBackOff(planner, 10_000);
    let probes = 0;
    for (let step = 0; step < 640; step++) {
      const budget = planner.budget(undefined, step);
      if (budget.maxNodes === 0) continue;
      assert.equal(budget.costly, false, `step ${step} asks the cheap drafters only`);
      probes++;
      planner.plan(chain(0.2, 2), LIMITS, undefined, 'cheap');
    }
    assert.ok(probes > 0, 'the cheap drafters are still probed');
  });

  it('spaces a sequence\'s probes beside others by the step they all wait for, so that all their probes keep to the time share', () => {
    const curve = CostCurve.linear(0.6);
    const alone = probeGap(plannerAfterPlans(curve, 10.1), 12);
    const shared = probeGap(plannerAfterPlans(curve, 10.1), 12, { tokens: 15, sequences: 15 });
    // Each of 16 sequences probes on its own schedule, and each probe holds up all 16, whose plain
    // step costs c(16) = 10 single decodes: a probe weighs 1.6 times what it does alone.
    assert.ok(shared >= 1.5 * alone, `a probe every ${shared} steps beside 15 others, every ${alone} alone`);
  });

  it('charges drafting to every sequence that shares the step: what pays alone may not among others', () => {
    // A flat curve: a shared step costs one decode whatever it holds. Drafting costs 3 decodes.
    const alone = plannerAfterPlans(CostCurve.flat(), 30.1);
    assert.equal(alone.plan(sureChain(16), LIMITS).draftCount, 16, 'alone, 17 tokens for 4 decodes of time pay');
    const shared = plannerAfterPlans(CostCurve.flat(), 30.1);
    // Among 7 others, those 3 decodes of drafting hold up 8 sequences: 24 tokens forgone for 16.
    assert.equal(shared.plan(sureChain(16), LIMITS, { tokens: 7, sequences: 7 }).draftCount, 0);
  });

  it('probes cheap drafters often and a dear draft model rarely, each on its own schedule', () => {
    const planner = plannerAfterPlans(CostCurve.linear(0.3), 0.3);
    // Steps that asked the draft model spent a decode's time drafting.
    for (let k = 0; k < 16; k++) {
      planner.observeDecode(alone(1), 10);
      planner.observeStep(1, 20.1, 'costly');
    }
    missesBeforeBackOff(planner, 10_000);
    const probes = { cheap: 0, costly: 0 };
    for (let step = 0; step < 640; step++) {
      const budget = planner.budget();
      if (budget.maxNodes === 0) continue;
      const kind = budget.costly === false ? 'cheap' : 'costly';
      probes[kind]++;
      assert.equal(planner.plan(chain(0.2, 2), LIMITS, undefined, kind).draftCount, 0);
    }
    assert.ok(probes.costly <= 640 / 32, `${probes.costly} draft-model probes in 640 steps`);
    assert.ok(probes.cheap >= 640 / 4, `${probes.cheap} cheap probes in 640 steps`);
  });

  it("backs off on its own schedule: a sequence beside it whose draft-model chains pay every step does not make it probe more often", () => {
    const planner = plannerAfterPlans(CostCurve.linear(0.3), 0.3);
    for (let k = 0; k < 16; k++) {
      planner.observeDecode(alone(1), 10);
      planner.observeStep(1, 20.1, 'costly');
    }
    const paying = planner.forSequence();
    acceptedRun(paying, 16);
    missesBeforeBackOff(planner, 10_000);
    let costlyProbes = 0;
    for (let step = 0; step < 640; step++) {
      assert.ok(paying.budget(undefined, step).maxNodes > 0);
      assert.equal(paying.plan(sureChain(16), LIMITS, undefined, 'costly').draftCount, 16, 'the other sequence speculates every step');
      const budget = planner.budget(undefined, step);
      if (budget.maxNodes === 0 || budget.costly === false) continue;
      costlyProbes++;
      planner.plan(chain(0.2, 2), LIMITS, undefined, 'costly');
    }
    assert.ok(costlyProbes <= 640 / 32, `${costlyProbes} draft-model probes in 640 steps`);
  });

  it('keeps drafting through a streak of misses while what drafting has been worth stays positive', () => {
    // Drafting costs 3% of a decode; a sure 16-chain at c(n) = 1 + 0.3(n - 1) saves about 11 decodes.
    const cheap = missesBeforeBackOff(plannerAfterPlans(CostCurve.linear(0.3), 0.3), 5000);
    assert.ok(cheap >= 15 && cheap < 40, `${cheap} misses before backing off`);
    // Drafting costs a whole decode; the chains save about 5 (c(n) = 1 + 0.6(n - 1)).
    const dear = missesBeforeBackOff(plannerAfterPlans(CostCurve.linear(0.6), 10.1), 100);
    assert.ok(dear >= 3 && dear <= 10, `${dear} misses before backing off`);
  });

  it('keeps drafting through a miss in a request that has speculated since its first step, no plain step timed yet', () => {
    // Reasoning on embedded m: draft-model chains paid from the first step; the first chain that
    // did not pay backed off for 80 steps, as drafting whose cost was unknown until a plain step
    // had been timed counted as infinite.
    const curve = CostCurve.linear(0.3);
    const planner = new AdaptivePlanner({ curve, singleDecodeMs: 10 });
    for (let k = 0; k < 20; k++) planner.observe(sureChain(16), Array.from({ length: 16 }, (_, i) => i + 1));
    for (let k = 0; k < 8; k++) {
      planner.budget();
      const plan = planner.plan(sureChain(16), LIMITS, undefined, 'costly');
      planner.observe(plan, Array.from({ length: plan.draftCount }, (_, i) => i + 1));
      planner.observeDecode(alone(plan.size), 10 * curve.cost(plan.size));
      planner.observeStep(plan.draftCount + 1, 10 * curve.cost(plan.size) + 3, 'costly');
    }
    planner.budget();
    assert.equal(planner.plan(chain(0.2, 2), LIMITS, undefined, 'costly').draftCount, 0, 'the proposal does not pay');
    assert.ok(planner.budget().maxNodes > 0, 'the next step drafts again');
  });

  it('backs off at once when no drafting has paid yet', () => {
    const fresh = new AdaptivePlanner({ curve: CostCurve.linear(0.3) });
    for (let k = 0; k < 20; k++) fresh.observe(chain(0.2, 2), []);
    assert.equal(missesBeforeBackOff(fresh, 100), 1);
  });

  it('verifies what was drafted when only the drafting spent makes it not pay, and stops drafting when that goes on', () => {
    // Drafting costs 3 decodes a step (a deep draft-model chain on a tiny target); a 4-token sure
    // chain at c(n) = 1 + 0.3(n - 1) gives 5 tokens for 1.9 decodes of verification.
    const planner = plannerAfterPlans(CostCurve.linear(0.3), 30.1);
    let verified = 0;
    let steps = 0;
    for (; steps < 100 && planner.budget().maxNodes > 0; steps++) {
      const tree = planner.plan(sureChain(4), LIMITS, undefined, 'cheap', 30);
      if (tree.draftCount === 4) verified++;
    }
    assert.equal(verified, steps, 'every drafted chain is verified: its drafting is spent');
    assert.ok(steps >= 1 && steps < 20, `drafting stops after ${steps} steps that did not pay for it`);
    assert.equal(planner.plan(sureChain(4), LIMITS, undefined, 'cheap', 0).draftCount, 0, 'unspent, the same chain does not pay');
  });
});

/** A decode of `sequences` sequences sharing a step (no prompt chunk), `tokens` tokens in all. */
const shared = (index: number, sequences: number, tokens: number): DecodedStep => ({ index, tokens, decodingTokens: tokens, sequences });

/**
 * Reports, as one of `sequences` sequences, a judged epoch of shared steps that drafted (3 ms per
 * token) and the plain epoch after it (1 ms per token): speculation there loses its verdict.
 */
function loseSharedVerdict(planner: AdaptivePlanner, sequences: number): void {
  sharedVerdict(planner, sequences, 3);
}

/** Speculating steps of `sequences` sequences that take `speculativeMs` each, then plain steps of 1 ms (the judge's verdict). */
function sharedVerdict(planner: AdaptivePlanner, sequences: number, speculativeMs: number, first = 0): void {
  let index = first;
  const step = (ms: number, drafting: 'cheap' | 'none') => {
    planner.observeDecode(shared(index++, sequences, sequences), ms);
    planner.observeStep(1, ms, drafting);
  };
  // A step reaches its judge when the next one is reported.
  for (let k = 0; k <= 128; k++) step(speculativeMs, 'cheap');
  for (let k = 0; k < 40; k++) step(1, 'none');
}

describe('SharedStepCosts', () => {
  const curve = CostCurve.linear(0.3);
  /** Plain steps of 8 sequences at 31 ms, then trees of 24 tokens whose growth is `scale` times the curve's. */
  function observeSteps(costs: SharedStepCosts, scale: number, trees: number, first = 0): number {
    let index = first;
    const plainMs = 10 * curve.cost(8);
    for (let k = 0; k < 4; k++) costs.observe(shared(index++, 8, 8), plainMs);
    const predicted = curve.cost(24) / curve.cost(8) - 1;
    for (let k = 0; k < trees; k++) costs.observe(shared(index++, 8, 24), plainMs * (1 + scale * predicted));
    return index;
  }

  it('learns how much more than the curve says a shared step grows with its tokens, once it has seen a few', () => {
    const costs = new SharedStepCosts(curve);
    observeSteps(costs, 2.5, 3);
    assert.equal(costs.scale(8), 1, 'three tree steps are not enough to move off the curve');
    observeSteps(costs, 2.5, 2, 100);
    assert.ok(close(costs.scale(8), 2.5, 1e-6), `scale ${costs.scale(8)}`);
    assert.equal(costs.scale(4), 1, 'other concurrencies keep their own scale');
  });

  it('learns one scale for a class of sequence counts, each against the plain step of its own count', () => {
    const costs = new SharedStepCosts(curve);
    let index = 0;
    // The running count moves between 9 and 16: one plain step and one tree step of 3 tokens per
    // sequence at each count, growing 3 times what the curve says; no count sees 4 tree steps.
    for (let sequences = 9; sequences <= 16; sequences++) {
      const plainMs = 10 * curve.cost(sequences);
      costs.observe(shared(index++, sequences, sequences), plainMs);
      costs.observe(shared(index++, sequences, 3 * sequences), plainMs * (1 + 3 * (curve.cost(3 * sequences) / curve.cost(sequences) - 1)));
    }
    assert.ok(close(costs.scale(12), 3, 1e-6), `scale ${costs.scale(12)}`);
    assert.equal(costs.scale(16), costs.scale(9));
    assert.equal(costs.scale(8), 1, 'another class: nothing seen');
  });

  it('counts a step once however many sequences report it, and leaves out steps with a prompt chunk', () => {
    const once = new SharedStepCosts(curve);
    observeSteps(once, 2, 4);
    const byEach = new SharedStepCosts(curve);
    const plainMs = 10 * curve.cost(8);
    const predicted = curve.cost(24) / curve.cost(8) - 1;
    // Four plain steps, eight tree steps growing 4x the curve's growth, then two growing as it says,
    // each step reported by all 8 of its sequences in turn: the last two must not fill the window.
    const growths = [0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4, 1, 1];
    for (const [index, scale] of growths.entries()) {
      for (let seq = 0; seq < 8; seq++) byEach.observe(shared(index, 8, scale === 0 ? 8 : 24), plainMs * (1 + scale * predicted));
    }
    assert.ok(close(byEach.scale(8), (8 * 4 + 2 * 1) / 10, 1e-6), `scale ${byEach.scale(8)}`);
    // Slow steps that also prefilled a prompt chunk say nothing about verify tokens.
    for (let k = 0; k < 8; k++) once.observe({ index: 100 + k, tokens: 88, decodingTokens: 24, sequences: 8 }, 1000);
    assert.ok(close(once.scale(8), 2, 1e-6), `scale ${once.scale(8)}`);
  });
});

describe('AdaptivePlanner among other sequences', () => {
  it("tells drafters how likely a chain's nodes must be to pay for their verification beside the others", () => {
    // c(n) = 1 + 0.3(n - 1): beside 7 others (a plain step of 8 tokens, c = 3.1), a token adds 0.3
    // to a step all 8 wait for, 8 x 0.3 / 3.1 = 0.77 of this sequence's plain step: a node less
    // likely than that costs more than it gives, and a draft model's chain stops before it.
    const planner = plannerAfterPlans(CostCurve.linear(0.3), 0.3);
    const budget = planner.budget({ tokens: 7, sequences: 7 });
    assert.ok(budget.maxNodes > 0);
    assert.ok(close(budget.minPathProbability!, (8 * 0.3) / 3.1, 1e-9), `floor ${budget.minPathProbability}`);
    assert.equal(planner.budget().minPathProbability, undefined, "alone, drafters keep their own floor (a chain's economics are whole there)");
  });

  it("raises that floor by what drafting a node holds the step up, and tells drafters how often the target accepts their nodes", () => {
    const planner = plannerAfterPlans(CostCurve.linear(0.3), 0.3);
    // A draft model whose chains cost 0.5 ms a node past the catch-up (a 20th of a 10 ms decode),
    // and whose sure nodes the target accepts at depths 1 and 2, never at 3.
    for (let k = 0; k < 20; k++) {
      planner.observeCostlyDraft('draft', { ms: 2 + 31 * 0.5, catchUpMs: 2, nodes: 32 });
      const tree = new TokenTree(0);
      tree.addPath([1, 2, 3], [0.999, 0.998, 0.997], 'draft');
      planner.observe(tree, [1, 2]);
    }
    const budget = planner.budget({ tokens: 7, sequences: 7 });
    assert.ok(close(budget.minPathProbability!, (8 * (0.3 + 0.05)) / 3.1, 1e-9), `floor ${budget.minPathProbability}`);
    const rate = (depth: number) => budget.acceptance!('draft', depth, 0.999);
    assert.ok(rate(1) > 0.9 && rate(2) > 0.9 && rate(3) < 0.2, `rates ${[1, 2, 3].map(rate)}`);
    assert.equal(planner.budget().acceptance, undefined, 'alone, a chain is scored by its own probabilities');
  });

  it('plans each sequence on its own: one whose drafts miss backs off, another goes on, and both learn acceptance together', () => {
    const root = plannerAfterPlans(CostCurve.linear(0.3), 0.3);
    const missing = root.forSequence();
    const other = root.forSequence();
    acceptedRun(other, 16);
    const misses = missesBeforeBackOff(missing, 100);
    assert.ok(misses > 1 && misses < 100, `${misses} misses: it starts from what drafting has been worth to every sequence, then backs off`);
    assert.ok(other.budget({ tokens: 7, sequences: 7 }).maxNodes > 0, 'the other sequence still drafts');
    assert.equal(other.plan(sureChain(16), LIMITS, { tokens: 7, sequences: 7 }).draftCount, 16);
    assert.equal(missing.stats, other.stats);
  });

  it('starts a new sequence backed off once drafting has lately lost the others more than a decode a step', () => {
    const root = new AdaptivePlanner({ curve: CostCurve.linear(0.3) });
    // Plain steps take 10 ms and steps that drafted 40: a drafting step costs 3 decodes.
    for (let k = 0; k < 16; k++) {
      root.observeDecode(alone(1), 10);
      root.observeStep(1, 10.1, 'none');
      root.observeDecode(alone(1), 10);
      root.observeStep(1, 40, 'cheap');
    }
    let sequences = 0;
    for (; sequences < 40; sequences++) {
      const next = root.forSequence();
      // Step 1 is no probe step: a sequence backed off does not draft in it.
      if (next.budget(undefined, 1).maxNodes === 0) break;
      assert.equal(missesBeforeBackOff(next, 100), 1, 'nothing has paid: a miss backs off at once');
    }
    assert.ok(sequences >= 4 && sequences < 40, `${sequences} sequences drafted a first step that did not pay before the next started backed off`);
  });

  it('starts a new sequence backed off beside others until speculation has won there, and exploring alone', () => {
    const root = plannerAfterPlans(CostCurve.linear(0.3), 0.3);
    const eight = { tokens: 7, sequences: 7 };
    // Step 1 is no probe step: a sequence backed off does not draft in it.
    assert.equal(root.forSequence().budget(eight, 1).maxNodes, 0, 'before any verdict among 8');
    sharedVerdict(root, 8, 0.2);
    assert.equal(root.forSequence().budget(eight, 1).explore, true, 'among 8, where speculation just won');
    const losing = plannerAfterPlans(CostCurve.linear(0.3), 0.3);
    loseSharedVerdict(losing, 8);
    assert.equal(losing.forSequence().budget(eight, 1).maxNodes, 0, 'among 8, where speculation just lost');
    assert.equal(root.forSequence().budget({ tokens: 1, sequences: 1 }, 1).maxNodes, 0, 'beside one other sequence, whose judge has no verdict yet');
    assert.equal(root.forSequence().budget(undefined, 1).explore, true, 'alone');
    const running = root.forSequence();
    feed(running, 1);
    assert.ok(running.budget(eight, 1).maxNodes > 0, 'a sequence whose plans paid goes on drafting');
  });

  it('prices a tree placed after other sequences\' trees in plain shares, as beside their pending tokens alone', () => {
    // A linear curve: every token adds the same to a step, whatever the batch already holds.
    const planner = new AdaptivePlanner({ curve: CostCurve.linear(0.3) });
    const besidePlain = { tokens: 7, sequences: 7 };
    const besideTrees = { tokens: 47, sequences: 7 };
    // At the prior rate, 16 nodes of a chain the drafter is 90% sure of do not pay among 8 sequences.
    assert.equal(planner.plan(chain(0.9, 16), LIMITS, besidePlain).draftCount, 0);
    // A share of a step the others' trees made 5 times dearer is not what a token saves.
    assert.equal(planner.plan(chain(0.9, 16), LIMITS, besideTrees).draftCount, 0);
    feed(planner, 40);
    assert.equal(planner.plan(sureChain(16), LIMITS, besidePlain).draftCount, 16, 'sure nodes pay beside plain steps');
    assert.equal(planner.plan(sureChain(16), LIMITS, besideTrees).draftCount, 16, 'and beside trees');
  });

  it('shrinks shared trees once steps are seen to grow more with their tokens than the curve says', () => {
    const curve = CostCurve.linear(0.3);
    const planner = plannerAfterPlans(curve, 0.3);
    const batch = { tokens: 7, sequences: 7 };
    assert.equal(planner.plan(sureChain(16), LIMITS, batch).draftCount, 16, 'the curve prices 16 sure tokens as worth verifying among 8 sequences');
    const plainMs = 10 * curve.cost(8);
    let index = 0;
    for (let k = 0; k < 4; k++) planner.observeDecode(shared(index++, 8, 8), plainMs);
    for (let k = 0; k < 8; k++) planner.observeDecode(shared(index++, 8, 24), plainMs * (1 + 3 * (curve.cost(24) / curve.cost(8) - 1)));
    assert.ok(planner.plan(sureChain(16), LIMITS, batch).draftCount < 16, 'a tree costing 3x the curve\'s growth is cut');
    assert.equal(planner.plan(sureChain(16), LIMITS).draftCount, 16, 'alone, the curve still holds');
  });
});

/**
 * Runs `epochs` judged rounds: speculating steps emit `tokensPerSpeculativeStep` in `speculativeMs`;
 * the forced plain steps emit one token in `plainMs`. Returns the bar after each judged round.
 */
function judgeRounds(judge: RealizedJudge, epochs: number, speculativeMs: number, tokensPerSpeculativeStep: number, plainMs: number): number[] {
  const bars: number[] = [];
  for (let epoch = 0; epoch < epochs; epoch++) {
    while (!judge.forcePlain) judge.observeStep(tokensPerSpeculativeStep, speculativeMs, true);
    while (judge.forcePlain) judge.observeStep(1, plainMs, false);
    bars.push(judge.bar);
  }
  return bars;
}

describe('RealizedJudge', () => {
  it('raises the bar while speculating epochs are slower than the plain epochs after them, and lowers it when they win', () => {
    const judge = new RealizedJudge();
    const losing = judgeRounds(judge, 4, 3, 2, 1);
    assert.ok(close(judge.lastVerdict!, 2 / 3), `verdict ${judge.lastVerdict}`);
    assert.ok(losing.every((bar, i) => bar > (losing[i - 1] ?? 1)), `bars ${losing}`);
    const winning = judgeRounds(judge, 4, 1, 2, 1);
    assert.ok(close(judge.lastVerdict!, 2));
    assert.ok(winning.at(-1)! < losing.at(-1)!, `bars ${winning}`);
  });

  it('lengthens speculating epochs while they win, and shortens them again after a loss', () => {
    const judge = new RealizedJudge();
    const epochLength = (): number => {
      let steps = 0;
      while (!judge.forcePlain) {
        judge.observeStep(2, 1, true);
        steps++;
      }
      while (judge.forcePlain) judge.observeStep(1, 1, false);
      return steps;
    };
    const winning = [epochLength(), epochLength(), epochLength()];
    assert.deepEqual(winning, [128, 256, 512]);
    let steps = 0;
    while (!judge.forcePlain) {
      judge.observeStep(1, 3, true);
      steps++;
    }
    while (judge.forcePlain) judge.observeStep(1, 1, false);
    assert.equal(steps, 1024);
    assert.equal(epochLength(), 128, 'after the loss');
  });

  it('does not judge epochs without speculation, and a raised bar decays while nothing is speculated', () => {
    const judge = new RealizedJudge();
    judgeRounds(judge, 3, 3, 2, 1);
    const raised = judge.bar;
    for (let step = 0; step < 128 * 4; step++) judge.observeStep(1, 1, false);
    assert.equal(judge.forcePlain, false, 'no plain epoch without speculation to judge');
    assert.ok(judge.bar < raised && judge.bar >= 1);
  });

  it('follows an epoch with a plain epoch only where speculative steps emitted a real share of the tokens, and judges one where they were rarer within itself', () => {
    const judge = new RealizedJudge();
    // One speculative step in eight, emitting 2 tokens in 3 ms where a plain step emits 1 in 1 ms:
    // 2 of 9 tokens per eight steps (22%).
    for (let step = 0; step < 128; step++) judge.observeStep(step % 8 === 0 ? 2 : 1, step % 8 === 0 ? 3 : 1, step % 8 === 0);
    assert.equal(judge.forcePlain, false, 'no plain epoch');
    assert.ok(close(judge.lastVerdict!, 2 / 3), `verdict ${judge.lastVerdict}`);
    assert.ok(judge.bar > 1, 'a loss');
    // One in four: 2 of 5 tokens (40%).
    for (let step = 0; step < 128; step++) judge.observeStep(step % 4 === 0 ? 2 : 1, 1, step % 4 === 0);
    assert.equal(judge.forcePlain, true);
  });

  it('judges within an epoch against plain steps of the same time, however slow steps grow meanwhile', () => {
    const judge = new RealizedJudge();
    // Every step slower than the one before (as contexts grow); one step in six speculates, and
    // costs 20% more for the same token.
    for (let step = 0; step < 128; step++) {
      const speculative = step % 6 === 3;
      judge.observeStep(1, (1 + step / 64) * (speculative ? 1.2 : 1), speculative);
    }
    assert.ok(close(judge.lastVerdict!, 1 / 1.2, 0.02), `verdict ${judge.lastVerdict}`);
  });

  it('leaves an epoch with too few speculative steps unjudged', () => {
    const judge = new RealizedJudge();
    for (let step = 0; step < 128; step++) judge.observeStep(1, step < 7 ? 5 : 1, step < 7);
    assert.equal(judge.lastVerdict, undefined);
    assert.equal(judge.bar, 1);
  });

  it('rests in plain decoding after the second lost verdict in a row, twice as long after each further loss, until a verdict is not a loss', () => {
    const judge = new RealizedJudge();
    const restAfterEpoch = (speculativeMs: number): number => {
      while (!judge.forcePlain) judge.observeStep(1, speculativeMs, true);
      for (let step = 0; step < 32; step++) judge.observeStep(1, 1, false);
      let rest = 0;
      for (; judge.forcePlain; rest++) judge.observeStep(1, 1, false);
      return rest;
    };
    // Each plain epoch here ends after its 32 steps (1 ms each), so what follows them is the rest.
    assert.deepEqual([restAfterEpoch(1.5), restAfterEpoch(1.5), restAfterEpoch(1.5), restAfterEpoch(1.5)], [0, 128, 256, 512]);
    assert.equal(restAfterEpoch(1), 0, 'a verdict that is not a loss');
    assert.equal(restAfterEpoch(1.5), 0, 'a first loss again');
  });

  it('leaves out the first steps of a plain epoch, which still pay for the trees before them', () => {
    const judge = new RealizedJudge();
    while (!judge.forcePlain) judge.observeStep(2, 1, true);
    for (let step = 0; judge.forcePlain; step++) judge.observeStep(1, step < 6 ? 100 : 1, false);
    assert.ok(close(judge.lastVerdict!, 2), `verdict ${judge.lastVerdict}`);
  });
});

describe('SharedStepJudges', () => {
  it('judges steps of 9 to 16 sequences together, in plain steps of work, and a step where any sequence drafted as speculative', () => {
    // A plain step of S sequences costs c(S) = 1 + (S - 1) / 10 single decodes.
    const curve = { cost: (n: number) => 1 + (n - 1) / 10 };
    const judges = new SharedStepJudges(curve);
    assert.equal(judges.judge(9), judges.judge(16));
    assert.notEqual(judges.judge(8), judges.judge(9));
    const judge = judges.judge(16);
    // As under 16 concurrent requests: the running count moves between 9 and 16, every sequence
    // emits one token a step, and in speculating epochs one sequence drafts, which makes the step
    // 20% slower while no draft is ever verified. The count falls from epoch to epoch, as a
    // run's requests end: tokens per ms fall with it, work per ms does not.
    for (let index = 0; index < 1000 && judge.lastVerdict === undefined; index++) {
      const sequences = 16 - Math.min(7, Math.floor(index / 24));
      const step = { index, tokens: sequences, decodingTokens: sequences, sequences };
      const drafting = !judge.forcePlain;
      const ms = curve.cost(sequences) * (drafting ? 1.2 : 1);
      for (let i = 0; i < sequences; i++) judges.observe(step, 1, ms, drafting && i === 0);
    }
    assert.ok(close(judge.lastVerdict!, 1 / 1.2), `verdict ${judge.lastVerdict}`);
    assert.ok(judge.bar > 1);
  });
});

describe('AdaptivePlanner with realized speed', () => {
  it('stops verifying trees whose steps are slow end to end, though their decodes look cheap', () => {
    const planner = new AdaptivePlanner({ curve: CostCurve.linear(0.3) });
    let lastSize = 0;
    let highestBar = 1;
    const verified: number[] = [];
    for (let step = 0; step < 2000; step++) {
      const budget = planner.budget();
      if (budget.maxNodes === 0) {
        planner.observeDecode(alone(1), 1);
        planner.observeStep(1, 1, 'none');
        continue;
      }
      const plan = planner.plan(sureChain(16), LIMITS);
      const accepted = Array.from({ length: plan.draftCount }, (_, k) => k + 1);
      planner.observe(plan, accepted);
      planner.observeDecode(alone(plan.size), 1 + 0.3 * (plan.size - 1));
      // What the decode does not show: the step as a whole costs 40 plain steps.
      planner.observeStep(plan.draftCount + 1, plan.draftCount > 0 ? 40 : 1, 'cheap');
      lastSize = plan.draftCount;
      if (plan.draftCount > 0) verified.push(step);
      highestBar = Math.max(highestBar, planner.judge.bar);
    }
    assert.ok(highestBar > 1, 'the realized verdict raised the bar');
    assert.equal(lastSize, 0, 'the last plans verify nothing');
    // Once the costs are known, probes come as rarely as their drafting costs allow.
    assert.ok(verified.filter((step) => step >= 200).length <= 2, `verified at steps ${verified.filter((step) => step >= 200).join(' ')}`);
  });

  it('judges steps shared by 8 sequences whole, apart from steps alone, and stops trees that lose there', () => {
    const root = new AdaptivePlanner({ curve: CostCurve.linear(0.3) });
    const planners = Array.from({ length: 8 }, () => root.forSequence());
    const others = { tokens: 7, sequences: 7 };
    let lastTrees = 0;
    let plainEpochs = 0;
    for (let index = 0; index < 1500; index++) {
      const plans = planners.map((planner) => {
        const budget = planner.budget(others, index);
        return budget.maxNodes === 0 ? undefined : planner.plan(sureChain(16), LIMITS, others);
      });
      if (plans.every((plan) => plan === undefined)) plainEpochs++;
      const tokens = plans.reduce((sum, plan) => sum + (plan?.size ?? 1), 0);
      // The decode looks as the curve says; the step as a whole is 3x slower whenever it holds a tree.
      const ms = tokens > 8 ? 3 * (1 + 0.3 * (tokens - 1)) : 1 + 0.3 * 7;
      planners.forEach((planner, seq) => {
        const plan = plans[seq];
        if (plan) planner.observe(plan, Array.from({ length: plan.draftCount }, (_, k) => k + 1));
        planner.observeDecode(shared(index, 8, tokens), ms);
        planner.observeStep((plan?.draftCount ?? 0) + 1, ms, plan ? 'cheap' : 'none');
      });
      lastTrees = plans.filter((plan) => (plan?.draftCount ?? 0) > 0).length;
    }
    assert.ok(plainEpochs > 0, 'shared steps had plain epochs');
    assert.equal(root.judge.bar, 1, 'steps alone keep their own verdict');
    assert.equal(lastTrees, 0, 'the last shared steps verify no tree');
  });
});

describe('plausibleCurve', () => {
  const curve = (ratios: Record<number, number>) => Object.entries(ratios).map(([n, ratio]) => ({ n: Number(n), seconds: 0.015 * ratio }));

  it('accepts curves measured on a quiet machine, the one-thread 2-token jump included', () => {
    assert.ok(plausibleCurve(curve({ 1: 1, 2: 2.9, 3: 3.4, 8: 4.4, 32: 11.3, 64: 17 })));
    assert.ok(plausibleCurve(curve({ 1: 1, 2: 3.99, 4: 6.09, 64: 23.9 })));
    // Embedded m on 2 threads, quiet: 56 tokens dearer than 64.
    assert.ok(plausibleCurve(curve({ 1: 1, 2: 2.17, 4: 2.68, 8: 3.78, 16: 6.16, 28: 9.79, 32: 11.26, 56: 19.25, 64: 17.5 })));
    // make-model's tiny F16 model on a Zen 1 CPU, quiet: from 64 rows flash attention runs its tiled kernel.
    assert.ok(plausibleCurve(curve({ 1: 1, 2: 1.69, 8: 4.85, 16: 8.97, 32: 17.26, 48: 28.76, 56: 29.33, 63: 35.52, 64: 13.17 })));
  });

  it('rejects curves measured under load, which must not be cached', () => {
    assert.ok(!plausibleCurve(curve({ 1: 1, 2: 1.75, 6: 296, 64: 827 })));
    assert.ok(!plausibleCurve(curve({ 1: 1, 2: 29.9, 24: 3.42 })));
    // Beside a compiler on one of two cores: every ratio below 3n, but 2 tokens dearer than 4.
    assert.ok(!plausibleCurve(curve({ 1: 1, 2: 5.75, 3: 6.79, 4: 3.33, 6: 4.64, 8: 6.04, 16: 10.2, 64: 26 })));
    assert.ok(!plausibleCurve(curve({ 2: 1, 4: 2 })), 'no single-token time');
    // Below the kernel switch, a batch of 16 dearer than one of 32 is still load.
    assert.ok(!plausibleCurve(curve({ 1: 1, 2: 1.7, 16: 20, 32: 12, 63: 35, 64: 13 })));
  });
});
