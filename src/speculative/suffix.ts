/**
 * SuffixDecoding-style drafter over a generalized suffix automaton (GSA).
 *
 * Text = a sequence of documents: earlier outputs kept across requests (bounded history) and the
 * current request (prompt + output). Each document is inserted starting from the initial state,
 * so no match ever crosses a document boundary. Appending a token extends the automaton online
 * (amortized O(1) transitions; a token id must be below 2^21).
 *
 * Proposal: the longest suffix (>= minMatch) of the current sequence that also occurs ending at a
 * position with a continuation in a live document; the continuations after its (most recent)
 * occurrences form a frequency trie, and the candidate tree is grown best-first from it with
 * score(path) = (#occurrences continuing with path) / (#occurrences).
 *
 * Occurrences (endpos) are the positions recorded in the suffix-link subtree of a state; the
 * link tree is kept as sibling lists so clones can re-parent nodes in O(1).
 *
 * Bounded memory: at end() the output becomes a history document (the prompt is dropped unless
 * keepPrompts); the oldest documents are evicted beyond maxHistoryDocs / maxHistoryTokens.
 * Evicted text is only marked dead (filtered at lookup) until dead tokens outnumber live ones,
 * then the automaton is rebuilt from what is kept: rebuild cost is paid for by the tokens that
 * died, so maintenance stays amortized O(1) per appended token and memory O(2·bound + request).
 * Lookups filter dead documents exactly, so proposals are identical to a fresh rebuild's.
 */
import { growBestFirst, ROOT, TokenTree, type DraftBudget, type Drafter, type ProposedChild } from './tree.js';

export interface SuffixOptions {
  name?: string;
  /** Shortest match length that may propose (default 2). */
  minMatch?: number;
  /** Live history tokens kept across requests (default 262144). */
  maxHistoryTokens?: number;
  /** Earlier documents kept across requests (default 1024). */
  maxHistoryDocs?: number;
  /** Keep prompt + output in the history instead of the output only (default false). */
  keepPrompts?: boolean;
  /** Continuations are gathered from at most this many most recent occurrences (default 256). */
  maxOccurrences?: number;
  /**
   * Link-tree states visited per match length when gathering occurrences (default 4096). Bounds
   * the cost of very frequent matches; when it binds, occurrences come from the states visited
   * (biased toward recent ones) rather than strictly the most recent.
   */
  maxVisit?: number;
  /** Dead tokens tolerated before a rebuild, at least (default 65536). */
  minRebuildTokens?: number;
  /** Documents to start the history with, oldest first. */
  initialHistory?: readonly (readonly number[])[];
}

export interface SuffixMatch {
  /** Matched suffix length. */
  length: number;
  /** End positions of live occurrences that have a continuation, most recent first (capped). */
  positions: number[];
}

export interface SuffixStats {
  states: number;
  textLength: number;
  historyDocs: number;
  liveHistoryTokens: number;
  deadTokens: number;
}

const MAX_TOKEN = 1 << 21;
const TERMINATOR = -1;

export class SuffixDrafter implements Drafter {
  readonly name: string;
  private readonly minMatch: number;
  private readonly maxHistoryTokens: number;
  private readonly maxHistoryDocs: number;
  private readonly keepPrompts: boolean;
  private readonly maxOccurrences: number;
  private readonly maxVisit: number;
  private readonly minRebuildTokens: number;

  private index = new TextIndex();
  private history: { docId: number; tokens: Int32Array }[] = [];
  private current: { docId: number; start: number; promptLength: number } | null = null;
  /**
   * The request's text while no proposal has needed it in the automaton: where drafts do not pay,
   * a request's drafters are asked a few times or never, and its prompt, dropped at end() unless
   * prompts are kept, then need not be indexed at all.
   */
  private unindexed: { prompt: number[]; output: number[] } | null = null;
  private liveHistoryTokens = 0;
  private deadTokens = 0;

