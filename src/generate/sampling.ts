/**
 * Token samplers over a llama.cpp logits vector.
 *
 * Losslessness contract for speculative decoding: the sampled distribution is a pure function of
 * (logits, history, options) — no hidden state; a Sampler's constraint is a function of the
 * tokens it emitted, committed in order — and randomness enters only through one uniform
 * draw per sampled token (`drawFrom(dist, rng.next())`). A verifier that recomputes the
 * distribution at each position and draws once per emitted token therefore reproduces plain
 * decoding exactly.
 *
 * Pipeline: logit bias → penalties → temperature → (greedy: argmax) → top-k → softmax → top-p →
 * min-p → renormalize. Note that temperature precedes top-k/top-p/min-p here (Hugging Face order), while
 * llama.cpp's default sampler chain applies temperature after min-p.
 *
 * The logits array is a zero-copy view of llama.cpp memory: it is only ever read.
 */
import { Prng } from './prng.js';

export interface SamplingOptions {
  /** <= 0 means greedy (argmax). */
  temperature?: number;
  /** <= 0 or >= n_vocab disables top-k. */
  topK?: number;
  /** >= 1 disables top-p. */
  topP?: number;
  /** <= 0 disables min-p. */
  minP?: number;
  /** θ: positive logits of recent tokens are divided by θ, negative ones multiplied; 1 = off. */
  repeatPenalty?: number;
  /** Subtracted once per occurrence in the window (OpenAI semantics); 0 = off. */
  frequencyPenalty?: number;
  /** Subtracted once if the token occurs in the window (OpenAI semantics); 0 = off. */
  presencePenalty?: number;
  /** Penalty window: last N history tokens; 0 = penalties off, -1 = whole history. */
  penaltyLastN?: number;
  /** Seed of the Sampler's Prng (safe integer). */
  seed?: number;
  /** Added to these tokens' logits before anything else (OpenAI's `logit_bias`; -100 bans a token, +100 all but forces it). */
  logitBias?: Readonly<Record<number, number>>;
}

/** Greedy is this engine's default; the other values only matter once temperature > 0. */
export const defaultSampling: Required<SamplingOptions> = Object.freeze({
  temperature: 0,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  repeatPenalty: 1,
  frequencyPenalty: 0,
  presencePenalty: 0,
  penaltyLastN: 64,
  seed: 0,
  logitBias: Object.freeze({}),
});

/** Kept tokens sorted by probability descending (ties: lower id first); probs > 0, sum to 1. */
export interface TokenDistribution {
  ids: Int32Array;
  probs: Float64Array;
}

/**
 * What resolveSampling returned: complete, valid and frozen, so they are returned as they are.
 * Sampling resolves its options once per token (a Sampler's, every step): resolving them anew
 * took a tenth of the JS time of a plain step on the tiny testbed.
 */
const resolvedSamplings = new WeakSet<object>();

/** Fills in defaults (undefined fields only) and rejects values that would silently misbehave; the result is frozen. */
export function resolveSampling(options: SamplingOptions): Readonly<Required<SamplingOptions>> {
  if (resolvedSamplings.has(options)) return options as Readonly<Required<SamplingOptions>>;
  const resolved: Required<SamplingOptions> = { ...defaultSampling };
  for (const key of Object.keys(defaultSampling) as (keyof SamplingOptions)[]) {
    if (options[key] !== undefined) Object.assign(resolved, { [key]: options[key] });
  }
  validate(resolved);
  resolvedSamplings.add(Object.freeze(resolved));
  return resolved;
}

