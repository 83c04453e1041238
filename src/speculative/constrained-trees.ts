/**
 * Drafts within a constraint (a request's grammar): a drafted token the constraint refuses can
 * never be accepted (the target chooses among the tokens it allows), so it and everything drafted
 * after it are cut before the planner prices the tree. Drafters that do not know the grammar
 * (n-gram, suffix, a draft model's runner-ups) then cost no verification for what it rules out.
 */
import type { TokenConstraint } from '../generate/sampling.js';
import { ROOT, type TokenTree } from './tree.js';

/**
 * `tree` without the nodes `constraint` refuses (and their subtrees); `constraint` stands after
 * the root and is disposed here. A draft-sampled group goes whole when one of it is refused
 * (TokenTree.without): rejection sampling needs every sample it drew.
 */
export function withoutRefused(tree: TokenTree, constraint: TokenConstraint): TokenTree {
  const refused: number[] = [];
  follow(tree, ROOT, constraint, refused);
  return refused.length === 0 ? tree : tree.without(refused).tree;
}

/** Walks `node`'s subtree along `state` (owned: disposed, or handed to the last allowed child), collecting refused nodes. */
function follow(tree: TokenTree, node: number, state: TokenConstraint, refused: number[]): void {
  const allowed: number[] = [];
  for (const child of tree.children(node)) (state.allows(tree.token(child)) ? allowed : refused).push(child);
  if (allowed.length === 0) return state.dispose();
  for (const [index, child] of allowed.entries()) {
    const own = index === allowed.length - 1 ? state : state.fork();
    own.accept(tree.token(child));
    follow(tree, child, own, refused);
  }
}
