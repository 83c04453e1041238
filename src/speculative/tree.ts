/**
 * Candidate token trees for speculative decoding, and the interface every drafter implements.
 *
 * Node 0 is the ROOT: the pending token (already chosen, not yet in the KV cache), depth 0,
 * score 1. Every other node is a drafted token with a parent, a depth >= 1, the drafter(s) that
 * proposed it and a score = estimated probability that the whole path root→node is accepted.
 * Scores are clamped so that a child never scores above its parent, which makes every
 * "best scores first" cut prefix-closed (a kept node always has its parent kept).
 *
 * Draft-model children may carry the distribution q they were sampled from (`setDraft`), so the
 * verifier can run lossless rejection sampling (see accept.ts). Such a sibling group is kept or
 * dropped as a whole by `select`/`prune`, ranked by a key that does not depend on the sampled
 * values: cutting individual samples by their (value-dependent) scores would bias the output.
 */
import type { TokenDistribution } from '../generate/sampling.js';

/** Budget of one proposal. maxNodes counts drafted nodes (root excluded); maxBranches = children per node. */
export interface DraftBudget {
  maxNodes: number;
  maxDepth: number;
  maxBranches: number;
  /** Whether costly drafters (a draft model) may be asked this step (default true). */
  costly?: boolean;
  /**
   * The step explores (a probe while drafting backs off, or a sequence's first): drafters that
   * size their proposals by how much of the recent ones was accepted propose as deep as the
   * budget allows instead, since only a chain that deep can show a plan that pays where
   * verification is dear.
   */
  explore?: boolean;
  /**
   * Drafters that score their chains (a draft model) stop a chain once its path probability (as
   * `acceptance` scores it, where given) falls below this: beside other sequences a verified node
   * costs the step a time of its own, and a node less likely than that time is worth is never
   * verified, so drafting it only holds the step up.
   */
  minPathProbability?: number;
  /**
   * What the planner has learnt of a drafter's nodes: P(the target accepts a node `source` drafted
   * at `depth` with conditional probability `own` | it accepted the parent). Where given, the path
   * compared with minPathProbability is the product of these rates, not of the drafter's own
   * probabilities: a draft model sure of 24 tokens in a row, whose sure tokens the target accepts
   * 9 times in 10, drafted all 24 while the other sequences waited, and plans verified 3-6.
   */
  acceptance?: (source: string, depth: number, own: number) => number;
}

export interface Drafter {
  readonly name: string;
  /**
   * Proposing costs model decodes (a draft model): asked only when the cheap drafters found
   * little, since its drafts are paid for whether or not they get verified.
   */
  readonly costly?: boolean;
  /**
   * What its proposals have cost so far (ms), where that is not the wall time of propose(): a
   * draft model's decodes are batched with other requests', and it pays only its share.
   */
  readonly spentMs?: number;
  /**
   * The part of spentMs spent bringing its state up to where it drafts from, the committed text
   * (or, for a draft model, the end of its last chain's part that the text has not left): a
   * drafter asked every step catches up on a few accepted tokens in one decode, one asked every
   * few hundred steps on all of them.
   */
  readonly catchUpMs?: number;
  /**
   * Nodes it has drafted so far, each counted once: what spentMs bought. A draft model proposes
   * again, without decoding them again, the nodes of its last chain that the text has not left.
   */
  readonly draftedNodes?: number;
  /** Tokens its catch-ups have decoded so far: what catchUpMs bought. */
  readonly catchUpTokens?: number;
  /**
   * Tokens its next proposal would first catch up on: for a draft model not asked for a while,
   * all the text since (a restart, paid before it drafts anything).
   */
  readonly pendingTokens?: number;
  /** Called once per request with the prompt tokens. */
  begin(prompt: readonly number[]): void | Promise<void>;
  /**
   * Tokens appended to the sequence (accepted drafts + bonus token), in order; handed over
   * before each proposal and at the end of a request, not necessarily every step.
   */
  append(tokens: readonly number[]): void;
  /** Propose continuations of the current sequence, whose last token is `root` (pending). */
  propose(root: number, budget: DraftBudget): TokenTree | Promise<TokenTree>;
  /** Request finished: keep what should survive across requests (suffix history). */
  end(): void;
}

