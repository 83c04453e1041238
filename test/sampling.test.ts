import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Prng } from '../src/generate/prng.js';
import {
  Sampler,
  defaultSampling,
  drawFrom,
  greedyToken,
  isGreedy,
  tokenDistribution,
  type SamplingOptions,
  type TokenDistribution,
} from '../src/generate/sampling.js';

/** Options that leave the softmax untouched, so penalties/temperature can be checked exactly. */
const PLAIN: SamplingOptions = { temperature: 1, topK: 0, topP: 1, minP: 0 };

function softmax(logits: number[]): number[] {
  const max = Math.max(...logits);
  const weights = logits.map((l) => Math.exp(l - max));
  const sum = weights.reduce((a, b) => a + b, 0);
  return weights.map((w) => w / sum);
}

/** Asserts the exact kept ids (in order) and their probabilities within `tolerance`. */
function assertDistribution(dist: TokenDistribution, ids: number[], probs: number[], tolerance = 1e-12, context = ''): void {
  assert.deepEqual(Array.from(dist.ids), ids, `kept ids differ ${context}`);
  assert.equal(dist.probs.length, probs.length);
  probs.forEach((p, i) => assert.ok(Math.abs(dist.probs[i] - p) <= tolerance, `prob[${i}]=${dist.probs[i]}, expected ${p} ${context}`));
}

/** Softmax of `logits` listed by probability descending (ties: lower id), as assertDistribution expects. */
function expectedFromLogits(logits: number[]): { ids: number[]; probs: number[] } {
  const probs = softmax(logits);
  const ids = logits.map((_, i) => i).sort((a, b) => probs[b] - probs[a] || a - b);
  return { ids, probs: ids.map((i) => probs[i]) };
}

function assertSoftmaxOf(dist: TokenDistribution, logits: number[]): void {
  const expected = expectedFromLogits(logits);
  assertDistribution(dist, expected.ids, expected.probs);
}

function randomLogits(n: number, seed: number, quantum = 0): Float32Array {
  const rng = new Prng(seed);
  const logits = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const value = (rng.next() + rng.next() + rng.next() - 1.5) * 8;
    logits[i] = quantum > 0 ? Math.round(value / quantum) * quantum : value; // quantized => many ties
  }
  return logits;
}

function randomHistory(length: number, nVocab: number, seed: number): number[] {
  const rng = new Prng(seed);
  return Array.from({ length }, () => Math.floor(rng.next() * nVocab));
}

/**
 * Straightforward reference of the documented pipeline (full sort, no pruning), used to
 * cross-check the optimized paths. Penalized logits are rounded to float32 as documented.
 */