  constructor(options: SuffixOptions = {}) {
    this.name = options.name ?? 'suffix';
    this.minMatch = Math.max(1, options.minMatch ?? 2);
    this.maxHistoryTokens = options.maxHistoryTokens ?? 262144;
    this.maxHistoryDocs = options.maxHistoryDocs ?? 1024;
    this.keepPrompts = options.keepPrompts ?? false;
    this.maxOccurrences = options.maxOccurrences ?? 256;
    this.maxVisit = options.maxVisit ?? 4096;
    this.minRebuildTokens = options.minRebuildTokens ?? 65536;
    for (const doc of options.initialHistory ?? []) {
      checkTokens(doc);
      this.keepInHistory(Int32Array.from(doc));
    }
    this.evictAndMaybeRebuild();
  }

  /** Starts a new request's document; an unfinished previous request (no end()) is discarded. */
  begin(prompt: readonly number[]): void {
    if (this.current) this.discardCurrent();
    checkTokens(prompt);
    this.unindexed = { prompt: [...prompt], output: [] };
  }

  append(tokens: readonly number[]): void {
    if (!this.current && !this.unindexed) this.begin([]);
    checkTokens(tokens);
    if (this.unindexed) for (const token of tokens) this.unindexed.output.push(token);
    else this.index.appendTokens(tokens);
  }

  /** Moves the output (or prompt + output) into the bounded history. */
  end(): void {
    const unindexed = this.unindexed;
    if (unindexed) {
      this.unindexed = null;
      const kept = this.keepPrompts ? [...unindexed.prompt, ...unindexed.output] : unindexed.output;
      if (kept.length > 0) this.keepInHistory(Int32Array.from(kept));
      return this.evictAndMaybeRebuild();
    }
    const current = this.current;
    if (!current) return;
    this.current = null;
    this.index.closeDocument();
    const docTokens = this.index.slice(current.start, this.index.textLength - 1);
    if (this.keepPrompts) {
      this.history.push({ docId: current.docId, tokens: docTokens });
      this.liveHistoryTokens += docTokens.length;
    } else {
      this.markDead(current.docId, docTokens.length);
      const output = docTokens.subarray(current.promptLength);
      if (output.length > 0) this.keepInHistory(output.slice());
    }
    this.evictAndMaybeRebuild();
  }

  propose(root: number, budget: DraftBudget): TokenTree {
    const match = budget.maxNodes > 0 && budget.maxDepth > 0 ? this.findMatch(root) : null;
    if (!match) return new TokenTree(root);
    const counts = this.continuationTrie(match.positions, budget.maxDepth);
    const trieOf = new Map<number, CountNode>([[ROOT, counts]]);
    const childrenOf = (tree: TokenTree, node: number): ProposedChild[] => {
      const here = node === ROOT ? counts : trieOf.get(tree.parent(node))!.children.get(tree.token(node))!;
      trieOf.set(node, here);
      // The path below the root extends the match: a node at depth d rests on length + d - 1 tokens.
      const evidence = match.length + tree.depth(node);
      return [...here.children].map(([token, child]) => ({ token, probability: child.count / here.count, evidence }));
    };
    return growBestFirst(root, budget, this.name, childrenOf);
  }

  /**
   * Longest live match of the sequence ending with `root`. `root` is normally the last appended
   * token (Drafter contract); otherwise it is matched as a pending token after the sequence.
   */
  findMatch(root: number): SuffixMatch | null {
    this.indexRequest();
    let { state, length } = this.matchEndingWith(root);
    while (state > 0 && length >= this.minMatch) {
      const positions = this.liveOccurrences(state);
      if (positions.length > 0) return { length, positions };
      // Every occurrence of this length is dead or at the very end: try the next shorter class.
      state = this.index.sam.linkOf(state);
      length = this.index.sam.lengthOf(state);
    }
    return null;
  }

  /** Opens the request's document with what it holds so far (the first proposal needs it). */
  private indexRequest(): void {
    const unindexed = this.unindexed;
    if (!unindexed) return;
    this.unindexed = null;
    const start = this.index.textLength;
    const docId = this.index.openDocument();
    this.current = { docId, start, promptLength: unindexed.prompt.length };
    this.index.appendTokens(unindexed.prompt);
    this.index.appendTokens(unindexed.output);
  }

