/**
 * Adaptive control: how many drafted nodes are worth verifying this step.
 *
 * A node's score is the probability that the path root→node is accepted. Each accepted node adds
 * one token and the step always emits one more (the bonus), so
 *   E[tokens per step] = 1 + Σ_nodes score(node)
 * — the tree generalisation of Leviathan et al.'s (1 − α^{γ+1})/(1 − α): a chain whose nodes score
 * α, α², …, α^γ gives exactly that sum. Verifying n drafted nodes costs c(n+1) = t(n+1)/t(1) in
 * units of a plain decoding step (plus any extra cost the caller knows of, such as rebuilding the
 * compute graph for a new batch shape), so the expected speedup is
 *   E[tokens](n) / (c(n+1) + extraCost(n)),
 * against 1 for plain decoding (n = 0).
 */
import { ROOT, type TokenTree } from './tree.js';

export interface CostPoint {
  /** Tokens in the verify batch (>= 1). */
  n: number;
  /** Measured time (any unit). */
  seconds: number;
}

/** What verifying n tokens costs, in plain-step units (cost(1) = 1). */
export interface VerifyCost {
  cost(n: number): number;
}

/**
 * Relative verify cost c(n) = t(n)/t(1), from measured points, linear in between. The curve keeps
 * the dips it was measured with: CPU kernels multiply the batch's columns in tiles shared out
 * among threads, so on 2 threads a batch of 8 took 4.2 single decodes and one of 6 took 5.5 (c(12)
 * 5.6 < c(10) 6.1). A planner that sees this verifies 7 drafted nodes rather than 5, for more
 * tokens at less cost; a monotone fit would pool the dip away. The points are medians of several
 * rounds (cost-curve.ts), which keep noise from making dips of their own.
 */
export class CostCurve implements VerifyCost {
  private readonly ns: number[];
  private readonly costs: number[];

  constructor(points: readonly CostPoint[]) {
    const clean = mergeDuplicateSizes(points);
    if (clean.length === 0) throw new RangeError('CostCurve: no valid points');
    // Below the smallest measured size the curve is flat, so t(1) := t(smallest) if 1 is missing.
    this.ns = clean.map((p) => p.n);
    this.costs = clean.map((p) => p.seconds / clean[0].seconds);
  }

  /** c(n) = 1 for every n: verification is free up to compute saturation. */
  static flat(): CostCurve {
    return new CostCurve([{ n: 1, seconds: 1 }]);
  }

  /** c(n) = 1 + slope·(n − 1), up to n = 1024 (and per token as there beyond). */
  static linear(slope: number): CostCurve {
    return new CostCurve([
      { n: 1, seconds: 1 },
      { n: 1024, seconds: 1 + slope * 1023 },
    ]);
  }

  /**
   * The cheapest batch of n to `largest` tokens: what verifying n costs when the batch may be
   * filled up with further drafted nodes (a tree never gets slower for holding more likely nodes).
   */
  cheapestFrom(n: number, largest: number): number {
    let cheapest = this.cost(n);
    for (let m = n + 1; m <= largest; m++) cheapest = Math.min(cheapest, this.cost(m));
    return cheapest;
  }

  cost(n: number): number {
    const { ns, costs } = this;
    if (n <= ns[0]) return costs[0];
    const last = ns.length - 1;
    // Beyond the largest size, at its cost per token (compute-bound by then; a last segment that
    // ends in a dip must not make bigger batches cheaper). Flat if only one size was measured.
    if (n >= ns[last]) return last > 0 ? (costs[last] * n) / ns[last] : costs[last];
    let hi = 1;
    while (ns[hi] < n) hi++;
    const f = (n - ns[hi - 1]) / (ns[hi] - ns[hi - 1]);
    return costs[hi - 1] + f * (costs[hi] - costs[hi - 1]);
  }
}