/** How the children of a node were drawn from a draft distribution q (enables rejection sampling). */
export interface DraftSampling {
  /** q, the distribution the samples were drawn from (after the same sampling transforms as the target). */
  readonly dist: TokenDistribution;
  /** The draws in drawing order; each is the token of a child. */
  readonly samples: readonly number[];
  /** true: i.i.d. draws (may repeat). false: draws without replacement (distinct). */
  readonly withReplacement: boolean;
  /** The drafter that drew them; children from other drafters may coexist under the node. */
  readonly source: string;
  /**
   * Estimate of P(one of the samples is accepted | node reached), fixed BEFORE looking at the
   * samples (e.g. from AcceptanceStats). Only used to rank the group when pruning.
   */
  readonly groupRate: number;
}

export interface SetDraftOptions {
  withReplacement: boolean;
  source?: string;
  groupRate?: number;
}

/**
 * Branches = root-to-leaf paths, numbered 0..branchCount-1 in depth-first order, so the
 * branches through any node form the contiguous range [firstBranch, endBranch).
 * The verifier gives node i the llama.cpp sequence ids nodeBranches[i].
 */
export interface BranchAssignment {
  readonly branchCount: number;
  /** branch → its leaf node */
  readonly branchLeaf: readonly number[];
  readonly firstBranch: readonly number[];
  readonly endBranch: readonly number[];
  /** node → the branches passing through it (the root is in all of them) */
  readonly nodeBranches: readonly (readonly number[])[];
}

export interface SelectOptions {
  /** Per-node scores to rank by (index = node, root ignored); default: the tree's own scores. */
  scores?: ArrayLike<number>;
  /** Cap on leaves (= branches = llama.cpp sequences); default unlimited. */
  maxLeaves?: number;
}

export const ROOT = 0;

/** A tree's nodes as plain data: what a run verified in one step, kept to evaluate it again the same way. */
export interface TreeShape {
  /** Each node's token, the root's first. */
  tokens: number[];
  /** Each node's parent (-1 for the root); parents precede children. */
  parents: number[];
}

export class TokenTree {
  private readonly tokens: number[] = [];
  private readonly parents: number[] = [];
  private readonly depths: number[] = [];
  private readonly scores: number[] = [];
  private readonly primarySources: string[] = [];
  private readonly sourceLists: string[][] = [];
  /** Per node, the evidence of each source (same order as sourceLists). */
  private readonly evidenceLists: number[][] = [];
  private readonly childLists: number[][] = [];
  private readonly drafts: (DraftSampling | undefined)[] = [];
  private readonly contestedFlags: boolean[] = [];

  constructor(rootToken: number) {
    this.pushNode(rootToken, -1, 0, 1, 'root');
  }

  /** The tree of these nodes, at the same indices (scores and sources are not part of a shape). */
  static fromShape(shape: TreeShape): TokenTree {
    const tree = new TokenTree(shape.tokens[0]);
    for (let i = 1; i < shape.tokens.length; i++) {
      if (tree.addChild(shape.parents[i], shape.tokens[i], 1, 'recorded') !== i) throw new RangeError(`fromShape: node ${i} repeats a sibling or precedes its parent`);
    }
    return tree;
  }

  shape(): TreeShape {
    return { tokens: [...this.tokens], parents: [...this.parents] };
  }

  /** Number of nodes, root included; node indices are 0..size-1 and parents precede children. */
  get size(): number {
    return this.tokens.length;
  }

  /** Number of drafted nodes (root excluded). */
  get draftCount(): number {
    return this.tokens.length - 1;
  }

  get rootToken(): number {
    return this.tokens[ROOT];
  }

  token(i: number): number {
    return this.tokens[i];
  }

  /** -1 for the root. */
  parent(i: number): number {
    return this.parents[i];
  }

  depth(i: number): number {
    return this.depths[i];
  }

  score(i: number): number {
    return this.scores[i];
  }

  /** The drafter that gave the node its (max) score; 'root' for the root. */
  source(i: number): string {
    return this.primarySources[i];
  }

