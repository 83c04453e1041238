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
import type { Drafting, SharedBatch, TreePlanner } from './decoder.js';
import { decodedAlone, type DecodedStep } from '../generate/decoder.js';
import { AcceptanceStats, observeVerification, planTree, type CostCurve, type TreeLimits, type TreePlan } from './cost-model.js';
import { InSituCosts } from './in-situ-costs.js';
import { RecentValues } from '../stats.js';
import { RealizedJudge, SharedStepJudges } from './realized.js';
import type { DraftBudget, TokenTree } from './tree.js';

/** Verifies whatever the drafters propose within a fixed budget (tests and ablations). */
export class FixedPlanner implements TreePlanner {
  constructor(private readonly fixed: DraftBudget) {}

  budget(): DraftBudget {
    return this.fixed;
  }

  plan(tree: TokenTree, limits: TreeLimits): TokenTree {
    return tree.prune(Math.min(this.fixed.maxNodes, limits.maxNodes), { maxLeaves: limits.maxLeaves });
  }

  observe(): void {}
}

export interface AdaptivePlannerOptions {
  curve: CostCurve;
  /** Largest budget drafters may fill; the plan cuts it down. */
  budget?: DraftBudget;
  /**
   * While speculation does not pay, drafters are asked only every this many steps at first; the
   * interval doubles after each probe that finds nothing worth verifying (up to MAX_PROBE_INTERVAL).
   */
  probeEvery?: number;
  /**
   * A single-token decode's time when the curve was measured (ms): what an accepted token is
   * worth until decodes alone are timed here (a server that is never idle never times one).
   */
  singleDecodeMs?: number;
}

/**
 * A probe costs a drafting step outside any decode: about one decode of the small testbed model on
 * a CPU (one probe every 64 steps keeps that near 1-2%), a few hundredths of one for a model of a
 * realistic size, which can then afford to probe nearly every step and learn acceptance fast.
 * Cheap drafters (n-gram, suffix) and a draft model differ in cost by orders of magnitude, so each
 * kind has its own probe schedule: on a realistic target the cheap ones look every few steps for
 * the text turning repetitive while the draft model is asked far more rarely.
 */
const MAX_PROBE_INTERVAL = 64;

/** Share of plain decoding time that probing may take while drafts do not pay. */
const PROBE_TIME_SHARE = 0.02;

/**
 * Expected speedup a plan must promise over plain decoding: costs are corrected online (below),
 * so this margin only absorbs the noise of those estimates.
 */
const MIN_EXPECTED_SPEEDUP = 1.05;

/**
 * The most drafters are ever asked to fill (plans cut it down). As deep as the nodes: where a
 * decode is dear, verifying 64 tokens costs about as much as 32 (measured c(33) 11, c(65) 17 on a
 * 0.4B-class model), and a copied or looping passage is accepted whole.
 */
export const MAX_DRAFT_BUDGET: DraftBudget = Object.freeze({ maxNodes: 64, maxDepth: 64, maxBranches: 4 });

const NO_DRAFT: DraftBudget = { maxNodes: 0, maxDepth: 0, maxBranches: 0 };

/**
 * What a planner learns that holds for every sequence it serves: acceptance rates, what steps cost
 * here, and the realized verdict. One per speculation mode and sampling regime, kept across requests.
 */
interface PlannerKnowledge {
  readonly stats: AcceptanceStats;
  readonly costs: InSituCosts;
  readonly judge: RealizedJudge;
  /** The verdicts on steps shared with other sequences. */
  readonly shared: SharedStepJudges;
}

/**
 * Plans one sequence's steps. Whether drafting pays right now (the text being predictable, the
 * probes while it is not) is the sequence's own state: among 8 sequences, one that is copying a
 * passage must not start 7 others drafting, and one that is not must not stop the copying one.
 * What is learnt about drafters and costs is shared (`forSequence`).
 */