  /** Kept documents, oldest first. */
  historyDocuments(): number[][] {
    return this.history.map((doc) => Array.from(doc.tokens));
  }

  stats(): SuffixStats {
    return {
      states: this.index.sam.stateCount,
      textLength: this.index.textLength,
      historyDocs: this.history.length,
      liveHistoryTokens: this.liveHistoryTokens,
      deadTokens: this.deadTokens,
    };
  }

  /** Rebuilds the automaton from the kept history and the open request (drops dead text). */
  rebuild(): void {
    const fresh = new TextIndex();
    this.history = this.history.map(({ tokens }) => {
      const docId = fresh.openDocument();
      fresh.appendTokens(tokens);
      fresh.closeDocument();
      return { docId, tokens };
    });
    if (this.current) {
      const tokens = this.index.slice(this.current.start, this.index.textLength);
      const start = fresh.textLength;
      const docId = fresh.openDocument();
      fresh.appendTokens(tokens);
      this.current = { docId, start, promptLength: this.current.promptLength };
    }
    this.index = fresh;
    this.deadTokens = 0;
  }

  private matchEndingWith(root: number): { state: number; length: number } {
    const sam = this.index.sam;
    const open = this.current !== null && this.index.textLength > this.current.start;
    if (open && this.index.tokenAt(this.index.textLength - 1) === root) {
      return { state: sam.last, length: sam.lengthOf(sam.last) };
    }
    // Pending root: extend the match of the sequence by one transition (classic matching walk).
    let state = this.current ? sam.last : 0;
    while (state >= 0 && sam.transition(state, root) < 0) state = sam.linkOf(state);
    if (state < 0) return { state: 0, length: 0 };
    const length = sam.lengthOf(state) + 1;
    return { state: sam.transition(state, root), length };
  }

  /** End positions (in live documents, with a next token) of the strings of `state`. */
  private liveOccurrences(state: number): number[] {
    const found: number[] = [];
    const index = this.index;
    index.sam.visitSubtree(state, this.maxVisit, (position) => {
      const next = position + 1;
      if (next < index.textLength && index.tokenAt(next) !== TERMINATOR && index.isLive(position)) found.push(position);
    });
    return found.sort((a, b) => b - a).slice(0, this.maxOccurrences);
  }

  /** Frequency trie of the next `maxDepth` tokens after each position (stopping at document ends). */
  private continuationTrie(positions: readonly number[], maxDepth: number): CountNode {
    const root: CountNode = { count: positions.length, children: new Map() };
    for (const position of positions) {
      let node = root;
      for (let j = 1; j <= maxDepth; j++) {
        const at = position + j;
        if (at >= this.index.textLength) break;
        const token = this.index.tokenAt(at);
        if (token === TERMINATOR) break;
        let child = node.children.get(token);
        if (!child) {
          child = { count: 0, children: new Map() };
          node.children.set(token, child);
        }
        child.count++;
        node = child;
      }
    }
    return root;
  }

  private keepInHistory(tokens: Int32Array): void {
    const docId = this.index.openDocument();
    this.index.appendTokens(tokens);
    this.index.closeDocument();
    this.history.push({ docId, tokens });
    this.liveHistoryTokens += tokens.length;
  }

  private discardCurrent(): void {
    const current = this.current!;
    this.current = null;
    this.index.closeDocument();
    this.markDead(current.docId, this.index.textLength - 1 - current.start);
    this.evictAndMaybeRebuild();
  }

  private markDead(docId: number, tokenCount: number): void {
    this.index.killDocument(docId);
    this.deadTokens += tokenCount;
  }

  private evictAndMaybeRebuild(): void {
    while (this.history.length > this.maxHistoryDocs || this.liveHistoryTokens > this.maxHistoryTokens) {
      const oldest = this.history.shift()!;
      this.liveHistoryTokens -= oldest.tokens.length;
      this.markDead(oldest.docId, oldest.tokens.length);
    }
    if (this.deadTokens > Math.max(this.liveHistoryTokens, this.minRebuildTokens)) this.rebuild();
  }
}

