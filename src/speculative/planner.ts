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
import { AcceptanceStats, drafterRate, LayeredRecords, observeVerification, planTree, type CostCurve, type TreeLimits, type TreePlan, type WalkProgress } from './cost-model.js';
import { CostlyDrafts, type CostlyDraft } from './costly-drafts.js';
import { InSituCosts } from './in-situ-costs.js';
import { ProbeSchedule } from './probe-schedule.js';
import { Ewma, RecentValues } from '../stats.js';
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
   * While speculation does not pay, drafters are asked only every this many steps at first (or
   * less often where their drafting costs more); a probe that finds nothing worth verifying sets
   * the interval that keeps probing within PROBE_TIME_SHARE of the time (up to MAX_PROBE_INTERVAL).
   */
  probeEvery?: number;
  /**
   * A single-token decode's time when the curve was measured (ms): what an accepted token is
   * worth until decodes alone are timed here (a server that is never idle never times one).
   */
  singleDecodeMs?: number;
  /**
   * Whether the drafters include a costly one (a draft model; default true). Without one there
   * is nothing for the costly probe schedule to probe: its probes would only ask the cheap
   * drafters a second time, beside their own schedule.
   */
  costlyDrafter?: boolean;
}

/**
 * A probe costs a drafting step outside any decode: a few decodes of the small testbed model on a
 * CPU when it asks the draft model for a 64-token chain, a few hundredths of one for a model of a
 * realistic size, which can then afford to probe nearly every step and learn acceptance fast.
 * Cheap drafters (n-gram, suffix) and a draft model differ in cost by orders of magnitude, so each
 * kind has its own probe schedule, spaced by what its probes cost: on a realistic target the cheap
 * ones look every few steps for the text turning repetitive while the draft model is asked far
 * more rarely, and on the tiny target a cheap probe that costs a few decodes, or a draft-model
 * chain that costs 15-50, comes every few hundred steps (capped at 64, with every request
 * starting its own schedule again from 8, probes took a tenth of the time there).
 */
const MAX_PROBE_INTERVAL = 4096;

/** Probe interval of a kind whose drafting cost is not measured yet. */
const UNMEASURED_PROBE_INTERVAL = 64;

/**
 * Share of plain decoding time that each kind of probe may take while drafts do not pay: the
 * cheap and the costly ones together take twice this. At 2% each, with a new request's first
 * step exploring on top, drafting that never paid took 4-5% of the tiny testbed's time, where
 * `auto` must stay within 2% of plain decoding.
 */
const PROBE_TIME_SHARE = 0.01;

/** Share it may take when drafting has just stopped paying, while probes still learn fast. */
const FIRST_PROBE_TIME_SHARE = 0.1;

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
 * EWMA factors of what a drafting step is worth (below): a sequence's own over its last few
 * drafting steps, so that a handful of misses in a row stops it; every sequence's over many,
 * which a new sequence starts from.
 */
const SEQUENCE_DRAFTING_VALUE_FACTOR = 0.25;
const SHARED_DRAFTING_VALUE_FACTOR = 0.05;

/**
 * EWMA factor of what a sequence's verified cheap-only plans delivered against their expectation:
 * over its last few such plans, as acceptance rates learnt on other text can be off on this one.
 */
const CHEAP_DELIVERY_FACTOR = 0.2;

/** Observations by which the shared rate weighs in a sequence's own record of a key (LayeredRecords). */
const OWN_RECORDS_PRIOR_WEIGHT = 4;

/** Nodes a sequence may verify at once before any of its drafts has been accepted (see planCap). */
const SLOW_START_NODES = 8;

/** Walks of a sequence whose longest accepted run bounds its plans (see planCap). */
const ACCEPTED_RUNS_KEPT = 16;

/** A new sequence starts backed off when a drafting step has lately been worth less than this (decodes). */
const START_BACKED_OFF_BELOW = -1;

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
  readonly costlyDrafts: CostlyDrafts;
  /**
   * The probe interval of each kind of drafter that a new sequence starts from: the last one any
   * sequence reached, so that a new request does not probe often again where drafts have not paid.
   */
  readonly probeIntervals: Record<Exclude<Drafting, 'none'>, number>;
  /** What a drafting step has been worth, over every sequence's (plain-step units). */
  readonly draftingValue: Ewma;
}

