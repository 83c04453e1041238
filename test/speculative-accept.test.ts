import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Prng } from '../src/generate/prng.js';
import { drawFrom, greedyToken, Sampler, tokenDistribution, type SamplingOptions, type TokenDistribution } from '../src/generate/sampling.js';
import { acceptGreedy, acceptSampled, acceptTree, rejectionSample, type TreeSampler, type UniformSource } from '../src/speculative/accept.js';
import { ROOT, TokenTree } from '../src/speculative/tree.js';
import { seededUniform } from './helpers/random.js';

/** A request's sampler with `options` whose draws come from `rng` (the tests share one generator with plain decoding's). */
function samplerOf(options: SamplingOptions, rng: UniformSource = new Prng(0)): TreeSampler {
  const sampler = new Sampler(options);
  return { options: sampler.options, rng, greedyToken: (logits, history) => sampler.greedyToken(logits, history), distribution: (logits, history) => sampler.distribution(logits, history), commit: () => {} };
}

// ---------------------------------------------------------------------------------------------
// A synthetic "model": logits are a deterministic hash of the whole history.
// ---------------------------------------------------------------------------------------------


function syntheticLogits(history: ArrayLike<number>, vocab: number, salt: number, spread: number): Float32Array {
  let h = (2166136261 ^ salt) >>> 0;
  for (let i = 0; i < history.length; i++) h = Math.imul(h ^ (history[i] + 1), 16777619) >>> 0;
  const rand = seededUniform(h);
  return Float32Array.from({ length: vocab }, () => (rand() * 2 - 1) * spread);
}

const VOCAB = 12;
const model = (context: ArrayLike<number>): Float32Array => syntheticLogits(context, VOCAB, 7, 3);

/** A tree holding a prefix of `truePath` (random length) plus random branches. */
function randomTree(root: number, truePath: readonly number[], rand: () => number, vocab: number): TokenTree {
  const tree = new TokenTree(root);
  const keep = Math.floor(rand() * (truePath.length + 1));
  tree.addPath(truePath.slice(0, keep), truePath.slice(0, keep).map(() => 0.5), 'true');
  const extras = Math.floor(rand() * 10);
  for (let k = 0; k < extras; k++) {
    const at = Math.floor(rand() * tree.size);
    if (tree.depth(at) < 6) tree.addChild(at, Math.floor(rand() * vocab), 0.3, 'random');
  }
  return tree;
}

/** Snapshots `committed`: the acceptance rules extend the history array in place while walking. */
function logitsFor(tree: TokenTree, committed: readonly number[]): (node: number) => Float32Array {
  const base = committed.slice();
  return (node) => model([...base, tree.rootToken, ...tree.pathTo(node)]);
}

const GREEDY_PENALIZED: SamplingOptions = { temperature: 0, repeatPenalty: 1.3, frequencyPenalty: 0.2, penaltyLastN: 8 };
const SAMPLED: SamplingOptions = { temperature: 0.9, topK: 8, topP: 0.95, minP: 0.02, repeatPenalty: 1.2, penaltyLastN: 8 };
const PROMPT = [1, 4, 2, 9];
const LENGTH = 400;

function plainGreedy(prompt: readonly number[], length: number): number[] {
  const seq = [...prompt];
  while (seq.length < length) seq.push(greedyToken(model(seq), seq, GREEDY_PENALIZED));
  return seq;
}

function plainSampled(prompt: readonly number[], length: number, rng: Prng): number[] {
  const seq = [...prompt];
  while (seq.length < length) seq.push(drawFrom(tokenDistribution(model(seq), seq, SAMPLED), rng.next()));
  return seq;
}

