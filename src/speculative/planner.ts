/** Tree planners: how many drafted nodes to verify per step. */
import type { DraftBudget, TokenTree } from './tree.js';
import type { TreePlanner } from './decoder.js';

/** Verifies whatever the drafters propose within a fixed budget (for tests and ablations). */
export class FixedPlanner implements TreePlanner {
  constructor(private readonly fixed: DraftBudget) {}

  budget(): DraftBudget {
    return this.fixed;
  }

  plan(tree: TokenTree, maxNodes: number): number {
    return Math.min(tree.draftCount, maxNodes);
  }

  observe(): void {}
}