/**
 * One sequence's view of a batch it shares with `others.sequences` sequences holding
 * `others.tokens` tokens: n tokens of its own add c(B − 1 + n) − c(B) to a step every sequence
 * waits for, B = others + 1 tokens. That is priced in the sequence's plain step, c(S)/S with
 * S = others + 1 sequences: its share of a step in which every sequence decodes one token. A step
 * beats plain decoding when its tokens per second beat S / c(S), which holds when each sequence's
 * tree gives more tokens than its addition costs in such shares:
 *   cost(n) = 1 + S·(c(B − 1 + n) − c(B)) / c(S),
 * which is c(n) when alone. Not c(B)/S: where the sequences placed before this one hold trees, B
 * is their trees' size, and a share of that step (2 single decodes among 8 sequences whose trees
 * held 48 tokens, 4 times a plain share) made each token of the sequences placed last look worth
 * 4 times what it saves: a node accepted 1 time in 4 paid for its 0.44 decodes of growth there.
 * `growthScale` corrects the curve's growth for what sharing adds in place (shared-step-costs.ts).
 */
export function sharedBatchCost(curve: CostCurve, others: { tokens: number; sequences: number }, growthScale = 1): VerifyCost {
  const batch = others.tokens + 1;
  const before = curve.cost(batch);
  const perPlainShare = growthScale * sharedStepFactor(curve, others);
  // A batch that a sequence's tokens make cheaper (a dip of the curve) is not counted as a gain:
  // the others' plain steps are what the dip would come from, not this sequence's tree.
  return { cost: (n) => 1 + perPlainShare * Math.max(0, curve.cost(batch - 1 + n) - before) };
}

/**
 * What time outside the shared decode (drafting, a slower tree decode), counted in units of this
 * sequence's plain step when alone, costs it in `sharedBatchCost`'s units: that time holds up the
 * whole step, which all S sequences wait for, and a plain step of theirs takes c(S) single
 * decodes, so it weighs S / c(S) as much (a draft model's decodes for one request stall every
 * other one).
 */
export function sharedStepFactor(curve: CostCurve, others: { sequences: number }): number {
  const sequences = others.sequences + 1;
  return sequences / curve.cost(sequences);
}

function mergeDuplicateSizes(points: readonly CostPoint[]): CostPoint[] {
  const sums = new Map<number, { total: number; count: number }>();
  for (const { n, seconds } of points) {
    if (!(n >= 1 && Number.isFinite(n) && seconds > 0 && Number.isFinite(seconds))) continue;
    const entry = sums.get(n) ?? { total: 0, count: 0 };
    entry.total += seconds;
    entry.count++;
    sums.set(n, entry);
  }
  return [...sums]
    .map(([n, { total, count }]) => ({ n, seconds: total / count }))
    .sort((a, b) => a.n - b.n);
}

/** What calibration reads and learns acceptance from: rates per key and depth (AcceptanceStats). */
export interface AcceptanceRecords {
  observe(source: string, depth: number, accepted: boolean): void;
  /** The rate at `depth`, `prior` where there is no record (default: the records' own prior). */
  rate(source: string, depth: number, prior?: number): number;
}

/**
 * A sequence's own records over the records every sequence shares: both learn every observation,
 * and a rate is the sequence's own, starting from the shared one as its prior. Shared records
 * carry what one kind of text taught to the next: after 10 long-generation requests, where agreeing
 * n-gram and suffix chains ran long, reasoning requests in the same engine verified 63-node such
 * chains for 1-18 tokens (21% slower than in a fresh engine); its own record of them overrides the
 * shared one after a few verifications.
 */
export class LayeredRecords implements AcceptanceRecords {
  constructor(
    private readonly shared: AcceptanceRecords,
    private readonly own: AcceptanceRecords,
  ) {}

  observe(source: string, depth: number, accepted: boolean): void {
    this.shared.observe(source, depth, accepted);
    this.own.observe(source, depth, accepted);
  }

  rate(source: string, depth: number, prior?: number): number {
    return this.own.rate(source, depth, this.shared.rate(source, depth, prior));
  }
}