/** Tokens the automaton can hold (checked as they are handed over, indexed or not). */
function checkTokens(tokens: ArrayLike<number>): void {
  for (let k = 0; k < tokens.length; k++) {
    const token = tokens[k];
    if (!Number.isInteger(token) || token < 0 || token >= MAX_TOKEN) throw new RangeError(`suffix: token ${token} out of range`);
  }
}

interface CountNode {
  count: number;
  children: Map<number, CountNode>;
}

/** Text (documents separated by TERMINATOR), per-position document ids, liveness, and the automaton. */
class TextIndex {
  readonly sam = new SuffixAutomaton();
  private readonly text = new IntVec();
  private readonly docOf = new IntVec();
  private readonly docLive: boolean[] = [];

  get textLength(): number {
    return this.text.length;
  }

  tokenAt(position: number): number {
    return this.text.get(position);
  }

  isLive(position: number): boolean {
    return this.docLive[this.docOf.get(position)];
  }

  slice(from: number, to: number): Int32Array {
    return this.text.slice(from, to);
  }

  openDocument(): number {
    this.sam.startDocument();
    this.docLive.push(true);
    return this.docLive.length - 1;
  }

  appendTokens(tokens: ArrayLike<number>): void {
    const docId = this.docLive.length - 1;
    for (let k = 0; k < tokens.length; k++) {
      const token = tokens[k];
      const position = this.text.push(token);
      this.docOf.push(docId);
      this.sam.extend(token, position);
    }
  }

  closeDocument(): void {
    this.text.push(TERMINATOR);
    this.docOf.push(this.docLive.length - 1);
  }

  killDocument(docId: number): void {
    this.docLive[docId] = false;
  }
}

/**
 * Generalized suffix automaton, online construction (each document restarts from state 0).
 * Transitions live in one Map keyed state·2^21 + token plus per-state edge lists (for cloning);
 * each state lists the text positions whose document prefix it represents.
 */
class SuffixAutomaton {
  last = 0;
  private readonly len = new IntVec();
  private readonly link = new IntVec();
  // Suffix-link tree as doubly linked sibling lists.
  private readonly firstChild = new IntVec();
  private readonly nextSibling = new IntVec();
  private readonly prevSibling = new IntVec();
  // Transitions.
  private readonly edgeHead = new IntVec();
  private readonly edgeNext = new IntVec();
  private readonly edgeToken = new IntVec();
  private readonly edgeTarget = new IntVec();
  private readonly edgeOf = new Map<number, number>();
  // Recorded positions: per-state singly linked lists.
  private readonly positionHead = new IntVec();
  private readonly positionNext = new IntVec();
  private readonly positionValue = new IntVec();

  constructor() {
    this.newState(0);
  }

  get stateCount(): number {
    return this.len.length;
  }

  lengthOf(state: number): number {
    return this.len.get(state);
  }

  linkOf(state: number): number {
    return this.link.get(state);
  }

  transition(state: number, token: number): number {
    const edge = this.edgeOf.get(state * MAX_TOKEN + token);
    return edge === undefined ? -1 : this.edgeTarget.get(edge);
  }

  startDocument(): void {
    this.last = 0;
  }

  /** Appends `token` to the current document and records `position` at the new prefix state. */
  extend(token: number, position: number): void {
    let p = this.last;
    const existing = this.transition(p, token);
    if (existing >= 0) {
      // The new prefix already exists as a substring (generalized construction).
      this.last = this.len.get(p) + 1 === this.len.get(existing) ? existing : this.splitOff(p, token, existing);
    } else {
      const cur = this.newState(this.len.get(p) + 1);
      while (p >= 0 && this.transition(p, token) < 0) {
        this.addEdge(p, token, cur);
        p = this.link.get(p);
      }
      if (p < 0) this.setLink(cur, 0);
      else {
        const q = this.transition(p, token);
        this.setLink(cur, this.len.get(p) + 1 === this.len.get(q) ? q : this.splitOff(p, token, q));
      }
      this.last = cur;
    }
    this.recordPosition(this.last, position);
  }

