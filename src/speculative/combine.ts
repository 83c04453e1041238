/**
 * Merges the trees of several drafters into one candidate tree within a node budget.
 *
 * Union of paths; a node proposed by several drafters keeps the max score and all sources
 * (TokenTree.addChild); draft-sampling metadata is carried over (first tree wins if two trees
 * sampled the same node). The union is then cut to maxNodes with TokenTree.select, whose ties
 * (equal score, equal depth) go to the lower node index, i.e. to the earlier tree in `trees`
 * and, within a tree, to its earlier node: the result depends only on the inputs and their order.
 */
import { TokenTree, ROOT, type SelectOptions } from './tree.js';

/** Union of `trees`' paths; when only one of them drafted anything, that tree itself (not a copy). */
export function unionTrees(trees: readonly TokenTree[]): TokenTree {
  if (trees.length === 0) throw new RangeError('unionTrees: no trees');
  const drafted = trees.filter((tree) => tree.draftCount > 0);
  if (drafted.length === 1 && trees.every((tree) => tree.rootToken === drafted[0].rootToken)) return drafted[0];
  const rootToken = trees[0].rootToken;
  const union = new TokenTree(rootToken);
  for (const tree of trees) {
    if (tree.rootToken !== rootToken) throw new RangeError(`unionTrees: root ${tree.rootToken} differs from ${rootToken}`);
    mergeInto(union, tree);
  }
  markContested(union);
  return union;
}

/** Union of `trees`, pruned to `maxNodes` drafted nodes (and options.maxLeaves leaves). */
export function combineTrees(trees: readonly TokenTree[], maxNodes: number, options: SelectOptions = {}): TokenTree {
  return unionTrees(trees).prune(maxNodes, options);
}

function mergeInto(union: TokenTree, tree: TokenTree): void {
  const mapped = new Array<number>(tree.size);
  mapped[ROOT] = ROOT;
  // Parents precede children in a TokenTree, so one pass in index order suffices.
  for (let i = 1; i < tree.size; i++) {
    const parent = mapped[tree.parent(i)];
    // Primary source first, so it stays primary if this tree brings the max score.
    const node = union.addChild(parent, tree.token(i), tree.score(i), tree.source(i), tree.evidence(i, tree.source(i)));
    for (const source of tree.sources(i)) union.addChild(parent, tree.token(i), tree.score(i), source, tree.evidence(i, source));
    mapped[i] = node;
  }
  for (let i = 0; i < tree.size; i++) {
    const draft = tree.draft(i);
    if (draft && !union.draft(mapped[i])) {
      union.setDraft(mapped[i], draft.dist, draft.samples, draft);
    }
  }
}

/** Marks each node whose place another drafter filled with a different token (TokenTree.contested). */
function markContested(union: TokenTree): void {
  for (let node = 0; node < union.size; node++) {
    const siblings = union.children(node);
    if (siblings.length < 2) continue;
    for (const child of siblings) {
      const own = union.sources(child);
      const dissent = siblings.some((other) => other !== child && union.sources(other).some((source) => !own.includes(source)));
      if (dissent) union.markContested(child);
    }
  }
}
