/**
 * Tree planners: which part of the drafted tree is worth verifying this step.
 *
 * The adaptive planner follows the cost model (cost-model.ts): node scores are calibrated by the
 * running acceptance rate per drafter, confidence, evidence and depth, and the tree is cut at the
 * size that maximizes expected tokens per unit of time, E[tokens](n) / (c(n+1) + extra cost), using
 * this model's measured verify cost curve on this machine, corrected by what steps cost in place.
 * When nothing beats plain decoding it verifies the root alone, and drafts now and then without
 * verifying, so it notices (through shadow verification) when drafts start to pay.
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

/**
 * Expected speedup a plan must promise over plain decoding: costs are corrected online (below),
 * so this margin only absorbs the noise of those estimates.
 */
const MIN_EXPECTED_SPEEDUP = 1.05;

/** In-situ costs are medians of this many recent observations: one slow decode (a first graph allocation, a noisy neighbour) must not stop speculation for long. */
const COST_WINDOW = 16;

/** Plain steps after which a realized/promised verdict is replaced by a neutral one. */
const VERDICT_LIFETIME_STEPS = 64;

/** Batch growth over which the marginal verify cost of one token is averaged. */
const MARGINAL_SPAN = 8;

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
   * In-situ costs (medians of recent observations). The curve is measured once per machine, back to back; inside a
   * generation a tree decode also pays for the graph rebuild and for pool threads that went idle
   * while the drafters ran, and a speculative step spends time outside the decode (drafting,
   * acceptance, KV bookkeeping). Plans are charged what steps really cost here, in plain-step units.
   */
  private readonly singleDecodeMs = new RecentMedian(COST_WINDOW);
  /**
   * In-situ decode time of tree batches over the curve's c(n) (a ratio: pool threads that fell
   * asleep while the drafters ran, or a curve measured at another context length, scale the
   * whole batch, not a constant part of it).
   */
  private readonly decodeScale = new RecentMedian(COST_WINDOW);
  private lastDecodeMs = 0;
  /**
   * Time of a step outside its decode (ms), for plain steps and for steps that drafted. A plan is
   * charged the drafting too: sunk for this step, but speculating step after step means drafting
   * step after step, so a plan that cannot pay for its drafting is not worth continuing.
   */
  private readonly plainOverheadMs = new RecentMedian(COST_WINDOW);
  private readonly draftingOverheadMs = new RecentMedian(COST_WINDOW);
  /** Whole plain steps (ms): the unit in which a speculative step's realized speedup is judged. */
  private readonly plainStepMs = new RecentMedian(COST_WINDOW);
  /** Speedup the cost model promised for the plan being verified (undefined: plain step or probe). */
  private promised: number | undefined;
  /**
   * Realized / promised speedup of recent speculative steps. Whatever the cost model misses (an
   * acceptance estimate that is too kind, a cost not measured), plans must promise that much more.
   */
  private readonly realizedShare = new RecentMedian(COST_WINDOW);
  private stepsSinceVerdict = 0;
  /** Consecutive steps whose plan verified nothing; drafting backs off once it reaches 2. */
  private idleSteps = 0;
  /** Steps between probes while backing off; a probe drafts, which is not free. */
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
    // Backing off: draft once every probeInterval steps (drafts judged in the shadow of plain decoding), so the
    // acceptance statistics keep learning when the text becomes predictable again.
    return ++this.idleSteps % this.probeInterval === 0 ? this.maxBudget : NO_DRAFT;
  }

  plan(tree: TokenTree, maxLeaves: number): TokenTree {
    const chosen = this.choose(tree, maxLeaves);
    this.lastBatch = chosen.size;
    return chosen;
  }

  private choose(tree: TokenTree, maxLeaves: number): TokenTree {
    // Nothing proposed is an idle step too: drafting that finds nothing still costs its time.
    const plan = planTree(tree, this.stats, this.curve, (n) => this.extraCost(n + 1), { maxLeaves });
    this.promised = undefined;
    if (plan.size > 0 && plan.speedup * Math.min(1, this.realizedShare.value ?? 1) >= MIN_EXPECTED_SPEEDUP) {
      this.promised = plan.speedup;
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
    // The probe's drafts are not verified: the decoder follows them against the tokens that plain
    // decoding emits next (shadow verification) and reports the outcome through observe().
    return tree.prune(0);
  }

  /** What a step verifying `batchSize` tokens costs beyond c(batchSize), in plain-step units (may be negative when the curve overestimates). */
  private extraCost(batchSize: number): number {
    // A measured scale already includes the graph rebuild that a change of batch size costs.
    const scale = this.decodeScale.value;
    const decode = scale === undefined ? this.shapeChangeCost(batchSize) : this.curve.cost(batchSize) * (scale - 1);
    const single = this.singleDecodeMs.value;
    const plainOutside = this.plainOverheadMs.value;
    const draftingOutside = this.draftingOverheadMs.value;
    if (single === undefined || plainOutside === undefined || draftingOutside === undefined) return decode;
    return decode + Math.max(0, draftingOutside - plainOutside) / single;
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

  observeVerifyTime(batchSize: number, ms: number): void {
    this.lastDecodeMs = ms;
    const single = this.singleDecodeMs.value;
    if (batchSize === 1) this.singleDecodeMs.add(ms);
    else if (single !== undefined) this.decodeScale.add(ms / single / this.curve.cost(batchSize));
  }

  acceptedTokenValueMs(): number | undefined {
    const single = this.singleDecodeMs.value;
    if (single === undefined) return undefined;
    const marginal = (this.curve.cost(MARGINAL_SPAN + 1) - this.curve.cost(1)) / MARGINAL_SPAN;
    return single * Math.max(0, 1 - marginal);
  }

  observeStep(emitted: number, ms: number, drafted: boolean): void {
    const outside = Math.max(0, ms - this.lastDecodeMs);
    (drafted ? this.draftingOverheadMs : this.plainOverheadMs).add(outside);
    if (!drafted) this.plainStepMs.add(ms);
    // Old verdicts expire: while nothing is verified, the window drifts back to "as promised".
    if (!drafted && ++this.stepsSinceVerdict % VERDICT_LIFETIME_STEPS === 0) this.realizedShare.add(1);
    const plainStep = this.plainStepMs.value;
    if (this.promised !== undefined && plainStep !== undefined && ms > 0) {
      this.realizedShare.add(emitted / (ms / plainStep) / this.promised);
      this.stepsSinceVerdict = 0;
    }
    this.promised = undefined;
  }
}

/** Median of the last `size` values added (undefined before the first). */
class RecentMedian {
  private readonly values: number[] = [];
  private next = 0;
  private cached: number | undefined;

  constructor(private readonly size: number) {}

  add(value: number): void {
    if (this.values.length < this.size) this.values.push(value);
    else this.values[this.next] = value;
    this.next = (this.next + 1) % this.size;
    this.cached = undefined;
  }

  get value(): number | undefined {
    if (this.values.length === 0) return undefined;
    if (this.cached === undefined) {
      const sorted = [...this.values].sort((a, b) => a - b);
      const middle = sorted.length >> 1;
      this.cached = sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
    }
    return this.cached;
  }
}