describe('greedy acceptance', () => {
  it('reproduces plain greedy decoding on random trees (penalties on)', () => {
    const expected = plainGreedy(PROMPT, LENGTH);
    const rand = seededUniform(11);
    const committed = [...PROMPT];
    let root = greedyToken(model(committed), committed, GREEDY_PENALIZED);
    let accepted = 0;
    while (committed.length + 1 < LENGTH) {
      const truth = expected.slice(committed.length + 1, committed.length + 7);
      const tree = randomTree(root, truth, rand, VOCAB);
      const before = committed.slice();
      const result = acceptGreedy(tree, logitsFor(tree, committed), committed, samplerOf(GREEDY_PENALIZED));
      assert.deepEqual(committed, before, 'history must be restored');
      assert.deepEqual(result.acceptedTokens, result.acceptedNodes.map((n) => tree.token(n)));
      accepted += result.acceptedTokens.length;
      committed.push(root, ...result.acceptedTokens);
      root = result.bonus;
    }
    committed.push(root);
    assert.deepEqual(committed.slice(0, LENGTH), expected);
    assert.ok(accepted > LENGTH / 3, `trees should be accepted often (accepted ${accepted})`);
  });

  it('accepts nothing when no child is the argmax, and returns the argmax as bonus', () => {
    const committed = [...PROMPT];
    const root = 3;
    const best = greedyToken(model([...committed, root]), [...committed, root], GREEDY_PENALIZED);
    const tree = new TokenTree(root);
    tree.addPath([(best + 1) % VOCAB, best], [0.9, 0.8], 'x');
    const result = acceptTree(tree, logitsFor(tree, committed), committed, samplerOf(GREEDY_PENALIZED, new Prng(1)));
    assert.deepEqual(result, { acceptedNodes: [], acceptedTokens: [], bonus: best });
  });
});

describe('sample-and-match acceptance', () => {
  for (const seed of [1, 2, 3]) {
    it(`reproduces plain seeded sampling token for token, consuming the rng identically (seed ${seed})`, () => {
      const plainRng = new Prng(seed);
      const expected = plainSampled(PROMPT, LENGTH, plainRng);
      const rng = new Prng(seed);
      const rand = seededUniform(100 + seed);
      const committed = [...PROMPT];
      let root = drawFrom(tokenDistribution(model(committed), committed, SAMPLED), rng.next());
      let accepted = 0;
      while (committed.length + 1 < LENGTH) {
        // The true continuation, peeked with a clone of the generator (not consumed).
        const truth = plainSampled([...committed, root], committed.length + 7, rng.clone()).slice(committed.length + 1);
        const tree = randomTree(root, truth, rand, VOCAB);
        const result = acceptSampled(tree, logitsFor(tree, committed), committed, samplerOf(SAMPLED, rng));
        accepted += result.acceptedTokens.length;
        committed.push(root, ...result.acceptedTokens);
        root = result.bonus;
      }
      committed.push(root);
      assert.ok(committed.length >= LENGTH);
      // Continue plain decoding to the same length so both generators advanced the same amount.
      const extended = plainSampled(expected, committed.length, plainRng);
      assert.deepEqual(committed, extended);
      assert.deepEqual(rng.state(), plainRng.state(), 'one rng.next() per emitted token');
      assert.ok(accepted > LENGTH / 3, `trees should be accepted often (accepted ${accepted})`);
    });
  }
});

/**
 * A grammar-like constraint whose state is the emitted tokens: after a token t, t and t + 1
 * (mod VOCAB) may not come next. Stateful as a grammar is: correct only if every emitted token is
 * committed once, in order, and nothing else is.
 */
class NoRepeatNeighbour {
  private last = -1;
  readonly committed: number[] = [];

  allows(token: number): boolean {
    return this.last < 0 || (token !== this.last && token !== (this.last + 1) % VOCAB);
  }

  restrict(logits: Float32Array): Float32Array {
    return logits.map((logit, token) => (this.allows(token) ? logit : -Infinity));
  }

  accept(token: number): void {
    assert.ok(this.allows(token), `token ${token} committed where the constraint forbids it`);
    this.last = token;
    this.committed.push(token);
  }

  fork(): NoRepeatNeighbour {
    const copy = new NoRepeatNeighbour();
    copy.last = this.last;
    return copy;
  }

  dispose(): void {}
}