function validate(o: Required<SamplingOptions>): void {
  const fail = (name: string, why: string): never => {
    throw new RangeError(`sampling option ${name}=${o[name as keyof SamplingOptions]} ${why}`);
  };
  for (const [name, value] of Object.entries(o)) if (Number.isNaN(value)) fail(name, 'is NaN');
  if (!Number.isInteger(o.topK)) fail('topK', 'must be an integer');
  if (!Number.isInteger(o.penaltyLastN) || o.penaltyLastN < -1) fail('penaltyLastN', 'must be an integer >= -1');
  if (!(o.repeatPenalty > 0) || !Number.isFinite(o.repeatPenalty)) fail('repeatPenalty', 'must be finite and > 0');
  if (!Number.isFinite(o.frequencyPenalty)) fail('frequencyPenalty', 'must be finite');
  if (!Number.isFinite(o.presencePenalty)) fail('presencePenalty', 'must be finite');
  if (!Number.isSafeInteger(o.seed)) fail('seed', 'must be a safe integer');
  for (const [token, bias] of Object.entries(o.logitBias)) {
    if (!/^\d+$/.test(token)) throw new RangeError(`sampling option logitBias names ${JSON.stringify(token)}, not a token id`);
    if (!Number.isFinite(bias)) throw new RangeError(`sampling option logitBias[${token}]=${bias} must be finite`);
  }
}

export function isGreedy(o: SamplingOptions): boolean {
  return resolveSampling(o).temperature <= 0;
}

// ---------------------------------------------------------------------------------------------
// Bias and penalties: only biased and history tokens change, so they are computed as a small
// sorted list of overrides; greedy scans around them, the stochastic path copies once into a
// reused buffer.
// ---------------------------------------------------------------------------------------------

/** Biased and penalized logits of the tokens they touch; ids ascending, unique. */
interface LogitOverrides {
  ids: Int32Array;
  logits: Float32Array;
}

const NO_OVERRIDES: LogitOverrides = { ids: new Int32Array(0), logits: new Float32Array(0) };

function penaltiesActive(o: Required<SamplingOptions>): boolean {
  if (o.penaltyLastN === 0) return false;
  return o.repeatPenalty !== 1 || o.frequencyPenalty !== 0 || o.presencePenalty !== 0;
}

function countWindow(history: ArrayLike<number>, lastN: number, nVocab: number): Map<number, number> {
  const start = lastN < 0 ? 0 : Math.max(0, history.length - lastN);
  const counts = new Map<number, number>();
  for (let i = start; i < history.length; i++) {
    const token = history[i];
    if (!Number.isInteger(token) || token < 0 || token >= nVocab) {
      throw new RangeError(`history[${i}]=${token} is not a token id of a ${nVocab}-token vocabulary`);
    }
    counts.set(token, (counts.get(token) ?? 0) + 1);
  }
  return counts;
}

/**
 * llama.cpp order: repetition penalty (once per distinct token), then frequency and presence.
 * Rounded to float32 like llama.cpp's logits, which also keeps every logit a float32 value
 * (see sortByLogitDescending).
 */
function penalize(logit: number, count: number, o: Required<SamplingOptions>): number {
  const repeated = logit <= 0 ? logit * o.repeatPenalty : logit / o.repeatPenalty;
  return Math.fround(repeated - count * o.frequencyPenalty - o.presencePenalty);
}

function logitOverrides(logits: Float32Array, history: ArrayLike<number>, o: Required<SamplingOptions>): LogitOverrides {
  const biased = Object.keys(o.logitBias);
  const penalties = penaltiesActive(o);
  if (!penalties && biased.length === 0) return NO_OVERRIDES;
  const counts = penalties ? countWindow(history, o.penaltyLastN, logits.length) : new Map<number, number>();
  for (const token of biased) {
    const id = Number(token);
    if (id >= logits.length) throw new RangeError(`logitBias names token ${id}, outside a ${logits.length}-token vocabulary`);
    if (!counts.has(id)) counts.set(id, 0);
  }
  const ids = Int32Array.from(counts.keys()).sort();
  // llama.cpp's order: the bias first, then the penalties (a repetition penalty scales the biased logit).
  const adjusted = Float32Array.from(ids, (id) => {
    const logit = Math.fround(logits[id] + (o.logitBias[id] ?? 0));
    return penalties ? penalize(logit, counts.get(id)!, o) : logit;
  });
  return { ids, logits: adjusted };
}

let penalizedScratch = new Float32Array(0);

/**
 * The logits the stochastic pipeline reads: the llama.cpp view itself when nothing is penalized,
 * otherwise one copy into a module-level buffer reused across calls (never returned to callers),
 * so the several passes below stay plain typed-array loops.
 */