  /** Calls `visit(position)` for positions recorded in the link subtree of `state` (at most maxStates states). */
  visitSubtree(state: number, maxStates: number, visit: (position: number) => void): void {
    const stack = [state];
    let visited = 0;
    while (stack.length > 0 && visited < maxStates) {
      const s = stack.pop()!;
      visited++;
      for (let r = this.positionHead.get(s); r >= 0; r = this.positionNext.get(r)) visit(this.positionValue.get(r));
      // Children are listed newest first; push them so the newest is popped first, which biases
      // a capped visit toward recent occurrences.
      const firstPushed = stack.length;
      for (let c = this.firstChild.get(s); c >= 0; c = this.nextSibling.get(c)) stack.push(c);
      reverseTail(stack, firstPushed);
    }
  }

  /** Clones q at length len(p)+1 and redirects p's suffix chain from q to the clone. */
  private splitOff(p: number, token: number, q: number): number {
    const clone = this.newState(this.len.get(p) + 1);
    this.setLink(clone, this.link.get(q));
    for (let e = this.edgeHead.get(q); e >= 0; e = this.edgeNext.get(e)) this.addEdge(clone, this.edgeToken.get(e), this.edgeTarget.get(e));
    this.setLink(q, clone);
    while (p >= 0 && this.transition(p, token) === q) {
      this.edgeTarget.set(this.edgeOf.get(p * MAX_TOKEN + token)!, clone);
      p = this.link.get(p);
    }
    return clone;
  }

  private newState(length: number): number {
    const state = this.len.push(length);
    this.link.push(-1);
    this.firstChild.push(-1);
    this.nextSibling.push(-1);
    this.prevSibling.push(-1);
    this.edgeHead.push(-1);
    this.positionHead.push(-1);
    return state;
  }

  private addEdge(state: number, token: number, target: number): void {
    const edge = this.edgeToken.push(token);
    this.edgeTarget.push(target);
    this.edgeNext.push(this.edgeHead.get(state));
    this.edgeHead.set(state, edge);
    this.edgeOf.set(state * MAX_TOKEN + token, edge);
  }

  /** Re-parents `state` in the link tree: O(1) with doubly linked sibling lists. */
  private setLink(state: number, parent: number): void {
    const old = this.link.get(state);
    if (old >= 0) {
      const prev = this.prevSibling.get(state);
      const next = this.nextSibling.get(state);
      if (prev >= 0) this.nextSibling.set(prev, next);
      else this.firstChild.set(old, next);
      if (next >= 0) this.prevSibling.set(next, prev);
    }
    this.link.set(state, parent);
    const head = this.firstChild.get(parent);
    this.prevSibling.set(state, -1);
    this.nextSibling.set(state, head);
    if (head >= 0) this.prevSibling.set(head, state);
    this.firstChild.set(parent, state);
  }

  private recordPosition(state: number, position: number): void {
    const record = this.positionValue.push(position);
    this.positionNext.push(this.positionHead.get(state));
    this.positionHead.set(state, record);
  }
}

function reverseTail(items: number[], from: number): void {
  for (let i = from, j = items.length - 1; i < j; i++, j--) [items[i], items[j]] = [items[j], items[i]];
}

/** Growable Int32 vector (amortized O(1) push). */
class IntVec {
  private data = new Int32Array(16);
  length = 0;

  /** Returns the index of the pushed value. */
  push(value: number): number {
    if (this.length === this.data.length) {
      const grown = new Int32Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.length] = value;
    return this.length++;
  }

  get(i: number): number {
    return this.data[i];
  }

  set(i: number, value: number): void {
    this.data[i] = value;
  }

  slice(from: number, to: number): Int32Array {
    return this.data.slice(from, to);
  }
}
