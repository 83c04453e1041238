/**
 * TokenSwift-style n-gram drafter: for every context length k in [kMin, kMax], the last k tokens
 * of prompt + output map to frequency counts of the token that followed them.
 *
 * Storage is a trie over REVERSED contexts: the node at depth d holds the counts for the context
 * (t[i-d], ..., t[i-1]). Appending token t walks one path of depth kMax and bumps one count per
 * level, so an update costs O(kMax), and the longest matching context of any sequence is found by
 * walking its last tokens backwards.
 *
 * Proposals expand a tree best-first: each node's context is the sequence plus its own path, its
 * children are the top-`maxBranches` continuations of the longest matching context, and a child
 * scores parent·count/total (the empirical conditional probability, multiplied along the path).
 */
import { growBestFirst, ROOT, type DraftBudget, type Drafter, type ProposedChild, type TokenTree } from './tree.js';

export interface NgramOptions {
  name?: string;
  /** Shortest context used (default 1). */
  kMin?: number;
  /** Longest context stored (default 4). */
  kMax?: number;
  /** Candidates scoring below this are not proposed (default 0). */
  minScore?: number;
}

export interface Continuation {
  token: number;
  count: number;
}

interface ContextNode {
  /** Next-token counts after this context (filled only for depth >= kMin). */
  readonly counts: Map<number, number>;
  total: number;
  /** Extends the context one token further back. */
  readonly longer: Map<number, ContextNode>;
}

function newContextNode(): ContextNode {
  return { counts: new Map(), total: 0, longer: new Map() };
}

export class NgramDrafter implements Drafter {
  readonly name: string;
  private readonly kMin: number;
  private readonly kMax: number;
  private readonly minScore: number;
  private table: ContextNode = newContextNode();
  /** The tokens the table holds. */
  private sequence: number[] = [];
  /**
   * Tokens of the request not in the table yet, indexed when a proposal needs them: where drafts
   * do not pay, a request's drafters are asked a few times or never, and indexing its prompt and
   * output anyway (a map entry per context length and token, in code that runs too rarely to be
   * compiled) took 3-12 µs a token in a first pass over 800 tokens, where a decode of the tiny
   * testbed takes 400-600 µs and each output token brings about two tokens to index.
   */
  private unindexed: number[] = [];

  constructor(options: NgramOptions = {}) {
    this.name = options.name ?? 'ngram';
    this.kMin = options.kMin ?? 1;
    this.kMax = options.kMax ?? 4;
    this.minScore = options.minScore ?? 0;
    if (!(Number.isInteger(this.kMin) && this.kMin >= 1 && Number.isInteger(this.kMax) && this.kMax >= this.kMin)) {
      throw new RangeError(`ngram: need integers 1 <= kMin <= kMax, got ${this.kMin}..${this.kMax}`);
    }
  }

  /** The table covers one request (prompt + output), so it starts over. */
  begin(prompt: readonly number[]): void {
    this.table = newContextNode();
    this.sequence = [];
    this.unindexed = [...prompt];
  }

  append(tokens: readonly number[]): void {
    for (const token of tokens) this.unindexed.push(token);
  }

  end(): void {
    // Nothing survives a request.
    this.unindexed = [];
  }

  /** Tokens seen since begin(). */
  get length(): number {
    return this.sequence.length + this.unindexed.length;
  }

  /**
   * Continuations of the longest stored context (length >= kMin) that is a suffix of `context`,
   * most frequent first (ties: lower token id first).
   */
  continuations(context: readonly number[]): Continuation[] {
    this.indexPending();
    const found = this.longestContext((d) => context[context.length - d], context.length);
    return found ? topContinuations(found.node.counts, Infinity) : [];
  }

  /**
   * `root` is normally the last appended token (Drafter contract); if it is not, it is treated as
   * a pending token after the sequence, without being recorded.
   */
  propose(root: number, budget: DraftBudget): TokenTree {
    this.indexPending();
    const base = this.contextTail(root);
    // The context of a node is base + its path, read backwards without building it.
    const tokenBack = (tree: TokenTree, node: number, d: number): number | undefined => {
      let at = node;
      for (let k = 1; k < d && at !== ROOT; k++) at = tree.parent(at);
      if (at !== ROOT) return tree.token(at);
      return base[base.length - (d - tree.depth(node))];
    };
    const childrenOf = (tree: TokenTree, node: number): ProposedChild[] => {
      const found = this.longestContext((d) => tokenBack(tree, node, d), base.length + tree.depth(node));
      if (!found) return [];
      const { node: best, length } = found;
      return topContinuations(best.counts, budget.maxBranches).map(({ token, count }) => ({ token, probability: count / best.total, evidence: length }));
    };
    return growBestFirst(root, budget, this.name, childrenOf, this.minScore);
  }

  /** Every drafting step calls this; most find nothing pending, and allocate nothing either. */
  private indexPending(): void {
    if (this.unindexed.length === 0) return;
    for (const token of this.unindexed) this.appendOne(token);
    this.unindexed.length = 0;
  }

  private appendOne(token: number): void {
    const seq = this.sequence;
    let node = this.table;
    const deepest = Math.min(this.kMax, seq.length);
    for (let d = 1; d <= deepest; d++) {
      const previous = seq[seq.length - d];
      let longer = node.longer.get(previous);
      if (!longer) {
        longer = newContextNode();
        node.longer.set(previous, longer);
      }
      node = longer;
      if (d >= this.kMin) {
        node.counts.set(token, (node.counts.get(token) ?? 0) + 1);
        node.total++;
      }
    }
    seq.push(token);
  }

  /**
   * The longest stored context that ends a context of `length` tokens, whose d-th token from
   * the end is `back(d)`, with its length.
   */
  private longestContext(back: (d: number) => number | undefined, length: number): { node: ContextNode; length: number } | undefined {
    let node = this.table;
    let best: { node: ContextNode; length: number } | undefined;
    const deepest = Math.min(this.kMax, length);
    for (let d = 1; d <= deepest; d++) {
      const next = node.longer.get(back(d)!);
      if (!next) break;
      node = next;
      if (d >= this.kMin && node.total > 0) best = { node, length: d };
    }
    return best;
  }

  /** Last kMax tokens of the sequence, ending with root. */
  private contextTail(root: number): number[] {
    const seq = this.sequence;
    const rootAppended = seq.length > 0 && seq[seq.length - 1] === root;
    const tail = seq.slice(Math.max(0, seq.length - this.kMax));
    if (!rootAppended) tail.push(root);
    return tail;
  }
}

/**
 * The `limit` most frequent continuations, most frequent first (ties: lower token id first).
 * Insertion into a short sorted list: O(m·limit) for m distinct continuations, no full sort.
 */
function topContinuations(counts: Map<number, number>, limit: number): Continuation[] {
  const top: Continuation[] = [];
  for (const [token, count] of counts) {
    let at = top.length;
    while (at > 0 && (top[at - 1].count < count || (top[at - 1].count === count && top[at - 1].token > token))) at--;
    if (at < limit) {
      top.splice(at, 0, { token, count });
      if (top.length > limit) top.pop();
    }
  }
  return top;
}
