import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NgramDrafter } from '../src/speculative/ngram.js';
import { SuffixDrafter, type SuffixOptions } from '../src/speculative/suffix.js';
import { ROOT, TokenTree, growBestFirst, type DraftBudget, type ProposedChild } from '../src/speculative/tree.js';
import { seededUniform } from './helpers/random.js';


const randomTokens = (rand: () => number, n: number, vocab: number): number[] => Array.from({ length: n }, () => Math.floor(rand() * vocab));

/** The highest-scoring root-to-leaf chain, following the best child at each node. */
function bestChain(tree: TokenTree): number[] {
  const chain: number[] = [];
  for (let node = ROOT; tree.children(node).length > 0; ) {
    node = tree.children(node).reduce((a, b) => (tree.score(b) > tree.score(a) ? b : a));
    chain.push(tree.token(node));
  }
  return chain;
}

/** Node-numbering-sensitive fingerprint: identical trees built in the same order compare equal. */
function fingerprint(tree: TokenTree): string[] {
  return Array.from({ length: tree.size }, (_, i) => `${tree.pathTo(i).join(',')}@${tree.score(i).toFixed(12)}`);
}

const BUDGET: DraftBudget = { maxNodes: 32, maxDepth: 6, maxBranches: 3 };

describe('NgramDrafter', () => {
  const pattern = [10, 11, 12, 13, 14, 15, 16];

  it('proposes the true continuation of a repeated sequence', () => {
    const drafter = new NgramDrafter();
    drafter.begin([...pattern, ...pattern, ...pattern.slice(0, 3)]);
    const tree = drafter.propose(12, BUDGET);
    assert.deepEqual(bestChain(tree), [13, 14, 15, 16, 10, 11]);
    assert.equal(tree.score(tree.children(ROOT)[0]), 1);
    assert.equal(tree.source(1), 'ngram');
  });

  it('tells the context length each proposal rests on (its evidence)', () => {
    const drafter = new NgramDrafter({ kMax: 4 });
    drafter.begin([...pattern, ...pattern, ...pattern.slice(0, 3)]);
    const tree = drafter.propose(12, BUDGET);
    assert.equal(tree.evidence(tree.children(ROOT)[0], 'ngram'), 4);
    const fresh = new NgramDrafter({ kMax: 4 });
    fresh.begin([5, 6, 99, 6]);
    const short = fresh.propose(6, BUDGET);
    assert.equal(short.evidence(short.children(ROOT)[0], 'ngram'), 1, 'only "6" was seen before');
  });

  it('branches where the history branched, with count/total scores', () => {
    const drafter = new NgramDrafter({ kMin: 1, kMax: 2 });
    // After "1 2": 3 twice, 4 once.
    drafter.begin([1, 2, 3, 9, 1, 2, 3, 9, 1, 2, 4, 9, 1, 2]);
    assert.deepEqual(drafter.continuations([5, 1, 2]), [
      { token: 3, count: 2 },
      { token: 4, count: 1 },
    ]);
    const tree = drafter.propose(2, { maxNodes: 8, maxDepth: 2, maxBranches: 2 });
    const three = tree.childWithToken(ROOT, 3);
    const four = tree.childWithToken(ROOT, 4);
    assert.ok(Math.abs(tree.score(three) - 2 / 3) < 1e-12);
    assert.ok(Math.abs(tree.score(four) - 1 / 3) < 1e-12);
    assert.deepEqual(tree.children(three).map((n) => tree.token(n)), [9]);
  });

  it('falls back to shorter contexts and treats a non-appended root as pending', () => {
    const drafter = new NgramDrafter({ kMin: 1, kMax: 3 });
    drafter.begin([7, 8, 1, 2, 3]);
    // Sequence ends in 3; root 7 is pending (not appended): context "3 7" unseen, "7" → 8.
    const tree = drafter.propose(7, { maxNodes: 4, maxDepth: 4, maxBranches: 1 });
    assert.deepEqual(bestChain(tree), [8, 1, 2, 3]);
    assert.equal(drafter.length, 5, 'a pending root is not recorded');
  });

  it('incremental appends give the same proposals as building from the whole sequence', () => {
    const rand = seededUniform(3);
    const tokens = randomTokens(rand, 400, 5);
    const incremental = new NgramDrafter();
    incremental.begin(tokens.slice(0, 50));
    for (let at = 50; at < tokens.length; ) {
      const step = 1 + Math.floor(rand() * 5);
      incremental.append(tokens.slice(at, at + step));
      at += step;
      const fresh = new NgramDrafter();
      fresh.begin(tokens.slice(0, Math.min(at, tokens.length)));
      const root = tokens[Math.min(at, tokens.length) - 1];
      assert.deepEqual(fingerprint(incremental.propose(root, BUDGET)), fingerprint(fresh.propose(root, BUDGET)));
    }
  });

  it('starts over at begin()', () => {
    const drafter = new NgramDrafter();
    drafter.begin([1, 2, 1, 2]);
    drafter.end();
    drafter.begin([5, 6]);
    assert.equal(drafter.propose(6, BUDGET).draftCount, 0);
  });
});

