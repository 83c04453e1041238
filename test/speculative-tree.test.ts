import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { combineTrees, unionTrees } from '../src/speculative/combine.js';
import { ROOT, TokenTree, growBestFirst } from '../src/speculative/tree.js';
import type { TokenDistribution } from '../src/generate/sampling.js';
import { seededUniform } from './helpers/random.js';
import { nodeAt } from './helpers/trees.js';


/** Random tree: each new node hangs below a random node, score = parent score · random factor. */
function randomTree(seed: number, nodes: number, vocab = 6): TokenTree {
  const rand = seededUniform(seed);
  const tree = new TokenTree(0);
  for (let k = 0; k < nodes; k++) {
    const parent = Math.floor(rand() * tree.size);
    const factor = rand() < 0.2 ? 1 : rand(); // some ties with the parent
    tree.addChild(parent, Math.floor(rand() * vocab), tree.score(parent) * factor, rand() < 0.5 ? 'a' : 'b');
  }
  return tree;
}

function isAncestorOrSelf(tree: TokenTree, ancestor: number, node: number): boolean {
  for (let at = node; at >= 0; at = tree.parent(at)) if (at === ancestor) return true;
  return false;
}

/** Set of (path → score) pairs: tree identity independent of node numbering. */
function pathScores(tree: TokenTree): Map<string, number> {
  const map = new Map<string, number>();
  for (let i = 1; i < tree.size; i++) map.set(tree.pathTo(i).join(','), tree.score(i));
  return map;
}

const dist = (ids: number[], probs: number[]): TokenDistribution => ({ ids: Int32Array.from(ids), probs: Float64Array.from(probs) });

describe('TokenTree basics', () => {
  it('merges shared prefixes, keeps the max score and records every source', () => {
    const tree = new TokenTree(7);
    const a = tree.addPath([1, 2, 3], [0.9, 0.5, 0.2], 'ngram');
    const b = tree.addPath([1, 2, 4], [0.6, 0.55, 0.3], 'suffix');
    assert.equal(tree.size, 5);
    assert.deepEqual(b.slice(0, 2), a.slice(0, 2));
    assert.equal(tree.score(a[0]), 0.9);
    assert.equal(tree.source(a[0]), 'ngram');
    assert.equal(tree.score(a[1]), 0.55);
    assert.equal(tree.source(a[1]), 'suffix', 'primary source = the one with the max score');
    assert.deepEqual(tree.sources(a[1]), ['ngram', 'suffix']);
    assert.deepEqual(tree.pathTo(b[2]), [1, 2, 4]);
    assert.deepEqual(tree.pathTo(ROOT), []);
    assert.deepEqual(tree.leaves(), [a[2], b[2]]);
    assert.equal(tree.childWithToken(a[1], 4), b[2]);
    assert.equal(tree.childWithToken(a[1], 9), -1);
  });

  it('clamps a child score to its parent score (so score cuts are prefix-closed)', () => {
    const tree = new TokenTree(0);
    const [x, y] = tree.addPath([1, 2], [0.3, 0.8], 'a');
    assert.equal(tree.score(y), 0.3);
    assert.ok(tree.score(y) <= tree.score(x));
  });

  it('rejects draft samples that are not children, and repeated samples without replacement', () => {
    const tree = new TokenTree(0);
    tree.addChild(ROOT, 1, 0.5, 'draft');
    assert.throws(() => tree.setDraft(ROOT, dist([1, 2], [0.5, 0.5]), [2], { withReplacement: true }), RangeError);
    assert.throws(() => tree.setDraft(ROOT, dist([1, 2], [0.5, 0.5]), [1, 1], { withReplacement: false }), RangeError);
    tree.setDraft(ROOT, dist([1, 2], [0.5, 0.5]), [1, 1], { withReplacement: true });
    assert.deepEqual(tree.draft(ROOT)?.samples, [1, 1]);
  });
});

