/**
 * What steps really cost here, learnt from the engine's own steps and shared by every sequence a
 * planner serves. The cost curve is measured once per machine, with nothing between decodes;
 * inside a generation a tree decode also follows the drafters' JS work, a speculative step spends
 * time outside the decode (drafting, acceptance, KV bookkeeping), and a step shared with other
 * sequences attends over their cells too. Plans are charged what steps cost in place.
 */
import { RecentMedian } from '../stats.js';
import { decodedAlone, type DecodedStep } from '../generate/decoder.js';
import { sharedBatchCost, sharedStepFactor, type CostCurve, type VerifyCost } from './cost-model.js';
import type { Drafting, SharedBatch } from './decoder.js';
import { SharedStepCosts } from './shared-step-costs.js';

/** In-situ costs are medians of this many recent observations: one slow decode (a first graph allocation, a noisy neighbour) must not stop speculation for long. */
const COST_WINDOW = 16;

/** Batch growth over which the marginal verify cost of one token is averaged. */
const MARGINAL_SPAN = 8;

export class InSituCosts {
  /** A settled single-token decode of a sequence alone (ms). */
  private readonly singleDecodeMs = new RecentMedian(COST_WINDOW);
  /** The cost curve's single-token time: the prior of singleDecodeMs where accepted tokens are valued. */
  private readonly measuredSingleMs: number | undefined;
  /**
   * What a tree decode costs in place beyond c(n) single decodes (in single-decode units). On a
   * loaded CPU a decode that follows the drafters' JS work pays a roughly constant penalty (caches
   * gone cold), not a share of its size: long, likely chains amortize it.
   */
  private readonly decodeExtra = new RecentMedian(COST_WINDOW);
  /**
   * What the first single-token decode after a tree costs beyond a settled one (single-decode
   * units): llama.cpp rebuilds the one-token graph, and caches the tree decode displaced refill.
   * The curve measures going into a tree, not coming back; plans pay for both. Those decodes are
   * kept out of the single-decode median, which they would inflate.
   */
  private readonly returnExtra = new RecentMedian(COST_WINDOW);
  /**
   * What a step spends beside its decode (ms, see observeStep), for plain steps and for steps
   * that drafted. A plan is charged the drafting too: sunk for this step, but speculating step
   * after step means drafting step after step, so a plan that cannot pay for its drafting is not
   * worth continuing.
   */
  private readonly overheadMs: Record<Drafting, RecentMedian> = {
    none: new RecentMedian(COST_WINDOW),
    cheap: new RecentMedian(COST_WINDOW),
    costly: new RecentMedian(COST_WINDOW),
  };
  /** What verify tokens cost in steps shared with other sequences, which the curve underestimates. */
  private readonly shared: SharedStepCosts;

  constructor(
    readonly curve: CostCurve,
    singleDecodeMs?: number,
  ) {
    this.measuredSingleMs = singleDecodeMs;
    this.shared = new SharedStepCosts(curve);
  }

  /**
   * A decode a sequence took part in. `afterTree`: the sequence's previous decode, alone, verified
   * a tree (the first single decode after one pays to come back).
   */
  observeDecode(step: DecodedStep, ms: number, afterTree: boolean): void {
    if (!decodedAlone(step)) return this.shared.observe(step, ms);
    // The common case, a settled single-token decode, only feeds the median it is measured against.
    if (step.tokens === 1 && !afterTree) return this.singleDecodeMs.add(ms);
    const single = this.singleDecodeMs.value;
    if (single === undefined) return;
    if (step.tokens > 1) this.decodeExtra.add(ms / single - this.curve.cost(step.tokens));
    else this.returnExtra.add(ms / single - 1);
  }

  /**
   * A whole step of a sequence alone: `ms` in all, `decodeMs` of it in a decode of `tokens`
   * tokens. Drafting costs a step its own time and, where the step then decodes its pending token
   * alone, what that decode takes beyond a settled one: the drafters' work displaces the target's
   * weights from the caches (on the tiny testbed the decode in a probe's step took 0.61 ms, a
   * settled one 0.40). Not clipped at 0: a decode's noise must not add up to a charge. A tree's
   * decode is the tree's (decodeExtra).
   */
  observeStep(drafting: Drafting, ms: number, decodeMs: number, tokens: number): void {
    // Plain steps, nearly all of a generation where drafts do not pay, skip the median.
    const single = drafting !== 'none' && tokens === 1 ? this.singleDecodeMs.value : undefined;
    const displaced = single === undefined ? 0 : decodeMs - single;
    this.overheadMs[drafting].add(Math.max(0, ms - decodeMs + displaced));
  }

