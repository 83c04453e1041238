/** Token-tree lookups shared by the speculative tests. */
import assert from 'node:assert/strict';
import { ROOT, type TokenTree } from '../../src/speculative/tree.js';

/** The nodes of the path from the root along `tokens` (root excluded); fails the test where there is none. */
export function pathNodes(tree: TokenTree, tokens: readonly number[]): number[] {
  const nodes: number[] = [];
  let node = ROOT;
  for (const token of tokens) {
    node = tree.childWithToken(node, token);
    assert.ok(node >= 0, `no node at ${tokens.join(',')}`);
    nodes.push(node);
  }
  return nodes;
}

/** The node reached from the root along `tokens`. */
export function nodeAt(tree: TokenTree, tokens: readonly number[]): number {
  return pathNodes(tree, tokens).at(-1) ?? ROOT;
}