function penalizedView(logits: Float32Array, overrides: LogitOverrides): Float32Array {
  if (overrides.ids.length === 0) return logits;
  if (penalizedScratch.length < logits.length) penalizedScratch = new Float32Array(logits.length);
  const view = penalizedScratch.subarray(0, logits.length);
  view.set(logits);
  for (let j = 0; j < overrides.ids.length; j++) view[overrides.ids[j]] = overrides.logits[j];
  return view;
}

// ---------------------------------------------------------------------------------------------
// Greedy
// ---------------------------------------------------------------------------------------------

/** First maximum of logits[from..to) if it beats `best`, else `best` (strict >: ties keep the lower id). */
function argmaxRange(logits: Float32Array, from: number, to: number, best: Scored): Scored {
  let bestId = best.id;
  let bestLogit = best.logit;
  for (let id = from; id < to; id++) {
    if (logits[id] > bestLogit) {
      bestLogit = logits[id];
      bestId = id;
    }
  }
  return bestId === best.id ? best : { id: bestId, logit: bestLogit };
}

function penalizedArgmax(logits: Float32Array, overrides: LogitOverrides): number {
  // Scan the untouched segments between overridden ids directly: a tight loop, no callback.
  let best: Scored = { id: -1, logit: -Infinity };
  let start = 0;
  for (let j = 0; j < overrides.ids.length; j++) {
    best = argmaxRange(logits, start, overrides.ids[j], best);
    if (overrides.logits[j] > best.logit) best = { id: overrides.ids[j], logit: overrides.logits[j] };
    start = overrides.ids[j] + 1;
  }
  best = argmaxRange(logits, start, logits.length, best);
  // All logits -Infinity/NaN: nothing beats anything, so answer the lowest id as a tie would.
  return best.id < 0 ? 0 : best.id;
}

/** Argmax after penalties; ties go to the lowest id. One O(n_vocab) scan, no vocabulary-sized allocation. */
export function greedyToken(logits: Float32Array, history: ArrayLike<number>, options: SamplingOptions): number {
  if (logits.length === 0) throw new RangeError('empty logits');
  return penalizedArgmax(logits, logitOverrides(logits, history, resolveSampling(options)));
}

// ---------------------------------------------------------------------------------------------
// Stochastic pipeline
// ---------------------------------------------------------------------------------------------

/**
 * Candidates sorted by weight descending (ties: lower id first). weight = exp((logit - max)/T), so
 * the first weight is 1 and weight equals p/pmax; `normalizer` is the weight sum over the whole
 * softmax domain (the top-k set, or the vocabulary), which may include tokens not listed.
 */
interface Candidates {
  ids: Int32Array;
  weights: Float64Array;
  normalizer: number;
}

export function tokenDistribution(logits: Float32Array, history: ArrayLike<number>, options: SamplingOptions): TokenDistribution {
  const o = resolveSampling(options);
  if (logits.length === 0) throw new RangeError('empty logits');
  const overrides = logitOverrides(logits, history, o);
  if (o.temperature <= 0) {
    return { ids: Int32Array.of(penalizedArgmax(logits, overrides)), probs: Float64Array.of(1) };
  }
  const penalized = penalizedView(logits, overrides);
  const topKActive = o.topK > 0 && o.topK < logits.length;
  const candidates = topKActive ? topKCandidates(penalized, o.topK, o.temperature) : vocabularyCandidates(penalized, o);
  return truncateAndNormalize(candidates, o.topP, o.minP);
}

/** Partial selection with a size-k min-heap (root = worst kept): O(n log k), then sorts only k. */
function topKCandidates(logits: Float32Array, k: number, temperature: number): Candidates {
  const order = highestLogits(logits, k);
  const maxLogit = assertUsable(order.length > 0 ? order[0].logit : -Infinity);
  const ids = new Int32Array(order.length);
  const weights = new Float64Array(order.length);
  let normalizer = 0;
  for (let i = 0; i < order.length; i++) {
    ids[i] = order[i].id;
    weights[i] = Math.exp((order[i].logit - maxLogit) / temperature);
    normalizer += weights[i];
  }
  return { ids, weights, normalizer };
}

/**
 * Softmax over the whole vocabulary, listing only tokens that can survive top-p/min-p, so a
 * 152k vocabulary is not sorted when top-p < 1 or min-p > 0.
 */