describe('branchIds', () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    it(`gives every node exactly the branches of the leaves below it (seed ${seed})`, () => {
      const tree = randomTree(seed, 40);
      const { branchCount, branchLeaf, nodeBranches, firstBranch, endBranch } = tree.branchIds();
      const leaves = tree.leaves();
      assert.equal(branchCount, leaves.length);
      assert.deepEqual([...branchLeaf].sort((a, b) => a - b), leaves);
      for (let node = 0; node < tree.size; node++) {
        const expected = branchLeaf.map((leaf, b) => (isAncestorOrSelf(tree, node, leaf) ? b : -1)).filter((b) => b >= 0);
        assert.deepEqual(nodeBranches[node], expected, `node ${node}`);
        assert.deepEqual(nodeBranches[node], Array.from({ length: endBranch[node] - firstBranch[node] }, (_, k) => firstBranch[node] + k));
      }
      assert.equal(nodeBranches[ROOT].length, branchCount, 'the root is in every branch');
    });
  }

  it('a root-only tree has one branch', () => {
    const { branchCount, nodeBranches } = new TokenTree(5).branchIds();
    assert.equal(branchCount, 1);
    assert.deepEqual(nodeBranches, [[0]]);
  });
});

describe('prune', () => {
  for (const seed of [11, 12, 13, 14]) {
    it(`keeps the top nodes by (score, depth, index), prefix-closed (seed ${seed})`, () => {
      const tree = randomTree(seed, 60);
      for (const budget of [0, 1, 5, 17, 40, 1000]) {
        const kept = tree.select(budget);
        const ranked = Array.from({ length: tree.size - 1 }, (_, k) => k + 1).sort(
          (a, b) => tree.score(b) - tree.score(a) || tree.depth(a) - tree.depth(b) || a - b,
        );
        assert.deepEqual([...kept].sort((a, b) => a - b), ranked.slice(0, budget).sort((a, b) => a - b));
        const keptSet = new Set(kept);
        for (const node of kept) assert.ok(tree.parent(node) === ROOT || keptSet.has(tree.parent(node)), 'prefix-closed');
        const pruned = tree.prune(budget);
        assert.equal(pruned.draftCount, Math.min(budget, tree.draftCount));
        const all = pathScores(tree);
        for (const [path, score] of pathScores(pruned)) assert.equal(all.get(path), score);
      }
    });
  }

  it('ranks by external scores when given, still prefix-closed', () => {
    const tree = randomTree(21, 50);
    const rand = seededUniform(5);
    const scores = Array.from({ length: tree.size }, () => rand()); // not monotone on purpose
    const kept = new Set(tree.select(20, { scores }));
    assert.equal(kept.size, 20);
    for (const node of kept) assert.ok(tree.parent(node) === ROOT || kept.has(tree.parent(node)));
  });

  it('respects maxLeaves', () => {
    const tree = randomTree(31, 80);
    for (const maxLeaves of [1, 2, 5]) {
      const pruned = tree.prune(40, { maxLeaves });
      assert.ok(pruned.leaves().length <= maxLeaves, `${pruned.leaves().length} leaves > ${maxLeaves}`);
      assert.ok(pruned.draftCount > 0);
    }
  });

  it('keeps a draft-sampled group whole, ranked independently of the sampled values', () => {
    const build = (samples: number[]): TokenTree => {
      const tree = new TokenTree(0);
      tree.addPath([9, 8, 7], [0.95, 0.8, 0.7], 'ngram');
      const [parent] = tree.addPath([5], [0.9], 'ngram');
      // The samples' own scores are value-dependent (q of each sample); they must not matter.
      for (const token of samples) tree.addChild(parent, token, token / 10, 'draft');
      tree.setDraft(parent, dist([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4]), samples, { withReplacement: false, groupRate: 0.75 });
      return tree;
    };
    for (const samples of [[1, 2, 3], [4, 3, 2], [3, 1, 4]]) {
      const tree = build(samples);
      // Group key 0.9 · 0.75 = 0.675 < 0.7: 9, 5, 8, 7 come first, then the 3 samples together.
      const kept = tree.select(7);
      assert.deepEqual(kept.map((n) => tree.token(n)).slice(0, 4), [9, 5, 8, 7]);
      assert.deepEqual(new Set(kept.slice(4).map((n) => tree.token(n))), new Set(samples));
      assert.equal(tree.select(6).length, 4, 'a group that does not fit is dropped whole');
      const pruned = tree.prune(7);
      assert.deepEqual(pruned.draft(pruned.childWithToken(ROOT, 5))?.samples, samples);
    }
  });

  it('subtree refuses to split a draft group and to orphan a node', () => {
    const tree = new TokenTree(0);
    const a = tree.addChild(ROOT, 1, 0.5, 'draft');
    const b = tree.addChild(ROOT, 2, 0.5, 'draft');
    tree.setDraft(ROOT, dist([1, 2], [0.5, 0.5]), [1, 2], { withReplacement: false });
    const c = tree.addChild(a, 3, 0.4, 'x');
    assert.throws(() => tree.subtree([a]), RangeError);
    assert.throws(() => tree.subtree([c]), RangeError);
    assert.equal(tree.subtree([a, b]).draft(ROOT)?.samples.length, 2);
  });

  it('without cuts nodes with their subtrees, a draft group whole, and says where kept nodes went', () => {
    const tree = new TokenTree(0);
    const [x, y, z] = tree.addPath([7, 8, 9], [0.9, 0.8, 0.7], 'ngram');
    const w = tree.addChild(x, 6, 0.1, 'ngram');
    const a = tree.addChild(y, 1, 0.5, 'draft');
    const b = tree.addChild(y, 2, 0.4, 'draft');
    tree.setDraft(y, dist([1, 2], [0.6, 0.4]), [1, 2], { withReplacement: false });
    const cutW = tree.without([w]);
    assert.deepEqual([cutW.tree.size, cutW.indexOf(w), cutW.tree.token(cutW.indexOf(b)!)], [6, undefined, 2]);
    assert.equal(cutW.tree.draft(cutW.indexOf(y)!)?.samples.length, 2);
    // Cutting a child of a node whose children were draft-sampled takes them all (as subtree would have them): y becomes a leaf.
    for (const cut of [a, z]) {
      const { tree: cutTree, indexOf } = tree.without([cut]);
      assert.deepEqual([indexOf(a), indexOf(b), indexOf(z), cutTree.children(indexOf(y)!).length, cutTree.size], [undefined, undefined, undefined, 0, 4]);
    }
    const cutX = tree.without([x]);
    assert.equal(cutX.tree.size, 1);
    assert.throws(() => tree.without([ROOT]), RangeError);
  });
});