// ---------------------------------------------------------------------------------------------
// Suffix drafter
// ---------------------------------------------------------------------------------------------

/**
 * Brute-force reference: over live documents (history then current), find the longest suffix of
 * the current document (>= minMatch) with an occurrence followed by a token in the same document;
 * gather continuations from the most recent occurrences; grow the tree like the drafter does.
 */
function referenceProposal(history: number[][], current: number[], root: number, budget: DraftBudget, minMatch: number, maxOccurrences: number): TokenTree {
  const docs = [...history, current];
  for (let length = current.length; length >= minMatch; length--) {
    const needle = current.slice(current.length - length);
    const continuations: number[][] = [];
    docs.forEach((doc) => {
      for (let end = length - 1; end + 1 < doc.length; end++) {
        if (needle.every((t, k) => doc[end - length + 1 + k] === t)) continuations.push(doc.slice(end + 1, end + 1 + budget.maxDepth));
      }
    });
    if (continuations.length === 0) continue;
    const recent = continuations.reverse().slice(0, maxOccurrences);
    return growFromContinuations(root, recent, budget);
  }
  return new TokenTree(root);
}

interface Counted {
  count: number;
  children: Map<number, Counted>;
}

function growFromContinuations(root: number, continuations: number[][], budget: DraftBudget): TokenTree {
  const trie: Counted = { count: continuations.length, children: new Map() };
  for (const cont of continuations) {
    let node = trie;
    for (const token of cont) {
      if (!node.children.has(token)) node.children.set(token, { count: 0, children: new Map() });
      node = node.children.get(token)!;
      node.count++;
    }
  }
  const trieOf = (tree: TokenTree, node: number): Counted => {
    let at = trie;
    for (const token of tree.pathTo(node)) at = at.children.get(token)!;
    return at;
  };
  return growBestFirst(root, budget, 'suffix', (tree, node): ProposedChild[] => {
    const here = trieOf(tree, node);
    return [...here.children].map(([token, child]) => ({ token, probability: child.count / here.count }));
  });
}