export class AdaptivePlanner implements TreePlanner {
  private readonly knowledge: PlannerKnowledge;
  private readonly maxBudget: DraftBudget;
  private readonly probeBudget: DraftBudget;
  private readonly cheapProbeBudget: DraftBudget;
  /** Whether this sequence's last decode, alone, verified a tree. */
  private afterTree = false;
  private lastDecodeMs = 0;
  /** The last decode this sequence took part in. */
  private lastStep: DecodedStep | undefined;
  /** Whether the step being run verifies a plan (not a plain step or a probe). */
  private speculating = false;
  /**
   * A plan that does not pay is no reason to stop drafting while the drafting spent since the last
   * verified plan (plain-step units) stays below what that plan was expected to save: a streak of
   * misses that ends in one paying plan then still breaks even. On a large target drafting costs
   * little next to a decode and the plans save several, so drafting goes on through short
   * unpredictable stretches instead of forgoing the long plans after them; on a tiny target
   * drafting costs about a decode and plans save a fraction of one, so a miss backs off at once.
   */
  private lastPlanSaving = 0;
  private draftingSinceLastPlan = 0;
  /** Set when a plan did not pay: drafting is then asked only at probes, until one pays again. */
  private backingOff = false;
  /** Sizes of the last verified plans, which bound the drafting budget. */
  private readonly recentPlanSizes = new RecentValues(16);
  /** When each kind of drafter is next asked while backing off. */
  private readonly probes: Record<Exclude<Drafting, 'none'>, ProbeSchedule>;
  /** The schedule whose probe this step is (undefined: not a probe). */
  private probing: Exclude<Drafting, 'none'> | undefined;
  /** This step's number (the engine's, or else this planner's count of budget() calls). */
  private step = 0;
  private budgetCalls = 0;

  constructor(
    private readonly options: AdaptivePlannerOptions,
    knowledge?: PlannerKnowledge,
  ) {
    this.knowledge = knowledge ?? { stats: new AcceptanceStats(), costs: new InSituCosts(options.curve, options.singleDecodeMs), judge: new RealizedJudge(), shared: new SharedStepJudges() };
    this.maxBudget = options.budget ?? MAX_DRAFT_BUDGET;
    // Probes draft one chain as deep as plans may go: deep, likely chains are what pays when
    // verification is dear, and a probe must be able to see one; branches would only add cost.
    const { maxNodes, maxDepth } = this.maxBudget;
    this.probeBudget = { maxNodes: Math.min(maxNodes, maxDepth), maxDepth, maxBranches: 1 };
    this.cheapProbeBudget = { ...this.probeBudget, costly: false };
    const probeEvery = options.probeEvery ?? 8;
    this.probes = { cheap: new ProbeSchedule(probeEvery), costly: new ProbeSchedule(probeEvery) };
  }

  /** A planner for another sequence: its own step state, this one's acceptance statistics and costs. */
  forSequence(): AdaptivePlanner {
    return new AdaptivePlanner(this.options, this.knowledge);
  }

  get stats(): AcceptanceStats {
    return this.knowledge.stats;
  }

  /** Whatever the cost model misses, realized speed decides: see realized.ts. */
  get judge(): RealizedJudge {
    return this.knowledge.judge;
  }

  budget(batch?: SharedBatch, step = this.budgetCalls): DraftBudget {
    this.budgetCalls++;
    this.probing = undefined;
    this.step = step;
    // A plain epoch of the judge of this step's kind (alone, or shared by so many sequences).
    if (this.judgeOf(batch).forcePlain) return NO_DRAFT;
    if (!this.backingOff) return this.speculatingBudget();
    // Backing off: each kind of drafter is asked on its own schedule (drafts judged in the shadow
    // of plain decoding), so the acceptance statistics keep learning when the text becomes
    // predictable again. A costly probe asks the cheap drafters too.
    const cheap = this.probes.cheap.tick(step);
    if (this.probes.costly.tick(step)) {
      this.probes.cheap.restart(step);
      this.probing = 'costly';
      return this.probeBudget;
    }
    if (!cheap) return NO_DRAFT;
    this.probing = 'cheap';
    return this.cheapProbeBudget;
  }

  /**
   * Drafting time grows with the nodes drafted, and most of a 64-node tree is cut when the plans
   * verify 20: once plans have been verified, drafters may fill half again the largest recent one
   * (at least a probe's budget), so plans can still grow step by step.
   */
  private speculatingBudget(): DraftBudget {
    if (this.recentPlanSizes.values.length === 0) return this.maxBudget;
    const largest = Math.max(...this.recentPlanSizes.values);
    const maxNodes = Math.min(this.maxBudget.maxNodes, Math.max(this.probeBudget.maxNodes, Math.ceil(largest * 1.5)));
    return maxNodes === this.maxBudget.maxNodes ? this.maxBudget : { ...this.maxBudget, maxNodes };
  }