/**
 * Plans one sequence's steps. Whether drafting pays right now (the text being predictable) is the
 * sequence's own state: among 8 sequences, one that is copying a passage must not start 7 others
 * drafting, and one that is not must not stop the copying one. What is learnt about drafters and
 * costs, and when sequences that back off probe, are shared (`forSequence`).
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
   * Drafted tokens this sequence's verified cheap-only plans were expected to give, and gave
   * (EWMAs; see cheapDelivery), and the expectation of the plan this step verifies, if cheap-only.
   */
  private readonly cheapPlans = { expected: new Ewma(CHEAP_DELIVERY_FACTOR), accepted: new Ewma(CHEAP_DELIVERY_FACTOR) };
  private cheapPlanExpected: number | undefined;
  /**
   * What this sequence's drafting steps have been worth lately (plain-step units): a paying plan
   * adds what it is expected to save net of its drafting, a plan that does not pay subtracts the
   * drafting it cost. A miss is no reason to stop drafting while the value stays positive. On a
   * large target a draft-model chain costs about one decode and a paying plan saves five, so
   * drafting goes on through a few uncertain positions in a row (backing off at one such miss
   * left reasoning text, accepted 9 times in 10, decoded plainly for 30 steps until the next
   * probe); on a tiny target drafting costs about a decode and plans save a fraction of one, so
   * a miss backs off at once. A new sequence starts from what drafting has been worth to every
   * sequence so far.
   */
  private draftingValue: Ewma;
  /**
   * Set when a plan did not pay: drafting is then asked only at probes, until one pays again. A
   * new sequence starts so when a drafting step has lately lost the others more than a decode (on
   * the tiny testbed a request's first drafts, a draft-model catch-up over the whole prompt or
   * cheap drafts that stall the decodes after them, cost 3-40 decodes each and took a tenth of
   * a 250-token request; from the 9th request on, they start backed off). A milder loss is no
   * reason: on embedded m, where a miss costs about a decode and a paying plan saves five, the
   * value a request starts from is +2 to +6 on reasoning, and on rewriting it dipped to -0.3
   * once, after the misses at the end of the request before, between values of +4.
   */
  private backingOff: boolean;
  /** This sequence's acceptance records over the shared ones (LayeredRecords). */
  private readonly records: LayeredRecords;
  /** Sizes of the last verified plans, which bound the drafting budget. */
  private readonly recentPlanSizes = new RecentValues(16);
  /** Drafted tokens accepted in a row by this sequence's last walks (verified or followed in the shadow), which bound its plans. */
  private readonly acceptedRuns = new RecentValues(ACCEPTED_RUNS_KEPT);
  /**
   * When each kind of drafter is next asked while this sequence backs off. A sequence's own: one
   * whose draft-model chains pay every step says nothing of the others' text, and resetting a
   * shared schedule at each of its steps had 15 backed-off sequences at 16 concurrent catch up
   * and probe the draft model every 8th step (100-200 ms each, a shared step takes ~115 ms).
   */
  private readonly probes: Record<Exclude<Drafting, 'none'>, ProbeSchedule>;
  /** The schedule whose probe this step is (undefined: not a probe). */
  private probing: Exclude<Drafting, 'none'> | undefined;
  private budgetCalls = 0;

  constructor(
    private readonly options: AdaptivePlannerOptions,
    knowledge?: PlannerKnowledge,
  ) {
    const probeEvery = options.probeEvery ?? 8;
    this.knowledge = knowledge ?? {
      stats: new AcceptanceStats(),
      costs: new InSituCosts(options.curve, options.singleDecodeMs),
      judge: new RealizedJudge(),
      shared: new SharedStepJudges(options.curve),
      costlyDrafts: new CostlyDrafts(),
      probeIntervals: { cheap: probeEvery, costly: probeEvery },
      draftingValue: new Ewma(SHARED_DRAFTING_VALUE_FACTOR, 0),
    };
    this.draftingValue = new Ewma(SEQUENCE_DRAFTING_VALUE_FACTOR, this.knowledge.draftingValue.value);
    this.records = new LayeredRecords(this.knowledge.stats, new AcceptanceStats({ priorWeight: OWN_RECORDS_PRIOR_WEIGHT }));
    const { cheap, costly } = this.knowledge.probeIntervals;
    this.probes = { cheap: new ProbeSchedule(probeEvery, cheap), costly: new ProbeSchedule(probeEvery, costly) };
    this.backingOff = (this.knowledge.draftingValue.value ?? 0) < START_BACKED_OFF_BELOW;
    this.maxBudget = options.budget ?? MAX_DRAFT_BUDGET;
    // Probes draft one chain as deep as plans may go: deep, likely chains are what pays when
    // verification is dear, and a probe must be able to see one; branches would only add cost.
    const { maxNodes, maxDepth } = this.maxBudget;
    this.probeBudget = { maxNodes: Math.min(maxNodes, maxDepth), maxDepth, maxBranches: 1, explore: true };
    this.cheapProbeBudget = { ...this.probeBudget, costly: false };
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

  /**
   * What drafters may fill this step. Beside other sequences: down to the path probability a node
   * needs to pay for its verification and its drafting, the path scored by the acceptance rates
   * this planner has learnt (the rates its plans are cut by).
   */
  budget(batch?: SharedBatch, step = this.budgetCalls): DraftBudget {
    const budget = this.stepBudget(batch, step);
    const { costs, costlyDrafts } = this.knowledge;
    const breakEven = batch && budget.maxNodes > 0 ? costs.nodeBreakEven(batch, costlyDrafts.msPerNode) : undefined;
    if (breakEven === undefined) return budget;
    return { ...budget, minPathProbability: breakEven, acceptance: (source, depth, own) => drafterRate(this.records, source, depth, own) };
  }

  private stepBudget(batch: SharedBatch | undefined, step: number): DraftBudget {
    this.budgetCalls++;
    this.probing = undefined;
    // A plain epoch of the judge of this step's kind (alone, or shared by so many sequences).
    const judge = this.judgeOf(batch);
    if (judge.forcePlain) return NO_DRAFT;
    // A sequence that has verified nothing yet explores (speculatingBudget), except beside other
    // sequences, until their judge has found speculation winning there (RealizedJudge.winning):
    // it starts backed off, and waits for a probe that pays. Exploring drafts hold up the whole
    // batch: at 16 concurrent the first ~25 steps of a round drafted 30-400 ms each (a shared step
    // takes ~115 ms), for plans that a raised bar then mostly refused; and a fresh engine's
    // requests at 4 and 8 clients explored before any verdict (bench serve on embedded m, 2 runs
    // each: 4 clients 1.24x and 0.985x of plain against 1.09x and 0.895x, 8 clients 0.84x and
    // 0.87x against 0.81x and 0.866x).
    if (batch && !this.hasVerifiedPlans && !judge.winning) this.backingOff = true;
    if (!this.backingOff) return this.speculatingBudget();
    // Backing off: each kind of drafter is asked on its own schedule (drafts judged in the shadow
    // of plain decoding), so the acceptance statistics keep learning when the text becomes
    // predictable again. A costly probe asks the cheap drafters too.
    const probes = this.probes;
    if (this.options.costlyDrafter !== false && probes.costly.due(step)) {
      this.probing = 'costly';
      return this.probeBudget;
    }
    if (!probes.cheap.due(step)) return NO_DRAFT;
    this.probing = 'cheap';
    return this.cheapProbeBudget;
  }

  /**
   * The most nodes a plan may verify: twice the longest run of drafts this sequence has lately
   * had accepted, SLOW_START_NODES before any. Acceptance rates learnt on other sequences can
   * promise a deep chain that this text does not follow (a new request's suffix match on the
   * opening every answer shares: 63 nodes verified for a few tokens, 36 decodes' time on embedded
   * m here); a chain this text does follow doubles its plans every step.
   */
  private planCap(): number {
    return Math.max(SLOW_START_NODES, 2 * Math.max(0, ...this.acceptedRuns.values));
  }

  /** Whether this sequence has verified a plan yet (nothing says how deep its drafts should go before). */
  private get hasVerifiedPlans(): boolean {
    return this.recentPlanSizes.values.length > 0;
  }

  /**
   * Drafting time grows with the nodes drafted, and most of a 64-node tree is cut when the plans
   * verify 20: once plans have been verified, drafters may fill half again the largest recent one
   * (at least a probe's budget), so plans can still grow step by step.
   */
  private speculatingBudget(): DraftBudget {
    // A sequence's first drafts explore too: nothing it has verified says how deep to go yet.
    if (!this.hasVerifiedPlans) return { ...this.maxBudget, explore: true };
    const largest = Math.max(...this.recentPlanSizes.values);
    const maxNodes = Math.min(this.maxBudget.maxNodes, Math.max(this.probeBudget.maxNodes, Math.ceil(largest * 1.5)));
    return maxNodes === this.maxBudget.maxNodes ? this.maxBudget : { ...this.maxBudget, maxNodes };
  }

  plan(tree: TokenTree, limits: TreeLimits, batch?: SharedBatch, drafting: Exclude<Drafting, 'none'> = 'cheap', draftedMs = 0): TokenTree {
    // Nothing proposed is an idle step too: drafting that finds nothing still costs its time.
    const costs = this.knowledge.costs;
    const verifyCost = costs.verifyCost(batch);
    const extra = costs.extraCost(drafting, batch);
    limits = { ...limits, maxNodes: Math.min(limits.maxNodes, this.planCap()) };
    const plan = planTree(tree, this.records, verifyCost, extra, limits);
    if (this.pays(plan, batch)) return this.speculate(plan, drafting);
    // Drafting did not pay for itself this step, but what it took is spent: whatever beats a
    // plain step without it is verified all the same (a draft model's sure chain after an unsure
    // first token: charged its drafting, 10 nodes expected to give 8.9 tokens promised 1.005x,
    // and were left unverified). Whether to go on drafting is for the drafting value to say.
    const spent = costs.spentDraftingCost(drafting, batch, draftedMs);
    const sunk = spent > 0 ? planTree(tree, this.records, verifyCost, extra - spent, limits) : plan;
    const verified = this.pays(sunk, batch) ? sunk : undefined;
    this.speculating = verified !== undefined;
    if (verified) {
      this.recentPlanSizes.add(verified.size);
      this.noteVerifiedPlan(verified, drafting);
    }
    const charged = costs.chargedDraftingCost(drafting, batch);
    // Net of all its drafting, as a plan that pays is valued.
    const value = verified ? saving(verified) - spent : -(charged ?? 0);
    if (!this.backingOff && charged !== undefined && this.observeDraftingValue(value) > 0) return verified?.tree ?? tree.prune(0);
    // Drafting backs off; a probe that finds nothing worth verifying spaces its schedule's probes
    // by what the drafting it did costs (a probe open to a draft model that did not ask one,
    // because it does not pay or there is none, cost what cheap drafting costs).
    const probes = this.probes;
    if (this.probing) probes[this.probing].spaceTo(this.probeInterval(drafting, PROBE_TIME_SHARE, batch) ?? UNMEASURED_PROBE_INTERVAL);
    else {
      probes.cheap.atLeast(this.probeInterval('cheap', FIRST_PROBE_TIME_SHARE, batch) ?? 1);
      probes.costly.atLeast(this.probeInterval('costly', FIRST_PROBE_TIME_SHARE, batch) ?? 1);
    }
    this.shareProbeIntervals();
    this.backingOff = true;
    // Drafts that are not verified are followed against the tokens that plain decoding emits next
    // (shadow verification, in the decoder), which reports the outcome through observe().
    return verified?.tree ?? tree.prune(0);
  }

  /** A plan that pays for its drafting: verified, and drafting goes on (or starts again, after a probe). */
  private speculate(plan: TreePlan, drafting: Exclude<Drafting, 'none'>): TokenTree {
    this.speculating = true;
    this.noteVerifiedPlan(plan, drafting);
    this.recentPlanSizes.add(plan.size);
    // A probe that pays starts the sequence's value afresh: its misses before say nothing of the text now.
    if (this.backingOff) this.draftingValue = new Ewma(SEQUENCE_DRAFTING_VALUE_FACTOR);
    this.backingOff = false;
    // A plan of cheap drafts that pays says nothing of the draft model, whose probes cost far more.
    this.probes.cheap.reset();
    if (drafting === 'costly') this.probes.costly.reset();
    this.shareProbeIntervals();
    this.observeDraftingValue(saving(plan));
    return plan.tree;
  }

  private noteVerifiedPlan(plan: TreePlan, drafting: Exclude<Drafting, 'none'>): void {
    this.cheapPlanExpected = drafting === 'cheap' ? plan.expectedTokens - 1 : undefined;
  }

  /**
   * The share of their expectation that this sequence's cheap-only plans have lately delivered,
   * at most 1 (1 before any). Acceptance rates learnt on other text can promise too much: on
   * reasoning after long generation, nodes the n-gram and suffix drafters agreed on gave 0.4-0.65
   * of the tokens expected, and since those trees looked enough the draft model, whose chains
   * are calibrated, was not asked.
   */
  private get cheapDelivery(): number {
    const { expected, accepted } = this.cheapPlans;
    if (expected.value === undefined || accepted.value === undefined || expected.value <= 0) return 1;
    return Math.min(1, accepted.value / expected.value);
  }

  private shareProbeIntervals(): void {
    this.knowledge.probeIntervals.cheap = this.probes.cheap.every;
    this.knowledge.probeIntervals.costly = this.probes.costly.every;
  }

  /** Adds one drafting step's worth to this sequence's value and every sequence's; returns this sequence's. */
  private observeDraftingValue(value: number): number {
    this.knowledge.draftingValue.push(value);
    return this.draftingValue.push(value);
  }

  /**
   * Steps between probes of a kind that keep their drafting within `share` of the time (undefined:
   * its cost is not measured yet). Beside other sequences a probe holds up all of them, and each
   * of them probes on its own schedule: priced in plain shares (chargedDraftingCost), the probes
   * of all S sequences together keep to the share, where timing each as if it ran alone let 16
   * sequences' probes take 2.5 times it.
   */
  private probeInterval(drafting: Exclude<Drafting, 'none'>, share: number, batch: SharedBatch | undefined): number | undefined {
    const cost = this.knowledge.costs.chargedDraftingCost(drafting, batch);
    if (cost === undefined) return undefined;
    return Math.max(1, Math.min(MAX_PROBE_INTERVAL, Math.ceil(cost / share)));
  }

  observe(tree: TokenTree, acceptedNodes: readonly number[], walk?: WalkProgress): void {
    observeVerification(this.records, tree, acceptedNodes, walk);
    if (walk?.ended !== false) this.acceptedRuns.add(acceptedNodes.length);
    for (const node of acceptedNodes.slice(walk?.settled ?? 0)) for (const source of tree.sources(node)) this.knowledge.costlyDrafts.observeAccepted(source);
  }

  costlyDrafterPays(name: string, batch: SharedBatch | undefined, step: number, pendingTokens = 0): boolean {
    return this.knowledge.costlyDrafts.pays(name, this.acceptedTokenValueMs(batch), step, pendingTokens);
  }

  observeCostlyDraft(name: string, draft: CostlyDraft): void {
    this.knowledge.costlyDrafts.observeDraft(name, draft);
  }

  expectedAccepted(tree: TokenTree, batch?: SharedBatch): number {
    const costs = this.knowledge.costs;
    const plan = planTree(tree, this.records, costs.verifyCost(batch), costs.extraCost('cheap', batch));
    return this.pays(plan, batch) ? (plan.expectedTokens - 1) * this.cheapDelivery : 0;
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

  /**
   * Decode time one more accepted draft token saves: a plain decode minus what the token adds to
   * a verify batch (ms; undefined until measured).
   */
  acceptedTokenValueMs(batch?: SharedBatch): number | undefined {
    return this.knowledge.costs.acceptedTokenValueMs(batch);
  }

  observeStep(emitted: number, ms: number, drafting: Drafting): void {
    if (this.cheapPlanExpected !== undefined) {
      this.cheapPlans.expected.push(this.cheapPlanExpected);
      this.cheapPlans.accepted.push(emitted - 1);
      this.cheapPlanExpected = undefined;
    }
    if (this.lastStep && !decodedAlone(this.lastStep)) this.knowledge.shared.observe(this.lastStep, emitted, ms, this.speculating || drafting !== 'none');
    else {
      this.knowledge.costs.observeStep(drafting, ms, this.lastDecodeMs, this.lastStep?.tokens ?? 1);
      this.judge.observeStep(emitted, ms, this.speculating);
    }
    this.speculating = false;
  }
}

/** Plain steps a plan is expected to save, net of every cost it was charged (tokens / speedup is its cost). */
function saving(plan: TreePlan): number {
  return plan.expectedTokens * (1 - 1 / plan.speedup);
}