  /** Every drafter that proposed this node, in first-proposal order. */
  sources(i: number): readonly string[] {
    return this.sourceLists[i];
  }

  /**
   * How much context `source`'s proposal of node i rests on (suffix: matched length; n-gram:
   * context length); 0 when the drafter does not say. Acceptance is learnt per evidence class.
   */
  evidence(i: number, source: string): number {
    const k = this.sourceLists[i].indexOf(source);
    return k < 0 ? 0 : this.evidenceLists[i][k];
  }

  /**
   * Whether another drafter proposed a different token in node i's place (a sibling drafted by
   * one that did not draft i; marked by unionTrees, kept by subtree). Drafters that disagree on a
   * position are unsure of it whatever their own scores say: on long generation that loops with
   * a counter in each round, the suffix drafter, sure of the one round it matched, continued 30
   * tokens past the counter, where the n-gram drafter offered four other values.
   */
  contested(i: number): boolean {
    return this.contestedFlags[i];
  }

  markContested(i: number): void {
    this.checkNode(i);
    if (i === ROOT) throw new RangeError('markContested: the root has no siblings');
    this.contestedFlags[i] = true;
  }

  children(i: number): readonly number[] {
    return this.childLists[i];
  }

  draft(i: number): DraftSampling | undefined {
    return this.drafts[i];
  }

  /** q of the node's children, when they were sampled from a draft distribution. */
  draftDist(i: number): TokenDistribution | undefined {
    return this.drafts[i]?.dist;
  }

  /** Child of `i` carrying `token`, or -1. Linear scan: branching factors are small. */
  childWithToken(i: number, token: number): number {
    for (const child of this.childLists[i]) if (this.tokens[child] === token) return child;
    return -1;
  }

  /**
   * Adds (or merges into) the child of `parent` with `token`. A merged node keeps the max score
   * and records every source. Scores are clamped to [0, score(parent)] (see file comment).
   */
  addChild(parent: number, token: number, score: number, source: string, evidence = 0): number {
    this.checkNode(parent);
    const clamped = Math.min(Math.max(score, 0), this.scores[parent]);
    const existing = this.childWithToken(parent, token);
    if (existing < 0) return this.pushNode(token, parent, this.depths[parent] + 1, clamped, source, evidence);
    const k = this.sourceLists[existing].indexOf(source);
    if (k < 0) {
      this.sourceLists[existing].push(source);
      this.evidenceLists[existing].push(evidence);
    } else {
      this.evidenceLists[existing][k] = Math.max(this.evidenceLists[existing][k], evidence);
    }
    if (clamped > this.scores[existing]) {
      this.scores[existing] = clamped;
      this.primarySources[existing] = source;
    }
    return existing;
  }

  /** Adds a path below `from` (default root), merging shared prefixes; returns its node indices. */
  addPath(tokens: readonly number[], scores: readonly number[], source: string, from: number = ROOT): number[] {
    if (tokens.length !== scores.length) throw new RangeError('addPath: tokens and scores differ in length');
    const nodes: number[] = [];
    let at = from;
    for (let k = 0; k < tokens.length; k++) {
      at = this.addChild(at, tokens[k], scores[k], source);
      nodes.push(at);
    }
    return nodes;
  }

  /**
   * Declares that `samples` (already added as children of `node`, in drawing order) were drawn
   * from q = `dist`. The drafter's own children of `node` must be exactly these samples.
   */
  setDraft(node: number, dist: TokenDistribution, samples: readonly number[], options: SetDraftOptions): void {
    this.checkNode(node);
    for (const token of samples) {
      if (this.childWithToken(node, token) < 0) throw new RangeError(`setDraft: sample ${token} is not a child of node ${node}`);
    }
    if (!options.withReplacement && new Set(samples).size !== samples.length) {
      throw new RangeError('setDraft: samples drawn without replacement must be distinct');
    }
    const groupRate = options.groupRate ?? 1;
    if (!(groupRate >= 0 && groupRate <= 1)) throw new RangeError(`setDraft: groupRate ${groupRate} not in [0, 1]`);
    this.drafts[node] = {
      dist,
      samples: samples.slice(),
      withReplacement: options.withReplacement,
      source: options.source ?? 'draft',
      groupRate,
    };
  }