function vocabularyCandidates(logits: Float32Array, o: Required<SamplingOptions>): Candidates {
  let maxLogit = -Infinity;
  for (let id = 0; id < logits.length; id++) if (logits[id] > maxLogit) maxLogit = logits[id];
  assertUsable(maxLogit);
  const weights = vocabularyWeights(logits, maxLogit, o.temperature);
  let normalizer = 0;
  for (let id = 0; id < weights.length; id++) normalizer += weights[id];
  const cutoff = survivalCutoff(o.topP, o.minP, logits.length);
  let survivorCount = 0;
  for (let id = 0; id < weights.length; id++) if (weights[id] > 0 && weights[id] >= cutoff) survivorCount++;
  const ids = new Int32Array(survivorCount);
  const survivorLogits = new Float32Array(survivorCount);
  for (let id = 0, i = 0; id < weights.length; id++) {
    if (weights[id] > 0 && weights[id] >= cutoff) {
      ids[i] = id;
      survivorLogits[i++] = logits[id];
    }
  }
  const sorted = sortByLogitDescending(ids, survivorLogits, logits.length);
  const sortedWeights = sorted.logits; // reused in place: logit -> weight
  for (let i = 0; i < sortedWeights.length; i++) sortedWeights[i] = Math.exp((sortedWeights[i] - maxLogit) / o.temperature);
  return { ids: sorted.ids, weights: sortedWeights, normalizer };
}

let weightScratch = new Float64Array(0);

/** exp((logit - max)/T) per token, 0 for -Infinity/NaN; in a module-level buffer reused across calls. */
function vocabularyWeights(logits: Float32Array, maxLogit: number, temperature: number): Float64Array {
  if (weightScratch.length < logits.length) weightScratch = new Float64Array(logits.length);
  const weights = weightScratch.subarray(0, logits.length);
  for (let id = 0; id < logits.length; id++) {
    weights[id] = logits[id] > -Infinity ? Math.exp((logits[id] - maxLogit) / temperature) : 0;
  }
  return weights;
}

/**
 * Weight below which a token can be neither in the min-p set nor in the top-p nucleus.
 * Tokens with weight < (1 - topP)/n carry less than n·(1 - topP)/n / normalizer <= 1 - topP of the
 * mass together (normalizer >= 1), so the tokens at or above it already reach topP and the
 * nucleus — the shortest sorted prefix reaching topP — lies among them.
 */
function survivalCutoff(topP: number, minP: number, nVocab: number): number {
  const nucleusCutoff = topP < 1 ? (1 - Math.max(topP, 0)) / nVocab : 0;
  return Math.max(nucleusCutoff, minP);
}

const float32Scratch = new Float32Array(1);
const float32Bits = new Uint32Array(float32Scratch.buffer);
const MAX_PACKED_ID_BITS = 21; // 32 logit bits + 21 id bits = 53, the exact-integer range of a double

/**
 * Sorts by (logit descending, id ascending). Logits are float32 values, so each (logit, id) pair
 * packs into one exactly representable double and the native typed-array sort (about 10x faster
 * than a comparator sort) orders them; this matters when a whole 152k vocabulary survives.
 */
function sortByLogitDescending(ids: Int32Array, logits: Float32Array, nVocab: number): { ids: Int32Array; logits: Float64Array } {
  const idBits = Math.max(1, Math.ceil(Math.log2(nVocab)));
  if (idBits > MAX_PACKED_ID_BITS) return sortWithComparator(ids, logits);
  const idScale = 2 ** idBits;
  // Plain loops: TypedArray.from with a mapping function is several times slower in V8.
  const keys = new Float64Array(ids.length);
  for (let i = 0; i < ids.length; i++) keys[i] = (0xffffffff - sortableBits(logits[i])) * idScale + ids[i];
  keys.sort();
  const sortedIds = new Int32Array(keys.length);
  const sortedLogits = new Float64Array(keys.length);
  for (let i = 0; i < keys.length; i++) {
    sortedIds[i] = keys[i] % idScale;
    sortedLogits[i] = fromSortableBits(0xffffffff - Math.floor(keys[i] / idScale));
  }
  return { ids: sortedIds, logits: sortedLogits };
}

