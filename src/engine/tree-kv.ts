/**
 * KV mechanism of one token tree in the shared context (a unified KV cache, where one cell can
 * belong to several sequences). The request's committed sequence lives in its own id; a tree
 * with L leaves uses that id for branch 0 and L − 1 borrowed ids for the others. Before the
 * decode, the committed cells are shared into every borrowed branch (no copy: the cells gain an
 * id), and each tree node carries the ids of the branches through it, so it attends to its
 * ancestors only. After acceptance, the request's id holds the committed prefix plus the
 * accepted path, and no borrowed id holds anything: a cell of a rejected branch belongs to no
 * sequence any more and is free. Only the ids of this tree are touched (never seq_keep, never
 * sequence −1), so other requests' cells are safe.
 */
import type { Context } from '../llama/context.js';
import type { TokenBatch } from '../llama/batch.js';
import type { TokenTree } from '../speculative/tree.js';
import type { SequenceIdPool } from './sequence-ids.js';

export interface PlacedTree {
  tree: TokenTree;
  /** Sequence id of each branch: [the request's own id, ...borrowed]. */
  branchSeqs: readonly number[];
  /** Branch indices through each node (from TokenTree.branchIds), or undefined for a single chain. */
  nodeBranches: readonly (readonly number[])[] | undefined;
  /** First branch through each node (the branch to keep when that node is the last accepted). */
  firstBranch: readonly number[] | undefined;
  /** Position of the root (the pending token). */
  position: number;
}

/**
 * Gives a tree its sequence ids, the owner's for its first branch and ids borrowed from `ids` for
 * the others, and shares the owner's committed prefix [0, position) into those.
 */
export function placeTree(context: Context, ids: SequenceIdPool, owner: number, tree: TokenTree, position: number): PlacedTree {
  if (tree.size === 1) return { tree, branchSeqs: [owner], nodeBranches: undefined, firstBranch: undefined, position };
  const assignment = tree.branchIds();
  const borrowed = ids.borrow(assignment.branchCount - 1);
  if (!borrowed) throw new Error(`tree of ${assignment.branchCount} branches but only ${ids.available} sequence ids free`);
  const placed: PlacedTree = {
    tree,
    branchSeqs: [owner, ...borrowed],
    nodeBranches: assignment.branchCount > 1 ? assignment.nodeBranches : undefined,
    firstBranch: assignment.branchCount > 1 ? assignment.firstBranch : undefined,
    position,
  };
  shareCommittedPrefix(context, placed);
  return placed;
}

/** Adds every node of the tree to the batch, each with its logits; returns the root's batch index. */
export function addTreeNodes(batch: TokenBatch, placed: PlacedTree): number {
  const first = batch.size;
  for (let node = 0; node < placed.tree.size; node++) batch.add(placed.tree.token(node), placed.position + placed.tree.depth(node), nodeSequences(placed, node), true);
  return first;
}

/** Returns a tree's borrowed sequence ids to the pool. */
export function releaseBorrowedIds(ids: SequenceIdPool, placed: PlacedTree): void {
  for (const seq of placed.branchSeqs.slice(1)) ids.release(seq);
}

/** Shares the committed prefix [0, position) of the owner into every borrowed branch. */
function shareCommittedPrefix(context: Context, placed: PlacedTree): void {
  const [owner, ...borrowed] = placed.branchSeqs;
  for (const branch of borrowed) context.seqCopy(owner, branch, -1, placed.position);
}

/** The sequence ids a node's batch entry carries. */
function nodeSequences(placed: PlacedTree, node: number): number | number[] {
  if (!placed.nodeBranches) return placed.branchSeqs[0];
  return placed.nodeBranches[node].map((branch) => placed.branchSeqs[branch]);
}

/** After acceptance: the owner keeps its prefix + the path to `lastNode`; everything else of the tree goes. */
export function keepAcceptedPath(context: Context, placed: PlacedTree, lastNode: number): void {
  const [owner, ...borrowed] = placed.branchSeqs;
  const lastPosition = placed.position + placed.tree.depth(lastNode);
  const kept = placed.firstBranch ? placed.branchSeqs[placed.firstBranch[lastNode]] : owner;
  if (kept === owner) {
    // A lone root (every plain step) left no cells beyond it: the removal, a scan of every KV
    // cell, took 7 µs of a 450 µs step on the tiny testbed.
    if (placed.tree.size > 1) context.seqRemove(owner, lastPosition + 1, -1);
  } else {
    // The root is in every branch; below it the owner takes the kept branch's path instead of its own.
    context.seqRemove(owner, placed.position + 1, -1);
    context.seqCopy(kept, owner, placed.position + 1, lastPosition + 1);
  }
  for (const branch of borrowed) context.seqRemove(branch, -1, -1);
}

/** Undoes a tree whose decode failed: the owner keeps its committed prefix only. */
export function dropTree(context: Context, placed: PlacedTree): void {
  const [owner, ...borrowed] = placed.branchSeqs;
  context.seqRemove(owner, placed.position, -1);
  for (const branch of borrowed) context.seqRemove(branch, -1, -1);
}