export interface AcceptanceStatsOptions {
  /** Rate assumed before any observation (default 0.5). */
  priorRate?: number;
  /** Weight of the prior, in observations (default 2). */
  priorWeight?: number;
  /** Old observations are multiplied by this at every new one in the same bucket (default 0.98). */
  decay?: number;
  /** Depths beyond this share the last bucket (default 32). */
  maxDepth?: number;
}

/** rate(depth) = offset[depth] + slope[depth] · prior (AcceptanceStats.rateLine). */
interface RateLine {
  offset: Float64Array;
  slope: Float64Array;
}

/** Decayed counts of one key, per depth, and its rate line while no observation has changed them. */
interface RateBucket {
  accepted: Float64Array;
  trials: Float64Array;
  line?: RateLine;
}

/**
 * Running acceptance rate per (drafter, depth): the probability that the walk continues into one
 * of the drafter's children at that depth, given it reached their parent. Exponentially decayed
 * counts with a Beta-like prior: rate = (a + w·r0) / (n + w).
 */
export class AcceptanceStats implements AcceptanceRecords {
  private readonly priorRate: number;
  private readonly priorWeight: number;
  private readonly decay: number;
  private readonly maxDepth: number;
  private readonly buckets = new Map<string, RateBucket>();

  constructor(options: AcceptanceStatsOptions = {}) {
    this.priorRate = options.priorRate ?? 0.5;
    this.priorWeight = options.priorWeight ?? 2;
    this.decay = options.decay ?? 0.98;
    this.maxDepth = options.maxDepth ?? 32;
  }

  observe(source: string, depth: number, accepted: boolean): void {
    const bucket = this.bucketOf(source);
    const d = this.depthIndex(depth);
    bucket.accepted[d] = bucket.accepted[d] * this.decay + (accepted ? 1 : 0);
    bucket.trials[d] = bucket.trials[d] * this.decay + 1;
    bucket.line = undefined;
  }

  /**
   * Rate at `depth`. A depth without data of its own inherits the rate of the depth above it,
   * down to depth 1, whose prior is `prior` (a coarser key's rate, for a sparse fine key). A
   * fixed prior at every depth would never be corrected: the planner would never verify nodes
   * that deep, so it would never learn that a walk which got there usually goes on.
   */
  rate(source: string, depth: number, prior = this.priorRate): number {
    const bucket = this.buckets.get(source);
    if (!bucket) return prior;
    const line = (bucket.line ??= this.rateLine(bucket));
    const d = this.depthIndex(depth);
    return line.offset[d] + line.slope[d] * prior;
  }

  /**
   * The rate at each depth as a line in the prior: rate(d) = (a_d + w·rate(d−1)) / (n_d + w) is
   * affine in rate(d−1), so in the prior. Planning asks for rates at every node of 100-node trees
   * three times a drafting step, and walking the depths for each call was a third of its time.
   */
  private rateLine({ accepted, trials }: RateBucket): RateLine {
    const offset = new Float64Array(this.maxDepth + 1);
    const slope = new Float64Array(this.maxDepth + 1);
    slope[0] = 1;
    for (let d = 1; d <= this.maxDepth; d++) {
      const weight = this.priorWeight / (trials[d] + this.priorWeight);
      offset[d] = accepted[d] / (trials[d] + this.priorWeight) + weight * offset[d - 1];
      slope[d] = weight * slope[d - 1];
    }
    return { offset, slope };
  }

  private bucketOf(source: string): RateBucket {
    let bucket = this.buckets.get(source);
    if (!bucket) {
      bucket = { accepted: new Float64Array(this.maxDepth + 1), trials: new Float64Array(this.maxDepth + 1) };
      this.buckets.set(source, bucket);
    }
    return bucket;
  }

  private depthIndex(depth: number): number {
    return Math.min(Math.max(1, Math.floor(depth)), this.maxDepth);
  }
}

/**
 * Acceptance is learnt per child: the key is the drafter plus a bucket of the drafter's own
 * conditional probability for that child (a suffix continuation seen 40 times out of 40 is far
 * safer than one seen once out of three), and the depth. rate(key, depth) estimates
 * P(the walk moves into this child | it reached the parent).
 */