describe('SuffixDrafter', () => {
  it('matches the output against the prompt', () => {
    const drafter = new SuffixDrafter();
    drafter.begin([5, 1, 2, 3, 4, 6, 7, 8, 9]);
    drafter.append([0, 1, 2, 3]);
    assert.deepEqual(drafter.findMatch(3)?.length, 3);
    // The prompt is followed by the output within the same document.
    assert.deepEqual(bestChain(drafter.propose(3, BUDGET)), [4, 6, 7, 8, 9, 0]);
  });

  it('tells the matched length each node rests on: the match, extended by the path to the node', () => {
    const drafter = new SuffixDrafter();
    drafter.begin([5, 1, 2, 3, 4, 6, 7, 8, 9]);
    drafter.append([0, 1, 2, 3]);
    const tree = drafter.propose(3, BUDGET);
    let node = ROOT;
    for (let depth = 1; depth <= 3; depth++) {
      node = tree.children(node)[0];
      assert.equal(tree.evidence(node, 'suffix'), 3 + depth - 1);
    }
  });

  it('matches a previous request kept in history, but not its dropped prompt, and never across documents', () => {
    const drafter = new SuffixDrafter({ minMatch: 2 });
    drafter.begin([50, 51, 52, 53]);
    drafter.append([20, 21, 22, 23, 24]);
    drafter.end();
    drafter.begin([30, 31]);
    drafter.append([20, 21]);
    assert.deepEqual(bestChain(drafter.propose(21, BUDGET)), [22, 23, 24], 'continuation stops at the document end');
    drafter.append([99, 50, 51]);
    assert.equal(drafter.propose(51, BUDGET).draftCount, 0, 'the previous prompt is not kept');
    drafter.end();
    drafter.begin([23, 24]);
    assert.equal(drafter.propose(24, BUDGET).draftCount, 0, 'nothing follows the end of a document');
  });

  it('never matches across a document boundary', () => {
    const drafter = new SuffixDrafter({ minMatch: 2, initialHistory: [[40, 41, 42], [43, 44, 45]] });
    drafter.begin([42, 43]);
    assert.equal(drafter.findMatch(43), null, '"42 43" only exists across the boundary');
    const loose = new SuffixDrafter({ minMatch: 1, initialHistory: [[40, 41, 42], [43, 44, 45]] });
    loose.begin([42, 43]);
    assert.equal(loose.findMatch(43)?.length, 1);
    assert.deepEqual(bestChain(loose.propose(43, BUDGET)), [44, 45]);
  });

  it('keeps the output of a request it was never asked to draft for, without indexing that request', () => {
    const drafter = new SuffixDrafter({ minMatch: 2 });
    drafter.begin([50, 51, 52, 53]);
    drafter.append([20, 21, 22]);
    drafter.append([23, 24]);
    drafter.end();
    assert.deepEqual(drafter.historyDocuments(), [[20, 21, 22, 23, 24]]);
    assert.equal(drafter.stats().textLength, 6, 'the output and its terminator only: the prompt was never indexed');
    drafter.begin([30, 20, 21]);
    assert.deepEqual(bestChain(drafter.propose(21, BUDGET)), [22, 23, 24]);
    assert.throws(() => drafter.append([2 ** 21]), RangeError, 'tokens are checked as they come, indexed or not');
    const keeping = new SuffixDrafter({ keepPrompts: true });
    keeping.begin([50, 51]);
    keeping.append([1]);
    keeping.end();
    assert.deepEqual(keeping.historyDocuments(), [[50, 51, 1]]);
  });

  it('keeps prompts in history when asked', () => {
    const drafter = new SuffixDrafter({ keepPrompts: true });
    drafter.begin([50, 51, 52, 53]);
    drafter.append([1]);
    drafter.end();
    drafter.begin([7, 50, 51]);
    assert.deepEqual(bestChain(drafter.propose(51, BUDGET)), [52, 53, 1]);
  });

  it('proposes several branches with frequency scores', () => {
    const drafter = new SuffixDrafter();
    // Longest repeated suffix "1 2": followed by 3 twice and by 4 once.
    drafter.begin([7, 1, 2, 3, 5, 1, 2, 3, 6, 1, 2, 4, 0, 1, 2]);
    const tree = drafter.propose(2, { maxNodes: 10, maxDepth: 2, maxBranches: 2 });
    assert.ok(Math.abs(tree.score(tree.childWithToken(ROOT, 3)) - 2 / 3) < 1e-12);
    assert.ok(Math.abs(tree.score(tree.childWithToken(ROOT, 4)) - 1 / 3) < 1e-12);
  });

  it('evicts old documents and stays bounded in memory', () => {
    const options: SuffixOptions = { maxHistoryTokens: 400, maxHistoryDocs: 8, minRebuildTokens: 200 };
    const drafter = new SuffixDrafter(options);
    drafter.begin([1]);
    drafter.append([100, 101, 102, 103]);
    drafter.end();
    const rand = seededUniform(9);
    for (let request = 0; request < 300; request++) {
      drafter.begin(randomTokens(rand, 30, 50));
      drafter.append(randomTokens(rand, 40, 50));
      drafter.end();
      const stats = drafter.stats();
      assert.ok(stats.historyDocs <= 8 && stats.liveHistoryTokens <= 400);
      // Live history + dead text (<= max(live, minRebuild)) + per-document terminators.
      assert.ok(stats.textLength <= 400 + 400 + 300 * 2, `text ${stats.textLength}`);
      assert.ok(stats.states <= 2 * stats.textLength + 1);
    }
    drafter.begin([100, 101]);
    assert.equal(drafter.propose(101, BUDGET).draftCount, 0, 'the evicted output no longer matches');
  });

  for (const seed of [1, 2, 3]) {
    it(`incremental updates equal a fresh rebuild and a brute-force reference (seed ${seed})`, () => {
      const rand = seededUniform(seed);
      const options: SuffixOptions = { maxHistoryTokens: 300, maxHistoryDocs: 5, minRebuildTokens: 64, minMatch: 2, maxOccurrences: 16 };
      const drafter = new SuffixDrafter(options);
      let checks = 0;
      for (let request = 0; request < 25; request++) {
        const prompt = randomTokens(rand, 5 + Math.floor(rand() * 30), 4);
        const output: number[] = [];
        drafter.begin(prompt);
        const steps = 5 + Math.floor(rand() * 8);
        for (let step = 0; step < steps; step++) {
          const chunk = randomTokens(rand, 1 + Math.floor(rand() * 4), 4);
          drafter.append(chunk);
          output.push(...chunk);
          // Every fourth request is never asked: it is indexed only into the history, at its end.
          if (request % 4 === 3) continue;
          const root = chunk[chunk.length - 1];
          const budget = { maxNodes: 12, maxDepth: 4, maxBranches: 3 };
          const fresh = new SuffixDrafter({ ...options, initialHistory: drafter.historyDocuments() });
          fresh.begin(prompt);
          fresh.append(output);
          const incremental = fingerprint(drafter.propose(root, budget));
          assert.deepEqual(incremental, fingerprint(fresh.propose(root, budget)), `request ${request} step ${step} vs rebuild`);
          const reference = referenceProposal(drafter.historyDocuments(), [...prompt, ...output], root, budget, 2, 16);
          assert.deepEqual(incremental, fingerprint(reference), `request ${request} step ${step} vs brute force`);
          checks += incremental.length > 1 ? 1 : 0;
        }
        drafter.end();
      }
      assert.ok(checks > 100, `too few non-empty proposals (${checks})`);
    });
  }

  it('a pending (not appended) root is matched as the next token', () => {
    const drafter = new SuffixDrafter();
    drafter.begin([1, 2, 3, 4, 5, 9, 1, 2]);
    assert.deepEqual(bestChain(drafter.propose(3, BUDGET)), [4, 5, 9, 1, 2]);
  });
});
