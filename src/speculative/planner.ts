/**
 * Tree planners: which part of the drafted tree is worth verifying this step.
 *
 * The adaptive planner follows the cost model (cost-model.ts): node scores are calibrated by the
 * running acceptance rate per drafter and depth, and the tree is cut at the size that maximizes
 * expected tokens per unit of time, E[tokens](n) / (c(n+1) + draft cost), using this model's
 * measured verify cost curve on this machine. When nothing beats plain decoding it verifies the
 * root alone, but it still probes one node now and then so it notices when drafts start to pay.
 */
import type { TreePlanner } from './decoder.js';
import { AcceptanceStats, observeVerification, planTree, type CostCurve } from './cost-model.js';
import type { DraftBudget, TokenTree } from './tree.js';

/** Verifies whatever the drafters propose within a fixed budget (tests and ablations). */
export class FixedPlanner implements TreePlanner {
  constructor(private readonly fixed: DraftBudget) {}

  budget(): DraftBudget {
    return this.fixed;
  }

  plan(tree: TokenTree, maxLeaves: number): TokenTree {
    return tree.prune(this.fixed.maxNodes, { maxLeaves });
  }

  observe(): void {}
}

export interface AdaptivePlannerOptions {
  curve: CostCurve;
  /** Extra cost (in plain steps) of a decode whose batch size differs from the previous one. */
  switchCost?: number;
  /** Largest budget drafters may fill; the plan cuts it down. */
  budget?: DraftBudget;
  /**
   * While speculation does not pay, drafters are asked only every this many steps at first; the
   * interval doubles after each probe that finds nothing worth verifying (up to MAX_PROBE_INTERVAL).
   */
  probeEvery?: number;
}

const MAX_PROBE_INTERVAL = 32;

const MIN_EXPECTED_SPEEDUP = 1.15;
const MAX_MARGIN = 4;

const NO_DRAFT: DraftBudget = { maxNodes: 0, maxDepth: 0, maxBranches: 0 };

export class AdaptivePlanner implements TreePlanner {
  readonly stats = new AcceptanceStats();
  private readonly curve: CostCurve;
  private readonly switchCost: number;
  private readonly maxBudget: DraftBudget;
  private readonly probeEvery: number;
  /** Tokens in the previous verify batch (1 = a plain step). */
  private lastBatch = 1;
  /**
   * Decode times seen in this process, per batch size (running means, ms). The curve measured
   * once per machine is the prior; what decodes cost now (other load, cache state) corrects it.
   */
  private readonly observedMs = new Map<number, number>();
  /** Realized tokens per millisecond of plain and of speculative steps (running means). */
  private plainRate: number | undefined;
  private speculativeRate: number | undefined;
  /** Expected speedup a plan must promise; raised while speculative steps realize less than plain ones. */
  private margin = MIN_EXPECTED_SPEEDUP;
  /** Consecutive steps whose plan verified nothing; drafting backs off once it reaches 2. */
  private idleSteps = 0;
  /** Steps between probes while backing off; a probe verifies one node, which is not free. */
  private probeInterval: number;

  constructor(options: AdaptivePlannerOptions) {
    this.curve = options.curve;
    this.switchCost = options.switchCost ?? 0;
    this.maxBudget = options.budget ?? { maxNodes: 64, maxDepth: 24, maxBranches: 4 };
    this.probeEvery = options.probeEvery ?? 8;
    this.probeInterval = this.probeEvery;
  }

  budget(): DraftBudget {
    if (this.idleSteps < 2) return this.maxBudget;
    // Backing off: draft once every probeEvery steps, and verify at least one node then, so the
    // acceptance statistics keep learning when the text becomes predictable again.
    return ++this.idleSteps % this.probeInterval === 0 ? this.maxBudget : NO_DRAFT;
  }

  plan(tree: TokenTree, maxLeaves: number): TokenTree {
    const chosen = this.choose(tree, maxLeaves);
    this.lastBatch = chosen.size;
    return chosen;
  }

  private choose(tree: TokenTree, maxLeaves: number): TokenTree {
    if (tree.draftCount === 0) return tree;
    // Drafting is already paid for when the plan is made: only verification costs count here.
    const plan = planTree(tree, this.stats, this.curve, (n) => this.shapeChangeCost(n + 1) + this.observedExcess(n + 1), { maxLeaves });
    // A margin over plain decoding: the curve is measured on chains, trees cost a little more,
    // and a plan that barely wins on paper loses to noise in practice.
    if (plan.size > 0 && plan.speedup >= this.margin) {
      this.idleSteps = 0;
      this.probeInterval = this.probeEvery;
      return plan.tree;
    }
    const probing = this.idleSteps >= 2;
    if (!probing) {
      this.idleSteps = Math.max(this.idleSteps, 1) + 1;
      return plan.tree;
    }
    this.probeInterval = Math.min(this.probeInterval * 2, MAX_PROBE_INTERVAL);
    this.idleSteps = 2;
    return tree.prune(1, { maxLeaves });
  }

  /**
   * A batch of another size than the last one rebuilds llama.cpp's graph; leaving plain decoding
   * for one step pays that twice (into the tree, and back to single tokens).
   */
  private shapeChangeCost(batchSize: number): number {
    if (batchSize === this.lastBatch) return 0;
    return this.lastBatch === 1 ? 2 * this.switchCost : this.switchCost;
  }

  observe(tree: TokenTree, acceptedNodes: readonly number[]): void {
    observeVerification(this.stats, tree, acceptedNodes);
  }

  /**
   * The safety net of the cost model: if speculative steps have been producing fewer tokens per
   * millisecond than plain steps, whatever the model predicted, plans must promise more.
   */
  observeStep(emitted: number, ms: number, speculative: boolean): void {
    if (ms <= 0) return;
    const rate = emitted / ms;
    if (speculative) this.speculativeRate = this.speculativeRate === undefined ? rate : this.speculativeRate * 0.9 + rate * 0.1;
    else this.plainRate = this.plainRate === undefined ? rate : this.plainRate * 0.9 + rate * 0.1;
    // Judged once per speculative step (plain steps only refresh the baseline).
    if (!speculative || this.plainRate === undefined || this.speculativeRate === undefined) return;
    const losing = this.speculativeRate < this.plainRate;
    this.margin = losing ? Math.min(this.margin * 1.05, MAX_MARGIN) : Math.max(this.margin / 1.02, MIN_EXPECTED_SPEEDUP);
  }

  observeVerifyTime(batchSize: number, ms: number): void {
    const previous = this.observedMs.get(batchSize);
    this.observedMs.set(batchSize, previous === undefined ? ms : previous * 0.9 + ms * 0.1);
  }

  /** How much more than the measured curve a batch of this size has been costing (plain-step units). */
  private observedExcess(batchSize: number): number {
    const single = this.observedMs.get(1);
    const observed = this.observedMs.get(batchSize);
    if (single === undefined || observed === undefined) return 0;
    return Math.max(0, observed / single - this.curve.cost(batchSize));
  }

}