function sortWithComparator(ids: Int32Array, logits: Float32Array): { ids: Int32Array; logits: Float64Array } {
  const order = Array.from(ids, (_, i) => i).sort((a, b) => logits[b] - logits[a] || ids[a] - ids[b]);
  return { ids: Int32Array.from(order, (i) => ids[i]), logits: Float64Array.from(order, (i) => logits[i]) };
}

/** IEEE-754 trick: maps float32 values to uint32 so that integer order equals numeric order. */
function sortableBits(value: number): number {
  float32Scratch[0] = value + 0; // -0 + 0 = +0: numerically equal zeros must tie (then id decides)
  const bits = float32Bits[0];
  return bits & 0x80000000 ? ~bits >>> 0 : (bits | 0x80000000) >>> 0;
}

function fromSortableBits(sortable: number): number {
  float32Bits[0] = sortable & 0x80000000 ? sortable & 0x7fffffff : ~sortable >>> 0;
  return float32Scratch[0];
}

/** Top-p then min-p: both keep a prefix of the sorted candidates, and at least one token. */
function truncateAndNormalize(c: Candidates, topP: number, minP: number): TokenDistribution {
  let keep = topP < 1 ? nucleusSize(c, topP) : c.ids.length;
  // weight = p/pmax, so min-p is a weight threshold; weights that underflowed to 0 go too.
  while (keep > 1 && !(c.weights[keep - 1] >= minP && c.weights[keep - 1] > 0)) keep--;
  let keptMass = 0;
  for (let i = 0; i < keep; i++) keptMass += c.weights[i];
  const probs = new Float64Array(keep);
  for (let i = 0; i < keep; i++) probs[i] = c.weights[i] / keptMass;
  return { ids: c.ids.slice(0, keep), probs };
}

/** Smallest sorted prefix whose probability (over the softmax domain) reaches topP; >= 1. */
function nucleusSize(c: Candidates, topP: number): number {
  let cumulative = 0;
  for (let i = 0; i < c.ids.length; i++) {
    cumulative += c.weights[i] / c.normalizer;
    if (cumulative >= topP) return i + 1;
  }
  return c.ids.length;
}

function assertUsable(maxLogit: number): number {
  if (!Number.isFinite(maxLogit)) {
    throw new RangeError(`cannot sample: largest logit is ${maxLogit} (need a finite maximum)`);
  }
  return maxLogit;
}

export interface Scored {
  id: number;
  logit: number;
}

/** The k highest logits, best first (ties: lower id first); NaN and -Infinity, probability 0, are never kept. */
export function highestLogits(logits: Float32Array, k: number): Scored[] {
  const heap = new WorstFirstHeap(k);
  for (let id = 0; id < logits.length; id++) {
    if (logits[id] > -Infinity) heap.offer(id, logits[id]);
  }
  return heap.sortedBestFirst();
}

/** Fixed-capacity binary min-heap ordered by "worse": lower logit, or equal logit and higher id. */
class WorstFirstHeap {
  private readonly ids: Int32Array;
  private readonly logits: Float64Array;
  private size = 0;

  constructor(private readonly capacity: number) {
    this.ids = new Int32Array(capacity);
    this.logits = new Float64Array(capacity);
  }

  offer(id: number, logit: number): void {
    if (this.size < this.capacity) {
      this.ids[this.size] = id;
      this.logits[this.size] = logit;
      this.siftUp(this.size++);
    } else if (this.isWorse(0, id, logit)) {
      this.ids[0] = id;
      this.logits[0] = logit;
      this.siftDown(0);
    }
  }

  sortedBestFirst(): Scored[] {
    const entries: Scored[] = [];
    for (let i = 0; i < this.size; i++) entries.push({ id: this.ids[i], logit: this.logits[i] });
    return entries.sort((a, b) => b.logit - a.logit || a.id - b.id);
  }

  /** Is heap slot `slot` worse than (id, logit)? */
  private isWorse(slot: number, id: number, logit: number): boolean {
    const slotLogit = this.logits[slot];
    return slotLogit < logit || (slotLogit === logit && this.ids[slot] > id);
  }

  private siftUp(slot: number): void {
    while (slot > 0) {
      const parent = (slot - 1) >> 1;
      if (!this.isWorse(slot, this.ids[parent], this.logits[parent])) return;
      this.swap(slot, parent);
      slot = parent;
    }
  }