function ownConditional(tree: TokenTree, child: number): number {
  const parentScore = tree.score(tree.parent(child));
  return parentScore > 0 ? tree.score(child) / parentScore : 0;
}

const CONFIDENCE_BUCKETS = [0.99, 0.9, 0.7, 0.4] as const;
/**
 * Acceptance assumed per confidence bucket before the bucket has a record: a drafter sure of its
 * token is usually right. The start matters where verification is dear: at a flat 0.5 a sure
 * 24-token chain looks worth two tokens, so it is never verified and only the rare probes teach
 * the planner otherwise; starting near the drafter's own confidence, one or two shadow-verified
 * chains settle the rate, up or down.
 */
const CONFIDENCE_PRIORS = [0.9, 0.8, 0.6, 0.4, 0.2] as const;
/** Matched-context lengths that separate evidence classes (measured: longer matches are accepted more). */
const EVIDENCE_BUCKETS = [32, 16, 9, 6, 4, 3, 2] as const;

function bucketIndex(value: number, thresholds: readonly number[]): number {
  // The tolerance keeps ratios of path products (0.9^k / 0.9^(k-1)) in their bucket.
  for (let index = 0; index < thresholds.length; index++) if (value >= thresholds[index] - 1e-9) return index;
  return thresholds.length;
}

/**
 * Keys by bucket, built once per key: planning calibrates every node of a 64-node tree, and
 * building its keys as new strings (then hashing them for the lookup) was most of that work.
 */
class KeysByBucket {
  private readonly keys = new Map<string, string[]>();

  constructor(
    private readonly separator: string,
    private readonly buckets: number,
  ) {}

  get(base: string, bucket: number): string {
    let keys = this.keys.get(base);
    if (!keys) {
      keys = Array.from({ length: this.buckets + 1 }, (_, index) => `${base}${this.separator}${index}`);
      this.keys.set(base, keys);
    }
    return keys[bucket];
  }
}

const coarseKeys = new KeysByBucket('#', CONFIDENCE_BUCKETS.length);
const fineKeys = new KeysByBucket('@', EVIDENCE_BUCKETS.length);

/** The coarse key: drafter and own-confidence bucket. */
export function acceptanceKey(source: string, ownProbability: number): string {
  return coarseKeys.get(source, bucketIndex(ownProbability, CONFIDENCE_BUCKETS));
}

/** The rate a coarse key starts from. */
function confidencePrior(ownProbability: number): number {
  return CONFIDENCE_PRIORS[bucketIndex(ownProbability, CONFIDENCE_BUCKETS)];
}

/** The fine key adds the evidence class; until it has data of its own, it starts from the coarse rate. */
function evidenceKey(coarse: string, evidence: number): string {
  return fineKeys.get(coarse, bucketIndex(evidence, EVIDENCE_BUCKETS));
}

/**
 * Who proposed a node, as acceptance is learnt: the set of its drafters, with the longest evidence
 * any of them has. Nodes several drafters agree on are learnt apart from those one proposes alone:
 * a draft model and an n-gram that agree are right far more often than the n-gram alone, and
 * crediting each drafter with their common successes made the n-gram look as sure as the model
 * on reasoning text (expected 2.2 times the tokens its own chains then yielded).
 */
function proposers(tree: TokenTree, child: number): { key: string; evidence: number } {
  const sources = tree.sources(child);
  let evidence = -Infinity;
  for (const source of sources) evidence = Math.max(evidence, tree.evidence(child, source));
  return { key: proposersKey(sources), evidence };
}

/** What a contested node's acceptance is learnt under: its proposers' key, marked (TokenTree.contested). */
function contestedKey(key: string): string {
  return `${key}~`;
}

/** The name acceptance is learnt under for a node these drafters proposed (in any order). */
export function proposersKey(sources: readonly string[]): string {
  return sources.length === 1 ? sources[0] : [...sources].sort().join('+');
}