describe('acceptance within a constraint', () => {
  /** Plain decoding within the constraint: one Sampler.next per token, as the engine's plain decoder. */
  function plainConstrained(options: SamplingOptions, seed: number): number[] {
    const sampler = new Sampler({ ...options, seed }, new NoRepeatNeighbour());
    const seq = [...PROMPT];
    while (seq.length < LENGTH) seq.push(sampler.next(model(seq), seq));
    return seq;
  }

  for (const [name, options] of [['greedy', GREEDY_PENALIZED], ['sampled', SAMPLED]] as const) {
    it(`${name}: trees walked within it emit plain constrained decoding's tokens, and commit each once`, () => {
      const expected = plainConstrained(options, 5);
      const constraint = new NoRepeatNeighbour();
      const sampler = new Sampler({ ...options, seed: 5 }, constraint);
      const rand = seededUniform(21);
      const committed = [...PROMPT];
      let root = sampler.next(model(committed), committed);
      let accepted = 0;
      while (committed.length + 1 < LENGTH) {
        const truth = expected.slice(committed.length + 1, committed.length + 7);
        const tree = randomTree(root, truth, rand, VOCAB);
        const result = acceptTree(tree, logitsFor(tree, committed), committed, sampler);
        accepted += result.acceptedTokens.length;
        committed.push(root, ...result.acceptedTokens);
        root = result.bonus;
      }
      committed.push(root);
      assert.deepEqual(committed.slice(0, LENGTH), expected);
      assert.deepEqual(constraint.committed, committed.slice(PROMPT.length), 'every emitted token committed once, in order');
      assert.ok(accepted > LENGTH / 4, `trees should be accepted often (accepted ${accepted})`);
      // The constraint changed the output: unconstrained greedy decoding repeats neighbours here.
      if (name === 'greedy') assert.notDeepEqual(expected, plainGreedy(PROMPT, LENGTH));
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Recursive rejection sampling: chi-square against the target distribution.
// ---------------------------------------------------------------------------------------------

const SMALL_VOCAB = 6;
const PLAIN: SamplingOptions = { temperature: 1, topK: 0, topP: 1, minP: 0 };
const targetLogits = (context: ArrayLike<number>): Float32Array => syntheticLogits(context, SMALL_VOCAB, 1, 1);
const target = (context: ArrayLike<number>): TokenDistribution => tokenDistribution(targetLogits(context), context, PLAIN);
// A draft that disagrees with the target: different hash, sharper.
const draftOf = (context: ArrayLike<number>): TokenDistribution => tokenDistribution(syntheticLogits(context, SMALL_VOCAB, 2, 1.6), context, PLAIN);

function drawSamples(q: TokenDistribution, k: number, withReplacement: boolean, rng: Prng): number[] {
  const samples: number[] = [];
  for (let i = 0; i < k; i++) {
    if (withReplacement) {
      samples.push(drawFrom(q, rng.next()));
      continue;
    }
    const ids: number[] = [];
    const probs: number[] = [];
    q.ids.forEach((id, j) => {
      if (!samples.includes(id)) {
        ids.push(id);
        probs.push(q.probs[j]);
      }
    });
    const mass = probs.reduce((a, b) => a + b, 0);
    samples.push(drawFrom({ ids: Int32Array.from(ids), probs: Float64Array.from(probs, (p) => p / mass) }, rng.next()));
  }
  return samples;
}

/** Two levels of draft-sampled children (3 then 2 per node), plus one child from another drafter. */
function sampledTree(context: readonly number[], root: number, withReplacement: boolean, draftRng: Prng): TokenTree {
  const tree = new TokenTree(root);
  const rootContext = [...context, root];
  const q0 = draftOf(rootContext);
  const first = drawSamples(q0, 3, withReplacement, draftRng);
  for (const token of first) tree.addChild(ROOT, token, 0.5, 'draft');
  tree.setDraft(ROOT, q0, first, { withReplacement });
  for (const child of [...tree.children(ROOT)]) {
    const q1 = draftOf([...rootContext, tree.token(child)]);
    const second = drawSamples(q1, 2, withReplacement, draftRng);
    for (const token of second) tree.addChild(child, token, 0.25, 'draft');
    tree.setDraft(child, q1, second, { withReplacement });
  }
  tree.addChild(ROOT, 0, 0.2, 'ngram'); // foreign child: reachable when the output is 0
  return tree;
}

/** First two emitted tokens; the second comes from plain sampling when the step emitted one. */
function firstTwoTokens(context: readonly number[], root: number, tree: TokenTree, rng: Prng): [number, number] {
  const history = [...context];
  const logitsOf = (node: number): Float32Array => targetLogits([...context, root, ...tree.pathTo(node)]);
  const { acceptedTokens, bonus } = acceptSampled(tree, logitsOf, history, samplerOf(PLAIN, rng));
  const emitted = [...acceptedTokens, bonus];
  const second = emitted.length >= 2 ? emitted[1] : drawFrom(target([...context, root, emitted[0]]), rng.next());
  return [emitted[0], second];
}

/** Pearson chi-square; asserts every expected count is >= 5 so the statistic is valid. */
function chiSquare(observed: number[], probabilities: number[], trials: number): number {
  let statistic = 0;
  probabilities.forEach((p, i) => {
    const expected = p * trials;
    assert.ok(expected >= 5, `cell ${i} expects only ${expected}`);
    statistic += (observed[i] - expected) ** 2 / expected;
  });
  return statistic;
}

// chi-square 0.999 quantiles (fixed): 5 and 35 degrees of freedom.
const CRITICAL_DF5 = 20.515;
const CRITICAL_DF35 = 66.619;
const TRIALS = 20000;
const CONTEXT = [3, 1];
const ROOT_TOKEN = 2;

function probabilityTables(): { first: number[]; joint: number[] } {
  const rootContext = [...CONTEXT, ROOT_TOKEN];
  const first = new Array<number>(SMALL_VOCAB).fill(0);
  const p1 = target(rootContext);
  p1.ids.forEach((id, j) => (first[id] = p1.probs[j]));
  const joint = new Array<number>(SMALL_VOCAB * SMALL_VOCAB).fill(0);
  for (let a = 0; a < SMALL_VOCAB; a++) {
    const p2 = target([...rootContext, a]);
    p2.ids.forEach((id, j) => (joint[a * SMALL_VOCAB + id] = first[a] * p2.probs[j]));
  }
  return { first, joint };
}

describe('recursive rejection sampling', () => {
  const tables = probabilityTables();

  for (const withReplacement of [true, false]) {
    it(`preserves the target distribution (first token and two-token joint), ${withReplacement ? 'with' : 'without'} replacement`, () => {
      const draftRng = new Prng(withReplacement ? 101 : 202);
      const rng = new Prng(withReplacement ? 303 : 404);
      const first = new Array<number>(SMALL_VOCAB).fill(0);
      const joint = new Array<number>(SMALL_VOCAB * SMALL_VOCAB).fill(0);
      let acceptedAny = 0;
      for (let trial = 0; trial < TRIALS; trial++) {
        const tree = sampledTree(CONTEXT, ROOT_TOKEN, withReplacement, draftRng);
        const [a, b] = firstTwoTokens(CONTEXT, ROOT_TOKEN, tree, rng);
        if (tree.childWithToken(ROOT, a) >= 0) acceptedAny++;
        first[a]++;
        joint[a * SMALL_VOCAB + b]++;
      }
      const firstStat = chiSquare(first, tables.first, TRIALS);
      const jointStat = chiSquare(joint, tables.joint, TRIALS);
      assert.ok(firstStat < CRITICAL_DF5, `first-token chi-square ${firstStat.toFixed(2)} >= ${CRITICAL_DF5}`);
      assert.ok(jointStat < CRITICAL_DF35, `joint chi-square ${jointStat.toFixed(2)} >= ${CRITICAL_DF35}`);
      // The scheme must actually accept drafts (not just fall back to the residual).
      assert.ok(acceptedAny > TRIALS * 0.5, `accepted a draft child in only ${acceptedAny} trials`);
    });
  }

  it('the chi-square check has power: taking the first draft sample unverified fails it', () => {
    const draftRng = new Prng(7);
    const first = new Array<number>(SMALL_VOCAB).fill(0);
    for (let trial = 0; trial < TRIALS; trial++) first[drawFrom(draftOf([...CONTEXT, ROOT_TOKEN]), draftRng.next())]++;
    assert.ok(chiSquare(first, tables.first, TRIALS) > CRITICAL_DF5 * 5);
  });

  it('accepts a sample outright when p >= q, and rejects a sample outside the target support', () => {
    const dist = (ids: number[], probs: number[]): TokenDistribution => ({ ids: Int32Array.from(ids), probs: Float64Array.from(probs) });
    const p = dist([0, 1], [0.5, 0.5]);
    const always = { next: () => 0.999999 };
    assert.equal(rejectionSample(p, { dist: dist([0, 2], [0.4, 0.6]), samples: [0], withReplacement: true, source: 'd', groupRate: 1 }, always), 0);
    // Sample 2 has p = 0: rejected. Residual max(p - q, 0) = {0: 0.1, 1: 0.5} → {1: 5/6, 0: 1/6}.
    const sequence = (...us: number[]) => ({ next: () => us.shift()! });
    const draft = { dist: dist([2, 0], [0.6, 0.4]), samples: [2], withReplacement: true, source: 'd', groupRate: 1 };
    assert.equal(rejectionSample(p, draft, sequence(0.5, 0.8)), 1);
    assert.equal(rejectionSample(p, draft, sequence(0.5, 0.84)), 0);
  });

  it('refuses a sample that q could not have produced', () => {
    const q = { ids: Int32Array.of(0), probs: Float64Array.of(1) };
    const p = { ids: Int32Array.of(1), probs: Float64Array.of(1) };
    assert.throws(() => rejectionSample(p, { dist: q, samples: [1], withReplacement: true, source: 'd', groupRate: 1 }, new Prng(1)), RangeError);
  });
});