  private siftDown(slot: number): void {
    for (;;) {
      let worst = slot;
      const left = 2 * slot + 1;
      const right = left + 1;
      if (left < this.size && this.isWorse(left, this.ids[worst], this.logits[worst])) worst = left;
      if (right < this.size && this.isWorse(right, this.ids[worst], this.logits[worst])) worst = right;
      if (worst === slot) return;
      this.swap(slot, worst);
      slot = worst;
    }
  }

  private swap(a: number, b: number): void {
    [this.ids[a], this.ids[b]] = [this.ids[b], this.ids[a]];
    [this.logits[a], this.logits[b]] = [this.logits[b], this.logits[a]];
  }
}

// ---------------------------------------------------------------------------------------------
// Drawing
// ---------------------------------------------------------------------------------------------

/** Inverse CDF: the first token whose cumulative probability exceeds u, for u in [0, 1). */
export function drawFrom(dist: TokenDistribution, u: number): number {
  if (!(u >= 0 && u < 1)) throw new RangeError(`drawFrom needs u in [0, 1), got ${u}`);
  if (dist.ids.length === 0) throw new RangeError('drawFrom on an empty distribution');
  let cumulative = 0;
  for (let i = 0; i < dist.ids.length; i++) {
    cumulative += dist.probs[i];
    if (u < cumulative) return dist.ids[i];
  }
  return dist.ids[dist.ids.length - 1]; // rounding left the total a hair below 1
}

/**
 * What may come next beyond the sampling options: a grammar (src/llama/grammar.ts; for a thinking
 * model, the answer's: src/reasoning/answer-constraint.ts). Its state is a function of the tokens
 * emitted so far, kept by committing each emitted token once, in order.
 */
export interface TokenConstraint {
  allows(token: number): boolean;
  /**
   * `logits` with every token that may not come next at -Infinity: a copy, or `logits` itself
   * where everything may come (callers only read it).
   */
  restrict(logits: Float32Array): Float32Array;
  /** Moves past an emitted token. */
  accept(token: number): void;
  /** An independent copy of this state, e.g. to follow drafted tokens; dispose it. */
  fork(): TokenConstraint;
  dispose(): void;
}

/**
 * One request's token choice: its options, its Prng (advanced once per sampled token) and its
 * constraint, if any. Greedy and sampled choices within a constraint are those of the restricted
 * logits: the unconstrained argmax is checked first, as it is allowed almost always and checking
 * one token costs far less than restricting the vocabulary.
 */
export class Sampler {
  readonly options: Readonly<Required<SamplingOptions>>;
  readonly rng: Prng;

  constructor(
    options: SamplingOptions,
    private readonly constraint?: TokenConstraint,
  ) {
    this.options = resolveSampling(options);
    this.rng = new Prng(this.options.seed);
  }

  /** Greedy: argmax without touching the Prng. Otherwise exactly one rng.next() per call. The token is committed. */
  next(logits: Float32Array, history: ArrayLike<number>): number {
    const token = this.options.temperature <= 0 ? this.greedyToken(logits, history) : drawFrom(this.distribution(logits, history), this.rng.next());
    this.commit(token);
    return token;
  }

  /** The greedy choice after `history` (not committed). */
  greedyToken(logits: Float32Array, history: ArrayLike<number>): number {
    const token = greedyToken(logits, history, this.options);
    if (!this.constraint || this.constraint.allows(token)) return token;
    return greedyToken(this.constraint.restrict(logits), history, this.options);
  }

  /** The distribution a sampled token is drawn from after `history`. */
  distribution(logits: Float32Array, history: ArrayLike<number>): TokenDistribution {
    return tokenDistribution(this.constraint ? this.constraint.restrict(logits) : logits, history, this.options);
  }

  /** Records an emitted token (the constraint moves past it). */
  commit(token: number): void {
    this.constraint?.accept(token);
  }

  /** Where the constraint stands after the emitted tokens, as a copy to move along drafts (undefined: no constraint); dispose it. */
  forkConstraint(): TokenConstraint | undefined {
    return this.constraint?.fork();
  }
}