/**
 * How much of a walk through a tree an observation reports: a verification's walk is whole; a
 * shadow walk (drafts followed against plain decoding, one emitted token at a time) is reported as
 * it goes, `settled` nodes of its path (the root first) reported before, and the node it has
 * reached judged only once the walk has `ended` (left the tree, or reached a leaf).
 */
export interface WalkProgress {
  settled: number;
  ended: boolean;
}

const WHOLE_WALK: WalkProgress = { settled: 0, ended: true };

/**
 * Feeds one verification outcome into `stats`: every child of every node the walk reached is a
 * trial. Reported in parts (`walk`), the trials are the same as reported whole.
 */
export function observeVerification(stats: AcceptanceRecords, tree: TokenTree, acceptedNodes: readonly number[], walk: WalkProgress = WHOLE_WALK): void {
  const path = [ROOT, ...acceptedNodes];
  for (let k = walk.settled; k < (walk.ended ? path.length : path.length - 1); k++) {
    const next = k + 1 < path.length ? path[k + 1] : -1;
    for (const child of tree.children(path[k])) {
      const { key, evidence } = proposers(tree, child);
      const coarse = acceptanceKey(tree.contested(child) ? contestedKey(key) : key, ownConditional(tree, child));
      stats.observe(coarse, tree.depth(child), child === next);
      stats.observe(evidenceKey(coarse, evidence), tree.depth(child), child === next);
    }
  }
}

/**
 * P(the walk moves into `child` | it reached the parent), as the record of its set of proposers
 * says; a set without a record yet starts from the best record of its members, and a contested
 * node without one from its proposers' record where no one disagreed.
 */
function childRate(stats: AcceptanceRecords, tree: TokenTree, child: number): number {
  const own = ownConditional(tree, child);
  const depth = tree.depth(child);
  const { key, evidence } = proposers(tree, child);
  const sources = tree.sources(child);
  const prior = sources.length === 1 ? confidencePrior(own) : Math.max(...sources.map((source) => stats.rate(acceptanceKey(source, own), depth, confidencePrior(own))));
  const agreed = keyRate(stats, key, depth, own, evidence, prior);
  return tree.contested(child) ? keyRate(stats, contestedKey(key), depth, own, evidence, agreed) : agreed;
}

/**
 * childRate of a node that `source` alone drafted, giving it conditional probability `own`, with
 * no evidence class: what a drafter scoring its chain as it drafts (a draft model) can be told
 * its next node is worth.
 */
export function drafterRate(stats: AcceptanceRecords, source: string, depth: number, own: number): number {
  return keyRate(stats, source, depth, own, 0, confidencePrior(own));
}

function keyRate(stats: AcceptanceRecords, key: string, depth: number, own: number, evidence: number, prior: number): number {
  const coarse = acceptanceKey(key, own);
  return stats.rate(evidenceKey(coarse, evidence), depth, stats.rate(coarse, depth, prior));
}

/**
 * Path-acceptance scores from the running stats: score(child) = score(parent) · cond(child), with
 * cond(child) = rate(its drafters + own-confidence bucket, depth).
 * Conditionals at one node are capped, likeliest first, to sum to at most 1. Index = node; the root scores 1.
 */
export function calibratedScores(tree: TokenTree, stats: AcceptanceRecords): Float64Array {
  const scores = new Float64Array(tree.size);
  scores[ROOT] = 1;
  for (let node = 0; node < tree.size; node++) {
    const kids = tree.children(node);
    if (kids.length === 0) continue;
    if (kids.length === 1) {
      // A chain's node (most of them): nothing to share the walk with.
      scores[kids[0]] = scores[node] * Math.min(childRate(stats, tree, kids[0]), 1);
      continue;
    }
    const cond = kids.map((child) => childRate(stats, tree, child));
    // The walk enters at most one child, so the conditionals must sum to at most 1. Capping in
    // order of confidence keeps the likeliest child's estimate whole and squeezes the long shots;
    // scaling all of them down would cut a sure chain because of a few unlikely siblings.
    let left = 1;
    for (const k of cond.map((_, k) => k).sort((a, b) => cond[b] - cond[a] || a - b)) {
      const capped = Math.min(cond[k], left);
      left -= capped;
      scores[kids[k]] = scores[node] * capped;
    }
  }
  return scores;
}