function referenceDistribution(logits: Float32Array, history: number[], options: SamplingOptions): { ids: number[]; probs: number[] } {
  const o = { ...defaultSampling, ...options };
  const l = Array.from(logits);
  const window = o.penaltyLastN === 0 ? [] : o.penaltyLastN < 0 ? history : history.slice(-o.penaltyLastN);
  const counts = new Map<number, number>();
  for (const t of window) counts.set(t, (counts.get(t) ?? 0) + 1);
  for (const [t, c] of counts) {
    const repeated = l[t] <= 0 ? l[t] * o.repeatPenalty : l[t] / o.repeatPenalty;
    l[t] = Math.fround(repeated - c * o.frequencyPenalty - o.presencePenalty);
  }
  let order = l.map((_, i) => i).filter((i) => l[i] > -Infinity);
  order.sort((a, b) => l[b] - l[a] || a - b);
  if (o.temperature <= 0) return { ids: [order[0]], probs: [1] };
  if (o.topK > 0) order = order.slice(0, o.topK);
  const weights = order.map((i) => Math.exp((l[i] - l[order[0]]) / o.temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  const p = weights.map((w) => w / total);
  let keep = order.length;
  if (o.topP < 1) {
    let cumulative = 0;
    keep = p.findIndex((pi) => (cumulative += pi) >= o.topP) + 1 || order.length;
  }
  while (keep > 1 && !(p[keep - 1] >= o.minP * p[0] && p[keep - 1] > 0)) keep--;
  const keptTotal = weights.slice(0, keep).reduce((a, b) => a + b, 0);
  return { ids: order.slice(0, keep), probs: weights.slice(0, keep).map((w) => w / keptTotal) };
}

function chiSquare(counts: number[], probs: number[], draws: number): number {
  return counts.reduce((sum, observed, i) => sum + (observed - probs[i] * draws) ** 2 / (probs[i] * draws), 0);
}

describe('Prng (xoshiro128** seeded by SplitMix64)', () => {
  // Reference values from the C reference implementations (prng.di.unimi.it), state = [lo(a), hi(a), lo(b), hi(b)].
  const vectors = [
    { seed: 0, state: [2065550767, 3793791033, 2713282036, 1853398634], outputs: [3737715805, 2584255861, 2876756834, 3286328325, 1553311962, 1625202774], res53: 0.75919063867070502 },
    { seed: 42, state: [803958421, 3184996902, 2993090819, 686809907], outputs: [1776835114, 4165204688, 17111135, 2317295270, 2792088233, 2554630222], res53: 0.68460201861414161 },
    { seed: -1, state: [459615264, 3839455607, 3690365641, 3919575143], outputs: [477689756, 2493998634, 555695776, 607808419, 61340979, 301466976], res53: 0.57706732748012712 },
  ];

  for (const v of vectors) {
    it(`matches the C reference for seed ${v.seed}`, () => {
      const prng = new Prng(v.seed);
      assert.deepEqual(prng.state(), v.state);
      assert.deepEqual(v.outputs.map(() => prng.nextUint32()), v.outputs);
      assert.equal(prng.next(), v.res53);
    });
  }

  it('clone continues identically and independently', () => {
    const original = new Prng(123);
    for (let i = 0; i < 5; i++) original.next();
    const copy = original.clone();
    const fromOriginal = Array.from({ length: 100 }, () => original.next());
    assert.deepEqual(Array.from({ length: 100 }, () => copy.next()), fromOriginal);
    copy.next();
    assert.notDeepEqual(copy.state(), original.state());
  });

  it('fromState restores a snapshot', () => {
    const prng = new Prng(9);
    prng.next();
    const restored = Prng.fromState(prng.state());
    assert.equal(restored.next(), prng.next());
    assert.throws(() => Prng.fromState([0, 0, 0, 0]), RangeError);
  });

  it('next() stays in [0, 1) with mean near 1/2', () => {
    const prng = new Prng(5);
    let sum = 0;
    for (let i = 0; i < 100_000; i++) {
      const u = prng.next();
      assert.ok(u >= 0 && u < 1);
      sum += u;
    }
    assert.ok(Math.abs(sum / 100_000 - 0.5) < 0.005);
  });

  it('rejects seeds that are not safe integers', () => {
    assert.throws(() => new Prng(1.5), RangeError);
    assert.throws(() => new Prng(2 ** 60), RangeError);
  });
});

describe('options', () => {
  it('defaults to greedy with llama.cpp-like truncation, penalties and bias off', () => {
    assert.deepEqual(defaultSampling, {
      temperature: 0, topK: 40, topP: 0.95, minP: 0.05,
      repeatPenalty: 1, frequencyPenalty: 0, presencePenalty: 0, penaltyLastN: 64, seed: 0, logitBias: {},
    });
    assert.ok(Object.isFrozen(defaultSampling));
  });

  it('isGreedy follows temperature <= 0', () => {
    assert.equal(isGreedy({}), true);
    assert.equal(isGreedy({ temperature: -1 }), true);
    assert.equal(isGreedy({ temperature: 0.7 }), false);
    assert.equal(isGreedy({ temperature: undefined }), true);
  });

  it('rejects invalid values', () => {
    const logits = Float32Array.of(1, 2);
    assert.throws(() => tokenDistribution(logits, [], { temperature: NaN }), RangeError);
    assert.throws(() => tokenDistribution(logits, [], { repeatPenalty: 0 }), RangeError);
    assert.throws(() => tokenDistribution(logits, [], { penaltyLastN: -2 }), RangeError);
    assert.throws(() => new Sampler({ seed: 0.5 }), RangeError);
  });
});

describe('greedy', () => {
  const logits = Float32Array.of(1, 3, 2, 3, -1);

  it('returns the argmax with ties going to the lowest id', () => {
    assert.equal(greedyToken(logits, [], {}), 1);
    assertDistribution(tokenDistribution(logits, [], {}), [1], [1]);
  });

  it('applies the repetition penalty before the argmax (TokenSwift contextual penalty)', () => {
    const penalty = { repeatPenalty: 1.5, penaltyLastN: 1024 };
    assert.equal(greedyToken(logits, [1], penalty), 3); // 3/1.5 = 2 < 3
    assert.equal(greedyToken(logits, [1, 3], penalty), 1); // ids 1, 2, 3 all at 2: lowest wins
    assert.equal(greedyToken(logits, [1, 3, 2], penalty), 1); // 2/1.5 for id 2 too: 1 and 3 tie at 2
    assert.equal(greedyToken(logits, [1, 3, 2], { ...penalty, penaltyLastN: 1 }), 1); // only id 2 in window
    assert.equal(greedyToken(logits, [0, 1], penalty), 3);
  });

  it('agrees with the reference on a large vocabulary with penalties', () => {
    const big = randomLogits(152_064, 1, 0.25);
    const history = randomHistory(2000, big.length, 2);
    for (const options of [{}, { repeatPenalty: 1.2, penaltyLastN: 1024 }, { frequencyPenalty: 3, penaltyLastN: -1 }]) {
      assert.equal(greedyToken(big, history, options), referenceDistribution(big, history, options).ids[0]);
    }
  });

  it('ignores NaN and -Infinity', () => {
    assert.equal(greedyToken(Float32Array.of(NaN, -Infinity, -5, NaN), [], {}), 2);
  });
});

describe('penalties (exact)', () => {
  it('repetition penalty divides positive and multiplies non-positive logits, once per distinct token', () => {
    const logits = Float32Array.of(2, -1, 0.5, 1.5, 0);
    const dist = tokenDistribution(logits, [0, 1, 0, 4], { ...PLAIN, repeatPenalty: 2 });
    assertSoftmaxOf(dist, [1, -2, 0.5, 1.5, 0]);
  });

  it('frequency penalty counts occurrences, presence penalty applies once', () => {
    const logits = Float32Array.of(1, 1, 1, 1);
    const dist = tokenDistribution(logits, [2, 2, 2, 1], { ...PLAIN, frequencyPenalty: 0.5, presencePenalty: 0.25 });
    assertSoftmaxOf(dist, [1, 0.25, -0.75, 1]);
  });

  it('combines repetition, frequency and presence in llama.cpp order', () => {
    // 3 / 1.5 - 2 * 0.5 - 1 = 0
    const dist = tokenDistribution(Float32Array.of(3, 0), [0, 0], { ...PLAIN, repeatPenalty: 1.5, frequencyPenalty: 0.5, presencePenalty: 1 });
    assertDistribution(dist, [0, 1], [0.5, 0.5]);
  });

  it('only looks at the last penaltyLastN tokens (-1 = all, 0 = off)', () => {
    const logits = Float32Array.of(1, 1, 1);
    const history = [0, 0, 1, 2];
    const penalty = { ...PLAIN, frequencyPenalty: 1 };
    assertSoftmaxOf(tokenDistribution(logits, history, { ...penalty, penaltyLastN: 2 }), [1, 0, 0]);
    assertSoftmaxOf(tokenDistribution(logits, history, { ...penalty, penaltyLastN: -1 }), [-1, 0, 0]);
    assertSoftmaxOf(tokenDistribution(logits, history, { ...penalty, penaltyLastN: 0 }), [1, 1, 1]);
  });

  it('rejects history tokens outside the vocabulary', () => {
    assert.throws(() => greedyToken(Float32Array.of(1, 2), [2], { repeatPenalty: 1.1 }), RangeError);
    assert.throws(() => tokenDistribution(Float32Array.of(1, 2), [-1], { ...PLAIN, presencePenalty: 1 }), RangeError);
  });

  it('never mutates the logits', () => {
    const logits = randomLogits(1000, 3);
    const before = logits.slice();
    const history = randomHistory(300, 1000, 4);
    tokenDistribution(logits, history, { temperature: 0.8, repeatPenalty: 1.3, frequencyPenalty: 0.2 });
    greedyToken(logits, history, { repeatPenalty: 1.3, presencePenalty: 2 });
    assert.deepEqual(logits, before);
  });
});

describe('logit bias (exact)', () => {
  it('adds to the named logits: -100 bans the argmax, +100 forces another token, greedy and sampled alike', () => {
    const logits = Float32Array.of(3, 1, 2, 0);
    assert.equal(greedyToken(logits, [], { logitBias: { 0: -100 } }), 2);
    assert.equal(greedyToken(logits, [], { logitBias: { 3: 100 } }), 3);
    assertSoftmaxOf(tokenDistribution(logits, [], { ...PLAIN, logitBias: { 0: -1, 3: 0.5 } }), [2, 1, 2, 0.5]);
  });

  it('comes before the penalties, as in llama.cpp (a repetition penalty scales the biased logit)', () => {
    // (1 + 3) / 2 = 2 for token 1, seen once; token 0 is neither biased nor seen.
    assertSoftmaxOf(tokenDistribution(Float32Array.of(2, 1), [1], { ...PLAIN, repeatPenalty: 2, logitBias: { 1: 3 } }), [2, 2]);
  });

  it('rejects ids that are not tokens and biases that are not finite', () => {
    assert.throws(() => greedyToken(Float32Array.of(1, 2), [], { logitBias: { 2: 1 } }), /outside a 2-token vocabulary/);
    assert.throws(() => greedyToken(Float32Array.of(1, 2), [], { logitBias: { 0: Number.POSITIVE_INFINITY } }), /must be finite/);
    assert.throws(() => greedyToken(Float32Array.of(1, 2), [], { logitBias: { ['x' as unknown as number]: 1 } }), /not a token id/);
  });
});

describe('temperature and truncation (exact kept sets)', () => {
  it('divides logits by the temperature', () => {
    const logits = Float32Array.of(2, 1, 0);
    assertSoftmaxOf(tokenDistribution(logits, [], { ...PLAIN, temperature: 2 }), [1, 0.5, 0]);
    assertSoftmaxOf(tokenDistribution(logits, [], { ...PLAIN, temperature: 0.5 }), [4, 2, 0]);
  });

  it('top-k keeps the k largest logits, ties to the lowest ids', () => {
    const logits = Float32Array.of(0.5, 2, 1, 2, -1);
    assertDistribution(tokenDistribution(logits, [], { ...PLAIN, topK: 2 }), [1, 3], [0.5, 0.5]);
    const top3 = softmax([2, 2, 1]);
    assertDistribution(tokenDistribution(logits, [], { ...PLAIN, topK: 3 }), [1, 3, 2], top3);
    const tiedAtBoundary = Float32Array.of(2, 1, 1, 1, 0);
    assertDistribution(tokenDistribution(tiedAtBoundary, [], { ...PLAIN, topK: 2 }), [0, 1], softmax([2, 1]));
  });

  // probabilities 0.5, 0.25, 0.15, 0.1 on ids 3, 0, 2, 1 (float32 logits: compare to 1e-6)
  const quarterLogits = new Float32Array(4);
  [[3, 0.5], [0, 0.25], [2, 0.15], [1, 0.1]].forEach(([id, p]) => (quarterLogits[id] = Math.log(p)));
  const check = (options: SamplingOptions, ids: number[], probs: number[]): void =>
    assertDistribution(tokenDistribution(quarterLogits, [], { ...PLAIN, ...options }), ids, probs, 1e-6);

  it('top-p keeps the smallest prefix reaching p, at least one token', () => {
    check({ topP: 0.7 }, [3, 0], [2 / 3, 1 / 3]);
    check({ topP: 0.8 }, [3, 0, 2], [0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9]);
    check({ topP: 0.1 }, [3], [1]);
    check({ topP: 0 }, [3], [1]);
    // exactly representable: four equal logits give p = 0.25 each, so cumulative hits 0.5 exactly
    assertDistribution(tokenDistribution(new Float32Array(4), [], { ...PLAIN, topP: 0.5 }), [0, 1], [0.5, 0.5]);
  });

  it('min-p keeps tokens with p >= minP * pmax', () => {
    check({ minP: 0.4 }, [3, 0], [2 / 3, 1 / 3]);
    check({ minP: 0.25 }, [3, 0, 2], [0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9]);
    check({ minP: 0.9 }, [3], [1]);
  });

  it('computes top-p on the renormalized top-k set', () => {
    check({ topP: 0.8, topK: 3 }, [3, 0], [2 / 3, 1 / 3]); // cumulative 0.556, 0.833
    check({ topP: 0.8, topK: 0 }, [3, 0, 2], [0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9]); // 0.5, 0.75, 0.9
  });

  it('applies temperature before top-p and min-p', () => {
    // T = 0.5 squares the probabilities: 0.25, 0.0625, 0.0225, 0.01 (/0.345)
    check({ temperature: 0.5, topP: 0.8 }, [3, 0], [0.8, 0.2]);
    // min-p 0.22 vs p/pmax = 1, 0.5, 0.3, 0.2 at T = 1 and 1, 0.25, 0.09, 0.04 at T = 0.5
    check({ temperature: 0.5, minP: 0.22 }, [3, 0], [0.8, 0.2]);
    check({ temperature: 1, minP: 0.22 }, [3, 0, 2], [0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9]);
  });

  it('gives NaN and -Infinity logits probability 0, and refuses when nothing is finite', () => {
    const logits = Float32Array.of(-Infinity, 1, NaN, 1);
    assertDistribution(tokenDistribution(logits, [], PLAIN), [1, 3], [0.5, 0.5]);
    assertDistribution(tokenDistribution(logits, [], { ...PLAIN, topK: 3 }), [1, 3], [0.5, 0.5]);
    assert.throws(() => tokenDistribution(Float32Array.of(-Infinity, -Infinity), [], PLAIN), RangeError);
  });

  it('drops tokens whose probability underflows to 0', () => {
    assertDistribution(tokenDistribution(Float32Array.of(0, -1e6, -2e6), [], { ...PLAIN, topK: 2 }), [0], [1]);
    assertDistribution(tokenDistribution(Float32Array.of(0, -1e6, -2e6), [], PLAIN), [0], [1]);
  });
});

describe('distribution invariants and optimized paths', () => {
  const optionGrid: SamplingOptions[] = [
    { temperature: 0 },
    { temperature: 0.8 },
    { temperature: 1, topK: 0, topP: 0.9, minP: 0 },
    { temperature: 1.3, topK: 0, topP: 1, minP: 0 },
    { temperature: 0.7, topK: 0, topP: 0.95, minP: 0.05 },
    { temperature: 0.6, topK: 100, topP: 0.8, minP: 0.01, repeatPenalty: 1.2, penaltyLastN: 1024 },
    { temperature: 1, topK: 7, topP: 1, minP: 0, frequencyPenalty: 0.5, presencePenalty: 0.3, penaltyLastN: -1 },
    { temperature: 2, topK: 0, topP: 0.5, minP: 0, repeatPenalty: 0.8 },
  ];

  it('is sorted, positive, unique, in range and sums to 1', () => {
    const logits = randomLogits(5000, 11, 0.125);
    const history = randomHistory(400, logits.length, 12);
    for (const options of optionGrid) {
      const dist = tokenDistribution(logits, history, options);
      const sum = dist.probs.reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(sum - 1) < 1e-12, `sum ${sum} for ${JSON.stringify(options)}`);
      assert.equal(new Set(dist.ids).size, dist.ids.length);
      dist.probs.forEach((p, i) => {
        assert.ok(p > 0 && dist.ids[i] >= 0 && dist.ids[i] < logits.length);
        if (i > 0) assert.ok(p <= dist.probs[i - 1]);
      });
    }
  });

  for (const [n, quantum] of [[5000, 0.125], [152_064, 0]] as const) {
    it(`matches the full-sort reference (n_vocab ${n})`, () => {
      const logits = randomLogits(n, 21, quantum);
      const history = randomHistory(1500, n, 22);
      for (const options of optionGrid) {
        const expected = referenceDistribution(logits, history, options);
        assertDistribution(tokenDistribution(logits, history, options), expected.ids, expected.probs, 1e-12, JSON.stringify(options));
      }
    });
  }

  it('is a pure function (module scratch buffers do not leak between calls)', () => {
    const big = randomLogits(20_000, 31);
    const small = randomLogits(50, 32);
    const options = { temperature: 0.9, topK: 0, topP: 0.97, minP: 0, repeatPenalty: 1.5 };
    const first = tokenDistribution(big, [1, 2, 3], options);
    tokenDistribution(small, [4, 5], options);
    tokenDistribution(big, [7, 8, 9], options);
    assert.deepEqual(tokenDistribution(big, [1, 2, 3], options), first);
  });
});

describe('drawFrom', () => {
  const dist: TokenDistribution = { ids: Int32Array.of(5, 3, 7), probs: Float64Array.of(0.5, 0.3, 0.2) };

  it('inverts the CDF', () => {
    assert.deepEqual([0, 0.4999, 0.5, 0.7999, 0.81, 0.9999999].map((u) => drawFrom(dist, u)), [5, 5, 3, 3, 7, 7]);
  });

  it('rejects u outside [0, 1)', () => {
    for (const u of [1, -0.01, NaN]) assert.throws(() => drawFrom(dist, u), RangeError);
  });

  // df = 4, critical value at alpha = 0.001 is 18.467; fixed seed makes the outcome deterministic.
  const CHI2_CRITICAL_DF4 = 18.467;
  const target = { ids: Int32Array.of(0, 1, 2, 3, 4), probs: Float64Array.of(0.4, 0.25, 0.2, 0.1, 0.05) };

  function countDraws(draw: () => number, draws: number, categories: number): number[] {
    const counts = new Array<number>(categories).fill(0);
    for (let i = 0; i < draws; i++) counts[draw()]++;
    return counts;
  }

  it('matches the distribution empirically (chi-square, 20k draws)', () => {
    const rng = new Prng(2024);
    const counts = countDraws(() => drawFrom(target, rng.next()), 20_000, 5);
    assert.ok(chiSquare(counts, Array.from(target.probs), 20_000) < CHI2_CRITICAL_DF4, `counts ${counts}`);
  });

  it('the chi-square check detects a wrong distribution', () => {
    const rng = new Prng(2024);
    const counts = countDraws(() => drawFrom(target, rng.next()), 20_000, 5);
    assert.ok(chiSquare(counts, [0.37, 0.28, 0.2, 0.1, 0.05], 20_000) > CHI2_CRITICAL_DF4);
  });

  it('Sampler draws follow tokenDistribution (chi-square, 20k draws)', () => {
    const logits = Float32Array.of(1, 0.5, 2, -1, 0.25);
    const sampler = new Sampler({ ...PLAIN, seed: 77 });
    const counts = countDraws(() => sampler.next(logits, []), 20_000, 5);
    const probs = softmax(Array.from(logits));
    assert.ok(chiSquare(counts, probs, 20_000) < CHI2_CRITICAL_DF4, `counts ${counts}`);
  });
});

describe('Sampler', () => {
  const nVocab = 3000;
  const stepLogits = Array.from({ length: 64 }, (_, step) => randomLogits(nVocab, 1000 + step));
  const options: SamplingOptions = { temperature: 0.9, topK: 50, topP: 0.95, repeatPenalty: 1.1, penaltyLastN: 32 };

  function generate(sampler: Sampler): number[] {
    const history = [1, 2, 3];
    for (const logits of stepLogits) history.push(sampler.next(logits, history));
    return history.slice(3);
  }

  it('is deterministic per seed and differs across seeds', () => {
    const a = generate(new Sampler({ ...options, seed: 7 }));
    assert.deepEqual(generate(new Sampler({ ...options, seed: 7 })), a);
    assert.notDeepEqual(generate(new Sampler({ ...options, seed: 8 })), a);
  });

  it('equals tokenDistribution + drawFrom with one Prng draw per token (verifier equivalence)', () => {
    const sampler = new Sampler({ ...options, seed: 7 });
    const tokens = generate(sampler);
    const rng = new Prng(7);
    const history = [1, 2, 3];
    for (const logits of stepLogits) history.push(drawFrom(tokenDistribution(logits, history, options), rng.next()));
    assert.deepEqual(history.slice(3), tokens);
    assert.deepEqual(sampler.rng.state(), rng.state());
  });

  it('greedy uses the argmax and leaves the Prng untouched', () => {
    const sampler = new Sampler({ repeatPenalty: 1.2, seed: 3 });
    const before = sampler.rng.state();
    const tokens = generate(sampler);
    const history = [1, 2, 3];
    for (const logits of stepLogits) history.push(greedyToken(logits, history, { repeatPenalty: 1.2 }));
    assert.deepEqual(tokens, history.slice(3));
    assert.deepEqual(sampler.rng.state(), before);
  });

  it('exposes resolved, frozen options', () => {
    const sampler = new Sampler({ temperature: 0.5 });
    assert.deepEqual(sampler.options, { ...defaultSampling, temperature: 0.5 });
    assert.ok(Object.isFrozen(sampler.options));
  });
});