  /** Tokens from the root (excluded) down to node i (included). */
  pathTo(i: number): number[] {
    const path: number[] = [];
    for (let at = i; at !== ROOT; at = this.parents[at]) path.push(this.tokens[at]);
    return path.reverse();
  }

  /** Nodes without children, ascending index (the root alone is a leaf). */
  leaves(): number[] {
    const result: number[] = [];
    for (let i = 0; i < this.size; i++) if (this.childLists[i].length === 0) result.push(i);
    return result;
  }

  maxDepth(): number {
    return Math.max(...this.depths);
  }

  branchIds(): BranchAssignment {
    const firstBranch = new Array<number>(this.size).fill(0);
    const endBranch = new Array<number>(this.size).fill(0);
    const branchLeaf: number[] = [];
    // Iterative DFS; a node is "closed" after its subtree so endBranch is known.
    const stack: { node: number; closing: boolean }[] = [{ node: ROOT, closing: false }];
    while (stack.length > 0) {
      const { node, closing } = stack.pop()!;
      if (closing) {
        endBranch[node] = branchLeaf.length;
        continue;
      }
      firstBranch[node] = branchLeaf.length;
      if (this.childLists[node].length === 0) branchLeaf.push(node);
      stack.push({ node, closing: true });
      const kids = this.childLists[node];
      for (let k = kids.length - 1; k >= 0; k--) stack.push({ node: kids[k], closing: false });
    }
    const nodeBranches = firstBranch.map((first, i) => range(first, endBranch[i]));
    return { branchCount: branchLeaf.length, branchLeaf, firstBranch, endBranch, nodeBranches };
  }

  /**
   * The drafted nodes a budget of `maxNodes` keeps, in admission order (best first, parents
   * before children). Best-first over units: a single node, or the whole child set of a node
   * with a DraftSampling (ranked by score(node)·groupRate and charged samples + foreign children,
   * both independent of the sampled values). Ties: shallower first, then lower node index.
   * With the tree's own (monotone) scores and no draft groups this is exactly the top-maxNodes
   * nodes by (score desc, depth asc, index asc).
   */
  select(maxNodes: number, options: SelectOptions = {}): number[] {
    const scores = options.scores ?? this.scores;
    const maxLeaves = options.maxLeaves ?? Infinity;
    const admitted: number[] = [];
    const keptChildCount = new Array<number>(this.size).fill(0);
    let leafCount = 1;
    const frontier = new UnitHeap();
    this.pushUnitsBelow(ROOT, scores, frontier);
    while (frontier.size > 0 && admitted.length < maxNodes) {
      const unit = frontier.pop();
      const parentWasLeaf = keptChildCount[unit.parent] === 0;
      if (admitted.length + unit.charge > maxNodes) continue;
      if (leafCount + unit.charge - (parentWasLeaf ? 1 : 0) > maxLeaves) continue;
      for (const node of unit.nodes) {
        admitted.push(node);
        this.pushUnitsBelow(node, scores, frontier);
      }
      keptChildCount[unit.parent] += unit.nodes.length;
      leafCount += unit.nodes.length - (parentWasLeaf ? 1 : 0);
    }
    return admitted;
  }

  /** Best-first admission order of every drafted node (no budget). */
  admissionOrder(options: SelectOptions = {}): number[] {
    return this.select(Infinity, options);
  }

  /** New tree with the `select`ed nodes; see `subtree` for the index mapping. */
  prune(maxNodes: number, options: SelectOptions = {}): TokenTree {
    return this.subtree(this.select(maxNodes, options));
  }

  /**
   * New tree with the root and `keep` (must be prefix-closed). Node k >= 1 of the result is the
   * k-th smallest kept index, so relative order (and tie-breaking) is preserved. Throws if a
   * draft-sampled child group would be split (that would make rejection sampling lossy).
   */
  subtree(keep: Iterable<number>): TokenTree {
    const kept = [...new Set(keep)].filter((i) => i !== ROOT).sort((a, b) => a - b);
    const newIndex = new Map<number, number>([[ROOT, ROOT]]);
    const result = new TokenTree(this.tokens[ROOT]);
    for (const old of kept) {
      this.checkNode(old);
      const parent = newIndex.get(this.parents[old]);
      if (parent === undefined) throw new RangeError(`subtree: node ${old} kept without its parent`);
      newIndex.set(old, result.copyNodeFrom(this, old, parent));
    }
    for (const [old, created] of newIndex) this.copyDraftInto(result, old, created, newIndex);
    return result;
  }