  /** A single decode's time as measured in place, or until then as the cost curve measured it (ms). */
  private get singleMs(): number | undefined {
    return this.singleDecodeMs.value ?? this.measuredSingleMs;
  }

  /** A tree of n tokens' cost in this sequence's plain steps, alone or beside `batch`. */
  verifyCost(batch?: SharedBatch): VerifyCost {
    return batch ? sharedBatchCost(this.curve, batch, this.growthScale(batch)) : this.curve;
  }

  /**
   * What a speculative step costs beyond its verify batch, in this sequence's plain-step units,
   * whatever its size (the in-place penalties are roughly constant); may be negative when the
   * curve overestimates. Beside other sequences it holds up a step they all wait for.
   */
  extraCost(drafting: Exclude<Drafting, 'none'>, batch?: SharedBatch): number {
    const decode = (this.decodeExtra.value ?? 0) + Math.max(0, this.returnExtra.value ?? 0);
    return decode * stepFactor(this.curve, batch) + (this.chargedDraftingCost(drafting, batch) ?? 0);
  }

  /** The drafting part of extraCost() (undefined until measured). */
  chargedDraftingCost(drafting: Exclude<Drafting, 'none'>, batch?: SharedBatch): number | undefined {
    const cost = this.draftingCost(drafting);
    return cost === undefined ? undefined : cost * stepFactor(this.curve, batch);
  }

  /**
   * The part of the drafting charge a step has already spent, `draftedMs` into it: no more than
   * the charge, which also holds what a step that drafted spends after its decode.
   */
  spentDraftingCost(drafting: Exclude<Drafting, 'none'>, batch: SharedBatch | undefined, draftedMs: number): number {
    const single = this.singleMs;
    const charged = this.chargedDraftingCost(drafting, batch);
    if (single === undefined || charged === undefined) return 0;
    return Math.min(charged, (draftedMs / single) * stepFactor(this.curve, batch));
  }

  /** What drafting of this kind adds to a step, in single-decode units (undefined until measured). */
  private draftingCost(drafting: Exclude<Drafting, 'none'>): number | undefined {
    const single = this.singleMs;
    // A sequence that speculates from its first step has run no plain step yet; what a plain step
    // spends outside its decode (sampling, bookkeeping) is a fraction of a millisecond, so until
    // one is measured the whole outside time of a drafting step counts as drafting.
    const plainOutside = this.overheadMs.none.value ?? 0;
    const draftingOutside = this.overheadMs[drafting].value;
    if (single === undefined || draftingOutside === undefined) return undefined;
    return Math.max(0, draftingOutside - plainOutside) / single;
  }

  /**
   * An accepted token saves its sequence a share of a plain step, c(S) / S single decodes when
   * S sequences share the step (1 alone), and costs what it adds to the verify batch of B tokens.
   * In wall time of the step every sequence waits for, as drafting time is.
   */
  acceptedTokenValueMs(batch?: SharedBatch): number | undefined {
    const single = this.singleMs;
    if (single === undefined) return undefined;
    const { share, marginal } = this.tokenPrice(batch);
    return single * Math.max(0, share - marginal);
  }

  /**
   * The acceptance a tree node needs beside `batch` to pay for its own verification and for
   * `draftMs` of drafting (what drafting the node held the step up): what they add to the step
   * over what the node saves, the sequence's share of a plain step.
   */
  nodeBreakEven(batch: SharedBatch, draftMs = 0): number {
    const { share, marginal } = this.tokenPrice(batch);
    const single = this.singleMs;
    const drafting = single === undefined ? 0 : draftMs / single;
    return (Math.max(0, marginal) + drafting) / share;
  }

  /**
   * A token's share of a plain step and what it adds to the verify batch, in single decodes (the
   * addition averaged over MARGINAL_SPAN tokens: the curve is flat in places).
   */
  private tokenPrice(batch: SharedBatch | undefined): { share: number; marginal: number } {
    const tokens = batch ? batch.tokens + 1 : 1;
    const share = 1 / stepFactor(this.curve, batch);
    const marginal = (this.growthScale(batch) * (this.curve.cost(tokens + MARGINAL_SPAN) - this.curve.cost(tokens))) / MARGINAL_SPAN;
    return { share, marginal };
  }

  /** What the curve's growth is multiplied by for a step shared with `batch` (1 alone). */
  private growthScale(batch: SharedBatch | undefined): number {
    return batch ? this.shared.scale(batch.sequences + 1) : 1;
  }
}

/** How many of its own plain steps a sequence's step beside `batch` holds up (1 alone). */
function stepFactor(curve: CostCurve, batch: SharedBatch | undefined): number {
  return batch ? sharedStepFactor(curve, batch) : 1;
}