/** 1 + Σ score over drafted nodes (default: the tree's own scores). */
export function expectedTokens(tree: TokenTree, scores: ArrayLike<number> = treeScores(tree)): number {
  let total = 1;
  for (let i = 1; i < tree.size; i++) total += scores[i];
  return total;
}

function treeScores(tree: TokenTree): number[] {
  return Array.from({ length: tree.size }, (_, i) => tree.score(i));
}

export interface TreeSizeChoice {
  /** Drafted nodes to verify; 0 = plain decoding. */
  size: number;
  expectedTokens: number;
  /** Expected tokens per unit of plain-step time (1 for plain decoding). */
  speedup: number;
}

/** Cost beyond the verify curve, in plain-step units, as a function of the verified tree size (n >= 1). */
export type ExtraCost = number | ((n: number) => number);

/**
 * `scores` are node scores in admission order (TokenTree.admissionOrder), so every prefix is a
 * prefix-closed tree. Picks the prefix length n maximizing (1 + Σ_{i<n} scores[i]) /
 * (c(n+1) + extraCost(n)); returns n = 0 unless some n beats plain decoding's 1/c(1) = 1.
 */
export function chooseTreeSize(scores: ArrayLike<number>, curve: VerifyCost, extraCost: ExtraCost = 0): TreeSizeChoice {
  const extraCostOf = typeof extraCost === 'number' ? () => extraCost : extraCost;
  let best: TreeSizeChoice = { size: 0, expectedTokens: 1, speedup: 1 / curve.cost(1) };
  let tokens = 1;
  for (let n = 1; n <= scores.length; n++) {
    tokens += scores[n - 1];
    const speedup = tokens / (curve.cost(n + 1) + extraCostOf(n));
    if (speedup > best.speedup) best = { size: n, expectedTokens: tokens, speedup };
  }
  return best;
}

export interface TreePlan extends TreeSizeChoice {
  /** The pruned tree to verify (root only when size = 0). */
  tree: TokenTree;
  /** Calibrated scores of `tree`'s nodes (index = node of the pruned tree). */
  scores: Float64Array;
}

/** How large a verified tree may be: drafted nodes, and leaves (= branches = sequence ids). */
export interface TreeLimits {
  maxNodes: number;
  maxLeaves: number;
}

/**
 * Calibrates scores with `stats`, chooses the size with `curve` within `limits`, prunes. `tree`
 * may be larger than the limits: it is cut by calibrated scores, not by the drafters' own (which
 * are not comparable across drafters: a suffix continuation seen 3 times of 3 scores 1).
 */
export function planTree(tree: TokenTree, stats: AcceptanceRecords, curve: VerifyCost, extraCost: ExtraCost = 0, limits: Partial<TreeLimits> = {}): TreePlan {
  const select = { maxLeaves: limits.maxLeaves };
  const scores = calibratedScores(tree, stats);
  const order = tree.select(limits.maxNodes ?? Infinity, { ...select, scores });
  const choice = chooseTreeSize(order.map((i) => scores[i]), curve, extraCost);
  const kept = tree.select(choice.size, { ...select, scores });
  const pruned = tree.subtree(kept);
  // subtree() keeps kept nodes in ascending index order.
  const keptSorted = [...kept].sort((a, b) => a - b);
  const prunedScores = Float64Array.from([1, ...keptSorted.map((i) => scores[i])]);
  // select() may keep fewer than choice.size nodes (a draft group that does not fit is skipped).
  const size = pruned.draftCount;
  const tokens = expectedTokens(pruned, prunedScores);
  const extraCostOf = typeof extraCost === 'number' ? extraCost : extraCost(size);
  const speedup = size === 0 ? 1 / curve.cost(1) : tokens / (curve.cost(size + 1) + extraCostOf);
  return { size, expectedTokens: tokens, speedup, tree: pruned, scores: prunedScores };
}