  /**
   * A copy without the `cut` nodes and everything below them, and where each kept node went. A
   * child of a node with draft-sampled children takes all of them with it (as `subtree` keeps
   * them): rejection sampling over part of a group would be lossy, while a parent left without
   * children just samples its bonus token.
   */
  without(cut: Iterable<number>): { tree: TokenTree; indexOf: (node: number) => number | undefined } {
    const removed = new Array<boolean>(this.size).fill(false);
    for (const node of cut) {
      this.checkNode(node);
      if (node === ROOT) throw new RangeError('without: the root cannot be cut');
      const parent = this.parents[node];
      for (const gone of this.drafts[parent] ? this.childLists[parent] : [node]) removed[gone] = true;
    }
    // A parent's index is below its children's, so one pass in index order sees every ancestor first.
    const kept: number[] = [];
    for (let node = 1; node < this.size; node++) {
      removed[node] ||= removed[this.parents[node]];
      if (!removed[node]) kept.push(node);
    }
    const newIndex = new Map<number, number>([[ROOT, ROOT], ...kept.map((old, k): [number, number] => [old, k + 1])]);
    return { tree: this.subtree(kept), indexOf: (node) => newIndex.get(node) };
  }

  private copyNodeFrom(other: TokenTree, old: number, parent: number): number {
    const created = this.pushNode(other.tokens[old], parent, other.depths[old], other.scores[old], other.primarySources[old]);
    this.sourceLists[created] = other.sourceLists[old].slice();
    this.evidenceLists[created] = other.evidenceLists[old].slice();
    this.contestedFlags[created] = other.contestedFlags[old];
    return created;
  }

  private copyDraftInto(result: TokenTree, old: number, created: number, newIndex: Map<number, number>): void {
    const draft = this.drafts[old];
    if (!draft) return;
    const allKept = this.childLists[old].every((child) => newIndex.has(child));
    const noneKept = this.childLists[old].every((child) => !newIndex.has(child));
    if (noneKept) return;
    if (!allKept) throw new RangeError(`subtree: would split the draft-sampled children of node ${old}`);
    result.drafts[created] = draft;
  }

  private pushUnitsBelow(node: number, scores: ArrayLike<number>, frontier: UnitHeap): void {
    const kids = this.childLists[node];
    if (kids.length === 0) return;
    const draft = this.drafts[node];
    if (draft) {
      frontier.push({
        key: scores[node] * draft.groupRate,
        depth: this.depths[node] + 1,
        anchor: node,
        parent: node,
        nodes: kids.slice(),
        charge: draft.samples.length + this.foreignChildCount(node, draft.source),
      });
      return;
    }
    for (const child of kids) {
      frontier.push({ key: scores[child], depth: this.depths[child], anchor: child, parent: node, nodes: [child], charge: 1 });
    }
  }

  /** Children proposed by some drafter other than the one that drew the samples (value-independent count). */
  private foreignChildCount(node: number, draftSource: string): number {
    let count = 0;
    for (const child of this.childLists[node]) {
      if (this.sourceLists[child].some((s) => s !== draftSource)) count++;
    }
    return count;
  }

  private pushNode(token: number, parent: number, depth: number, score: number, source: string, evidence = 0): number {
    if (!Number.isInteger(token)) throw new RangeError(`token ${token} is not an integer`);
    const index = this.tokens.length;
    this.tokens.push(token);
    this.parents.push(parent);
    this.depths.push(depth);
    this.scores.push(score);
    this.primarySources.push(source);
    this.sourceLists.push([source]);
    this.evidenceLists.push([evidence]);
    this.childLists.push([]);
    this.drafts.push(undefined);
    this.contestedFlags.push(false);
    if (parent >= 0) this.childLists[parent].push(index);
    return index;
  }