  plan(tree: TokenTree, limits: TreeLimits, batch?: SharedBatch, drafting: Exclude<Drafting, 'none'> = 'cheap'): TokenTree {
    // Nothing proposed is an idle step too: drafting that finds nothing still costs its time.
    const costs = this.knowledge.costs;
    const plan = planTree(tree, this.stats, costs.verifyCost(batch), costs.extraCost(drafting, batch), limits);
    this.speculating = this.pays(plan, batch);
    if (this.speculating) {
      this.recentPlanSizes.add(plan.size);
      this.backingOff = false;
      this.probes.cheap.reset();
      this.probes.costly.reset();
      this.lastPlanSaving = plan.expectedTokens * (1 - 1 / plan.speedup);
      this.draftingSinceLastPlan = 0;
      return plan.tree;
    }
    this.draftingSinceLastPlan += costs.draftingCost(drafting) ?? Infinity;
    if (!this.backingOff && this.draftingSinceLastPlan < this.lastPlanSaving) return tree.prune(0);
    // Drafting backs off at once; a probe that finds nothing worth verifying doubles its schedule's
    // interval, up to what the drafting it did allows (a probe open to a draft model that did not
    // ask one, because it does not pay or there is none, cost what cheap drafting costs).
    if (this.probing) this.probes[this.probing].lengthen(this.maxProbeInterval(drafting));
    else {
      this.probes.cheap.restart(this.step);
      this.probes.costly.restart(this.step);
    }
    this.backingOff = true;
    // Drafts that do not pay are not verified: the decoder follows them against the tokens that
    // plain decoding emits next (shadow verification) and reports the outcome through observe().
    return tree.prune(0);
  }

  /** Probes of a kind may come this rarely at most: as often as keeps their drafting within PROBE_TIME_SHARE of the time. */
  private maxProbeInterval(drafting: Exclude<Drafting, 'none'>): number {
    const cost = this.knowledge.costs.draftingCost(drafting);
    if (cost === undefined) return MAX_PROBE_INTERVAL;
    return Math.max(1, Math.min(MAX_PROBE_INTERVAL, Math.ceil(cost / PROBE_TIME_SHARE)));
  }

  observe(tree: TokenTree, acceptedNodes: readonly number[]): void {
    observeVerification(this.stats, tree, acceptedNodes);
  }

  expectedAccepted(tree: TokenTree, batch?: SharedBatch): number {
    const costs = this.knowledge.costs;
    const plan = planTree(tree, this.stats, costs.verifyCost(batch), costs.extraCost('cheap', batch));
    return this.pays(plan, batch) ? plan.expectedTokens - 1 : 0;
  }

  /** A plan is verified when it promises enough over plain decoding (and more while realized speed says the model is optimistic). */
  private pays(plan: TreePlan, batch: SharedBatch | undefined): boolean {
    return plan.size > 0 && plan.speedup >= MIN_EXPECTED_SPEEDUP * this.judgeOf(batch).bar;
  }

  /** The realized judge of a step alone, or of one shared with `batch`'s sequences. */
  private judgeOf(batch: SharedBatch | undefined): RealizedJudge {
    return batch ? this.knowledge.shared.judge(batch.sequences + 1) : this.judge;
  }

  observeDecode(step: DecodedStep, ms: number): void {
    this.knowledge.costs.observeDecode(step, ms, this.afterTree);
    this.lastStep = step;
    if (!decodedAlone(step)) return;
    this.lastDecodeMs = ms;
    this.afterTree = step.tokens > 1;
  }

  acceptedTokenValueMs(batch?: SharedBatch): number | undefined {
    return this.knowledge.costs.acceptedTokenValueMs(batch);
  }

  observeStep(emitted: number, ms: number, drafting: Drafting): void {
    if (this.lastStep && !decodedAlone(this.lastStep)) this.knowledge.shared.observe(this.lastStep, emitted, ms, this.speculating);
    else {
      this.knowledge.costs.observeOverhead(drafting, ms - this.lastDecodeMs);
      this.judge.observeStep(emitted, ms, this.speculating);
    }
    this.speculating = false;
  }
}

/**
 * When one kind of drafter is next probed while drafting backs off. Probes fall on multiples of a
 * power-of-two interval of the engine's step number, so concurrent requests that back off probe in
 * the same steps: their draft-model decodes then share batches, and the other steps stay plain.
 */
class ProbeSchedule {
  private interval: number;
  private next = 0;

  constructor(private readonly first: number) {
    this.interval = first;
  }

  /** True when `step` is due for a probe (then the next is one interval on). */
  tick(step: number): boolean {
    if (step < this.next) return false;
    this.restart(step);
    return true;
  }

  /** Counts from `step` again (a probe of another kind just looked). */
  restart(step: number): void {
    this.next = (Math.floor(step / this.interval) + 1) * this.interval;
  }

  /** After a probe that found nothing worth verifying: twice the interval, up to `max` (rounded up to a power of two). */
  lengthen(max: number): void {
    this.interval = Math.min(this.interval * 2, 2 ** Math.ceil(Math.log2(Math.max(1, max))));
  }

  /** Speculation pays again: back to the first interval. */
  reset(): void {
    this.interval = this.first;
    this.next = 0;
  }
}