describe('combineTrees', () => {
  it('unions paths with max scores and all sources, then prunes deterministically', () => {
    const ngram = new TokenTree(5);
    ngram.addPath([1, 2, 3], [0.8, 0.6, 0.4], 'ngram');
    ngram.addPath([4], [0.3], 'ngram');
    const suffix = new TokenTree(5);
    suffix.addPath([1, 2, 6], [0.9, 0.5, 0.45], 'suffix');
    suffix.addPath([7], [0.3], 'suffix');
    const union = unionTrees([ngram, suffix]);
    const scores = pathScores(union);
    assert.deepEqual(
      [...scores],
      [
        ['1', 0.9],
        ['1,2', 0.6],
        ['1,2,3', 0.4],
        ['4', 0.3],
        ['1,2,6', 0.45],
        ['7', 0.3],
      ],
    );
    const shared = union.childWithToken(ROOT, 1);
    assert.deepEqual(union.sources(shared), ['ngram', 'suffix']);
    assert.equal(union.source(shared), 'suffix');
    // Budget 5: 1, 1-2, 1-2-6, 1-2-3, then a 0.3 tie between ngram's [4] and suffix's [7]: earlier tree wins.
    const combined = combineTrees([ngram, suffix], 5);
    assert.deepEqual([...pathScores(combined).keys()].sort(), ['1', '1,2', '1,2,3', '1,2,6', '4']);
    assert.deepEqual([...pathScores(combineTrees([suffix, ngram], 5)).keys()].sort(), ['1', '1,2', '1,2,3', '1,2,6', '7']);
  });

  it('carries draft sampling metadata over', () => {
    const draft = new TokenTree(5);
    draft.addChild(ROOT, 1, 0.4, 'draft');
    draft.setDraft(ROOT, dist([1], [1]), [1], { withReplacement: true });
    const ngram = new TokenTree(5);
    ngram.addPath([2], [0.9], 'ngram');
    const combined = combineTrees([ngram, draft], 10);
    assert.deepEqual(combined.draft(ROOT)?.samples, [1]);
    assert.equal(combined.draftCount, 2);
  });

  it('marks the nodes whose place another drafter filled with a different token, through pruning', () => {
    const suffix = new TokenTree(5);
    suffix.addPath([1, 2, 3], [1, 1, 1], 'suffix');
    suffix.addPath([1, 8], [1, 0.5], 'suffix');
    const ngram = new TokenTree(5);
    ngram.addPath([1, 2, 4], [0.9, 0.9, 0.3], 'ngram');
    ngram.addPath([1, 2, 6], [0.9, 0.9, 0.3], 'ngram');
    const union = unionTrees([suffix, ngram]);
    const contested = (tokens: number[]) => union.contested(nodeAt(union, tokens));
    assert.equal(contested([1]), false, 'both drafted 1');
    assert.equal(contested([1, 2]), false, 'the suffix drafter drafted 8 beside it too, but also 2 itself');
    assert.equal(contested([1, 8]), true, 'the n-gram drafted 2 in its place');
    assert.equal(contested([1, 2, 3]), true, 'the n-gram drafted 4 and 6 there');
    assert.equal(contested([1, 2, 4]), true);
    const alone = unionTrees([suffix, new TokenTree(5)]);
    assert.equal(alone.contested(nodeAt(alone, [1, 8])), false, 'a drafter\'s own alternatives are not a dispute: its scores say how sure it is');
    const pruned = union.subtree([nodeAt(union, [1]), nodeAt(union, [1, 2]), nodeAt(union, [1, 2, 3])]);
    assert.equal(pruned.contested(nodeAt(pruned, [1, 2, 3])), true, 'the mark outlives the siblings pruned away');
    assert.equal(pruned.contested(nodeAt(pruned, [1])), false);
  });

  it('refuses trees with different roots', () => {
    assert.throws(() => unionTrees([new TokenTree(1), new TokenTree(2)]), RangeError);
  });
});

describe('growBestFirst', () => {
  it('respects maxNodes, maxDepth and maxBranches, and multiplies probabilities along paths', () => {
    // Every node has children 0..4 with probabilities 0.4, 0.3, 0.15, 0.1, 0.05.
    const probs = [0.4, 0.3, 0.15, 0.1, 0.05];
    const tree = growBestFirst(9, { maxNodes: 12, maxDepth: 3, maxBranches: 2 }, 'x', () => probs.map((probability, token) => ({ token, probability })));
    assert.equal(tree.draftCount, 12);
    assert.ok(tree.maxDepth() <= 3);
    for (let i = 0; i < tree.size; i++) assert.ok(tree.children(i).length <= 2);
    for (let i = 1; i < tree.size; i++) {
      const expected = tree.pathTo(i).reduce((acc, t) => acc * probs[t], 1);
      assert.ok(Math.abs(tree.score(i) - expected) < 1e-12);
    }
    // Best-first: every node left out scores at most the worst node kept.
    const worstKept = Math.min(...Array.from({ length: tree.size - 1 }, (_, k) => tree.score(k + 1)));
    assert.ok(worstKept >= 0.4 * 0.3 * 0.3 - 1e-12);
  });
});