  private checkNode(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.size) throw new RangeError(`node ${i} is not in the tree (size ${this.size})`);
  }
}

/** A proposed child: `probability` is P(token | path to the parent), as estimated by the drafter. */
export interface ProposedChild {
  token: number;
  probability: number;
  /** See TokenTree.evidence. */
  evidence?: number;
}

/**
 * Grows a tree best-first within `budget`: repeatedly adds the highest-scoring frontier child
 * (score = parent score · probability; ties: proposed earlier first), then asks `childrenOf` for
 * its own children. Only the top `maxBranches` children of each node (by probability, stable)
 * are considered, and nodes at maxDepth are not expanded.
 */
export function growBestFirst(
  root: number,
  budget: DraftBudget,
  source: string,
  childrenOf: (tree: TokenTree, node: number) => readonly ProposedChild[],
  minScore = 0,
): TokenTree {
  const tree = new TokenTree(root);
  if (budget.maxNodes <= 0) return tree;
  const frontier: FrontierEntry[] = [];
  let proposed = 0;
  const expand = (node: number): void => {
    if (tree.depth(node) >= budget.maxDepth) return;
    const ranked = childrenOf(tree, node)
      .map((child, rank) => ({ child, rank }))
      .sort((a, b) => b.child.probability - a.child.probability || a.rank - b.rank)
      .slice(0, budget.maxBranches);
    for (const { child } of ranked) {
      const score = tree.score(node) * child.probability;
      if (score > 0 && score >= minScore) frontier.push({ parent: node, token: child.token, score, evidence: child.evidence ?? 0, order: proposed++ });
    }
  };
  expand(ROOT);
  while (frontier.length > 0 && tree.draftCount < budget.maxNodes) {
    const best = takeBest(frontier);
    expand(tree.addChild(best.parent, best.token, best.score, source, best.evidence));
  }
  return tree;
}

interface FrontierEntry {
  parent: number;
  token: number;
  score: number;
  evidence: number;
  order: number;
}

/** Removes the best entry. Linear scan: a frontier holds at most maxNodes·maxBranches entries. */
function takeBest(frontier: FrontierEntry[]): FrontierEntry {
  let best = 0;
  for (let i = 1; i < frontier.length; i++) {
    const a = frontier[i];
    const b = frontier[best];
    if (a.score > b.score || (a.score === b.score && a.order < b.order)) best = i;
  }
  return frontier.splice(best, 1)[0];
}

function range(from: number, to: number): number[] {
  const result: number[] = [];
  for (let b = from; b < to; b++) result.push(b);
  return result;
}

interface Unit {
  key: number;
  depth: number;
  /** The node whose index breaks ties: the node itself, or the parent of a draft group. */
  anchor: number;
  parent: number;
  nodes: number[];
  /** Budget charged for the admission test (>= nodes.length for draft groups). */
  charge: number;
}

/** True when a should be admitted before b. */
function unitBefore(a: Unit, b: Unit): boolean {
  if (a.key !== b.key) return a.key > b.key;
  if (a.depth !== b.depth) return a.depth < b.depth;
  return a.anchor < b.anchor;
}

/** Binary max-heap of units under `unitBefore`. */
class UnitHeap {
  private readonly items: Unit[] = [];

  get size(): number {
    return this.items.length;
  }

  push(unit: Unit): void {
    const items = this.items;
    items.push(unit);
    let at = items.length - 1;
    while (at > 0) {
      const up = (at - 1) >> 1;
      if (!unitBefore(items[at], items[up])) break;
      [items[at], items[up]] = [items[up], items[at]];
      at = up;
    }
  }

  pop(): Unit {
    const items = this.items;
    const top = items[0];
    const last = items.pop()!;
    if (items.length === 0) return top;
    items[0] = last;
    let at = 0;
    for (;;) {
      const left = 2 * at + 1;
      let best = at;
      if (left < items.length && unitBefore(items[left], items[best])) best = left;
      if (left + 1 < items.length && unitBefore(items[left + 1], items[best])) best = left + 1;
      if (best === at) return top;
      [items[at], items[best]] = [items[best], items[at]];
      at = best;
    }
  }
}
