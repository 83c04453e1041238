/**
 * Lossless acceptance rules for verifying a whole candidate tree with target-model logits.
 *
 * `logitsOf(i)` are the target logits computed at node i (context = history + root + path to i),
 * i.e. they predict the token AFTER node i. Every rule walks down from the root and, at each
 * visited node, produces the next token y with EXACTLY the distribution plain decoding would use
 * there; if a child carries y the walk moves into it (y is accepted), otherwise y is the bonus
 * token and the walk stops. Since each emitted token is distributed as in plain decoding given
 * everything before it, the output sequence is distributed exactly as plain decoding's, whatever
 * the tree (drafters can only change speed, never the output).
 *
 * - greedy: y = greedyToken(...). Identical to plain greedy decoding token for token.
 * - sample-and-match (nodes without a draft distribution): y = drawFrom(p, rng.next()), exactly
 *   one rng.next() per emitted token, exactly as plain decoding draws. With the same seed it
 *   therefore reproduces plain seeded sampling token for token (given bit-identical logits; note
 *   that llama.cpp batched and single-token evaluation may differ in the last bits).
 * - recursive rejection sampling (nodes whose children were sampled from q, TokenTree.setDraft):
 *   lossless in distribution, but consumes a variable number of rng draws, so it does NOT
 *   reproduce a seeded plain run token for token. See rejectionSample.
 *
 * `history` is the committed sequence before the root (root excluded). It is extended in place
 * (root, then each accepted token) while walking and restored before returning, so the
 * per-node contexts are never copied.
 */
import { drawFrom, type Sampler, type TokenDistribution } from '../generate/sampling.js';
import { ROOT, type DraftSampling, type TokenTree } from './tree.js';

export interface AcceptResult {
  /** Accepted node indices, root excluded, in path order. */
  acceptedNodes: number[];
  acceptedTokens: number[];
  /** The token emitted after the accepted path (the next pending root). */
  bonus: number;
}

export type LogitsOf = (node: number) => Float32Array;

/** The only part of Prng the rules need: uniform doubles in [0, 1). */
export interface UniformSource {
  next(): number;
}

/**
 * What the rules ask of a request's sampler: its choice at a node exactly as plain decoding makes
 * it (within its constraint, if any), and every emitted token committed in order, as plain
 * decoding commits it.
 */
export type TreeSampler = Pick<Sampler, 'options' | 'greedyToken' | 'distribution' | 'commit'> & { readonly rng: UniformSource };

/** Dispatches on the sampling options: greedy, else sampled (match or rejection per node). */
export function acceptTree(tree: TokenTree, logitsOf: LogitsOf, history: number[], sampler: TreeSampler): AcceptResult {
  return sampler.options.temperature <= 0 ? acceptGreedy(tree, logitsOf, history, sampler) : acceptSampled(tree, logitsOf, history, sampler);
}

export function acceptGreedy(tree: TokenTree, logitsOf: LogitsOf, history: number[], sampler: TreeSampler): AcceptResult {
  return walk(tree, history, sampler, (node, context) => sampler.greedyToken(logitsOf(node), context));
}

export function acceptSampled(tree: TokenTree, logitsOf: LogitsOf, history: number[], sampler: TreeSampler): AcceptResult {
  return walk(tree, history, sampler, (node, context) => {
    const target = sampler.distribution(logitsOf(node), context);
    const draft = tree.draft(node);
    return draft ? rejectionSample(target, draft, sampler.rng) : drawFrom(target, sampler.rng.next());
  });
}

function walk(tree: TokenTree, history: number[], sampler: TreeSampler, nextToken: (node: number, context: readonly number[]) => number): AcceptResult {
  const committed = history.length;
  const acceptedNodes: number[] = [];
  const acceptedTokens: number[] = [];
  history.push(tree.rootToken);
  try {
    for (let node = ROOT; ; ) {
      const token = nextToken(node, history);
      sampler.commit(token);
      const child = tree.childWithToken(node, token);
      if (child < 0) return { acceptedNodes, acceptedTokens, bonus: token };
      acceptedNodes.push(child);
      acceptedTokens.push(token);
      history.push(token);
      node = child;
    }
  } finally {
    history.length = committed;
  }
}

/**
 * Recursive rejection sampling over the draft samples x1..xk of one node (SpecInfer's multi-step
 * speculative sampling; its without-replacement variant is Jeon et al. 2024, "Recursive
 * Speculative Decoding"). Round i uses the distribution x_i was actually drawn from:
 *   with replacement:    q_i = q
 *   without replacement: q_i = q restricted to tokens not drawn before, renormalized
 * Accept x_i with probability min(1, p_i(x_i) / q_i(x_i)); on rejection
 * p_{i+1} = normalize(max(p_i − q_i, 0)); after k rejections draw y ~ p_{k+1}.
 * Lossless: given the previous rounds, x_i ~ q_i independently of them, so round i is a standard
 * speculative-sampling step of target p_i with draft q_i, whose output is distributed as p_i when
 * its rejection branch outputs p_{i+1}; by backward induction the output is distributed as p_1 = p.
 * (Value-dependent pruning of the samples would break this; TokenTree.select never does it.)
 * Distributions are Float64 maps over the union of supports. If the residual mass underflows to
 * 0 (p_i = q_i up to rounding, so rejection had probability ~0), p_i is kept.
 */
export function rejectionSample(target: TokenDistribution, draft: DraftSampling, rng: UniformSource): number {
  let p = toMap(target);
  const q = toMap(draft.dist);
  const drawn = new Set<number>();
  let undrawnMass = 1;
  for (const x of draft.samples) {
    const qx = draft.withReplacement ? (q.get(x) ?? 0) : (q.get(x) ?? 0) / undrawnMass;
    if (!(qx > 0) || drawn.has(x)) throw new RangeError(`rejectionSample: sample ${x} could not have been drawn from q`);
    const px = p.get(x) ?? 0;
    if (rng.next() * qx < px) return x; // u < p/q, i.e. probability min(1, p/q)
    p = residual(p, (token) => (drawn.has(token) ? 0 : (q.get(token) ?? 0) / undrawnMass));
    if (!draft.withReplacement) {
      drawn.add(x);
      undrawnMass -= q.get(x)!;
    }
  }
  return drawFrom(toDistribution(p), rng.next());
}

/** normalize(max(p − q, 0)); only p's support can stay positive. */
function residual(p: Map<number, number>, qOf: (token: number) => number): Map<number, number> {
  const result = new Map<number, number>();
  let mass = 0;
  for (const [token, pt] of p) {
    const r = pt - qOf(token);
    if (r > 0) {
      result.set(token, r);
      mass += r;
    }
  }
  if (!(mass > 0)) return p;
  for (const [token, r] of result) result.set(token, r / mass);
  return result;
}

function toMap(dist: TokenDistribution): Map<number, number> {
  const map = new Map<number, number>();
  for (let i = 0; i < dist.ids.length; i++) map.set(dist.ids[i], (map.get(dist.ids[i]) ?? 0) + dist.probs[i]);
  return map;
}

/** Sorted like sampling.ts: probability descending, ties lower id first. */
function toDistribution(map: Map<number, number>): TokenDistribution {
  const entries = [...map].filter(([, prob]) => prob > 0).sort((a, b) => b[1] - a[1] || a[0] - b[0]);
  return { ids: Int32Array.from(entries, ([id]) => id), probs: Float64Array.from(entries, ([, prob]) => prob) };
}
