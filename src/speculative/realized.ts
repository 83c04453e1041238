/**
 * Judges speculation by what it realizes end to end. The cost model predicts a step's cost from
 * the decodes it measures, but its estimates are noisy on a loaded machine, and whatever it does
 * not model (a slowdown that outlasts the decode after a tree, say) would go unnoticed. So
 * generation alternates: epochs where the planner may speculate, then a short epoch of forced
 * plain decoding, and compares their tokens per millisecond (an epoch that speculated in few of
 * its steps compares those with its own plain steps instead). Adjacent epochs see the same machine
 * load, so their ratio is a fair verdict; while speculating epochs lose, the planner must be
 * promised more before it verifies a tree, and after losses in a row plain decoding rests longer
 * before the next test: a higher bar stops plans, not the drafting that looks for them (probes),
 * which is what loses beside 15 other sequences.
 */
import { decodingOnly, type DecodedStep } from '../generate/decoder.js';
import type { VerifyCost } from './cost-model.js';
import { concurrencyClass } from './shared-step-costs.js';
import { getOrCreate } from '../memo.js';

/**
 * Steps of an epoch in which the planner may speculate; after each won verdict the next is twice
 * as long (up to the maximum), so a plain epoch costs little while speculation keeps winning.
 */
const SPECULATING_EPOCH_STEPS = 128;
const MAX_SPECULATING_EPOCH_STEPS = 1024;
/** Steps of the plain epoch that follows one that speculated, at most. */
const PLAIN_EPOCH_STEPS = 32;
/** First steps of a plain epoch left out of its rate: they still pay for the trees before them. */
const PLAIN_EPOCH_SETTLE_STEPS = 6;
/**
 * A plain epoch ends sooner once it has timed this many steps over this many ms: with decodes of
 * tens of ms a dozen of them give a steady rate, and every forced plain step forgoes the speedup
 * being judged; decodes of a fraction of a ms need all the steps to rise above timer noise.
 */
const PLAIN_EPOCH_ENOUGH_STEPS = 12;
const PLAIN_EPOCH_ENOUGH_MS = 150;
/**
 * An epoch is compared with a plain epoch after it only when speculative steps emitted at least
 * this share of its tokens: otherwise that verdict would mostly be timing noise of plain steps.
 */
const MIN_SPECULATIVE_SHARE = 0.25;
/**
 * An epoch where speculation was rarer is judged within itself instead: its speculative steps'
 * work per ms against its plain steps', once each kind has this many steps. Its plain steps ran
 * among its speculative ones, at the same context lengths and machine load (a plain epoch after
 * it sees longer contexts: 8 requests' plain steps grew from 63 to 90 ms over their 256 tokens).
 * Before, such epochs went unjudged: at 8 concurrent on long generation, where sequences drafted
 * or verified in 8-26% of the steps, 2 runs of 16 requests got one verdict between them.
 */
const MIN_STEPS_JUDGED_WITHIN = 8;
/** Verdicts: a losing epoch raises the bar by this factor, a winning one lowers it by the same. */
const BAR_STEP = 1.15;
const MAX_BAR = 4;
/** Realized speedup below which an epoch counts as lost, and above which as won (a band around 1 for noise). */
const LOSS_BELOW = 0.97;
const WIN_ABOVE = 1.03;
/**
 * Plain steps that follow the plain epoch after the second lost verdict in a row, doubled at each
 * further loss up to the maximum, before speculation is tested again; a verdict that is not a loss
 * ends the rest. One loss costs no rest: the text may just have turned unpredictable.
 */
const FIRST_REST_STEPS = 128;
const MAX_REST_STEPS = 1024;
/** Speculating epochs too quiet to be judged after which a raised bar is lowered one step, to test again. */
const IDLE_EPOCHS_BEFORE_RETEST = 4;

interface Tally {
  steps: number;
  tokens: number;
  ms: number;
  /** The part of the counted steps that speculated. */
  speculative: { steps: number; tokens: number; ms: number };
}

const emptyTally = (): Tally => ({ steps: 0, tokens: 0, ms: 0, speculative: { steps: 0, tokens: 0, ms: 0 } });

export class RealizedJudge {
  /** Factor (≥ 1) by which a plan must beat the planner's own margin. */
  private barFactor = 1;
  private plainPhase = false;
  private current = emptyTally();
  /** Tokens per ms of the last speculating epoch, waiting for the plain epoch that judges it. */
  private speculatingRate: number | undefined;
  private idleEpochs = 0;
  private speculatingEpochSteps = SPECULATING_EPOCH_STEPS;
  private lossesInARow = 0;
  /** Forced plain steps still to run after the plain epoch (a rest). */
  private restSteps = 0;
  /** Realized speedup of the last judged epoch over the plain epoch after it. */
  lastVerdict: number | undefined;

  /** How much more than usual a plan must promise now. */
  get bar(): number {
    return this.barFactor;
  }

  /** Whether its last verdict found speculation faster than plain steps, and no loss since raised the bar. */
  get winning(): boolean {
    return this.barFactor === 1 && (this.lastVerdict ?? 0) > 1;
  }

  /** In a plain epoch, and in the rest after it, nothing is drafted or verified. */
  get forcePlain(): boolean {
    return this.plainPhase || this.restSteps > 0;
  }

  /** One whole step: tokens it emitted, its duration, whether it verified drafted nodes. */
  observeStep(emitted: number, ms: number, speculative: boolean): void {
    if (this.restSteps > 0) {
      this.restSteps--;
      return;
    }
    const tally = this.current;
    tally.steps++;
    if (!this.plainPhase || tally.steps > PLAIN_EPOCH_SETTLE_STEPS) {
      tally.tokens += emitted;
      tally.ms += ms;
      if (speculative) {
        tally.speculative.steps++;
        tally.speculative.tokens += emitted;
        tally.speculative.ms += ms;
      }
    }
    if (this.plainPhase ? this.plainEpochDone(tally) : tally.steps >= this.speculatingEpochSteps) this.endEpoch();
  }

  private plainEpochDone({ steps, ms }: Tally): boolean {
    const timed = steps - PLAIN_EPOCH_SETTLE_STEPS;
    return steps >= PLAIN_EPOCH_STEPS || (timed >= PLAIN_EPOCH_ENOUGH_STEPS && ms >= PLAIN_EPOCH_ENOUGH_MS);
  }

  private endEpoch(): void {
    const tally = this.current;
    const { tokens, ms, speculative } = tally;
    const rate = ms > 0 ? tokens / ms : undefined;
    this.current = emptyTally();
    if (this.plainPhase) {
      this.plainPhase = false;
      if (rate !== undefined && this.speculatingRate !== undefined) this.judge(this.speculatingRate / rate);
      this.speculatingRate = undefined;
      return;
    }
    const within = speedupWithin(tally);
    if (rate !== undefined && speculative.tokens >= tokens * MIN_SPECULATIVE_SHARE) {
      this.speculatingRate = rate;
      this.plainPhase = true;
      this.idleEpochs = 0;
    } else if (within !== undefined) {
      this.judge(within);
      this.idleEpochs = 0;
    } else if (++this.idleEpochs >= IDLE_EPOCHS_BEFORE_RETEST) {
      // Old verdicts expire: the text, or the machine's load, may have changed since.
      this.idleEpochs = 0;
      this.barFactor = Math.max(1, this.barFactor / BAR_STEP);
    }
  }

  private judge(speedup: number): void {
    this.lastVerdict = speedup;
    this.lossesInARow = speedup < LOSS_BELOW ? this.lossesInARow + 1 : 0;
    if (speedup < LOSS_BELOW) {
      if (this.lossesInARow >= 2) this.restSteps = Math.min(MAX_REST_STEPS, FIRST_REST_STEPS * 2 ** (this.lossesInARow - 2));
      this.barFactor = Math.min(MAX_BAR, this.barFactor * BAR_STEP);
      this.speculatingEpochSteps = SPECULATING_EPOCH_STEPS;
    } else if (speedup > WIN_ABOVE) {
      this.barFactor = Math.max(1, this.barFactor / BAR_STEP);
      this.speculatingEpochSteps = Math.min(MAX_SPECULATING_EPOCH_STEPS, this.speculatingEpochSteps * 2);
    }
  }
}

/** Work per ms of an epoch's speculative steps over its plain steps', when it has enough of each. */
function speedupWithin({ steps, tokens, ms, speculative }: Tally): number | undefined {
  const plain = { steps: steps - speculative.steps, tokens: tokens - speculative.tokens, ms: ms - speculative.ms };
  if (speculative.steps < MIN_STEPS_JUDGED_WITHIN || plain.steps < MIN_STEPS_JUDGED_WITHIN) return undefined;
  if (speculative.ms <= 0 || plain.ms <= 0 || plain.tokens <= 0) return undefined;
  return speculative.tokens / speculative.ms / (plain.tokens / plain.ms);
}

/**
 * The same verdicts for steps that several sequences share. Nothing else checks the cost model
 * there: a shared step's speculation must beat plain shared steps, and it is judged whole, every
 * sequence's tokens over the step's time, since all of them wait for it; a step counts as
 * speculative when any sequence drafted in it, for drafting holds up every sequence (beside 15
 * others a draft-model probe took 300-900 ms against a 150 ms step). Each request reports its
 * part; a step is passed to its judge when the next step's first report arrives. Steps that
 * carried a prompt chunk are left out (their time is mostly prefill).
 *
 * Each judge serves a class of sequence counts: 2, 3-4, 5-8, 9-16, … A judge per exact count
 * never finished an epoch under 16 concurrent requests, whose running count moved between 9 and
 * 16 as they ended and were admitted, and speculation there went unjudged (0.95× plain). Tokens per
 * ms grow with the count, and it falls as a run's requests end, which would favour whichever
 * epoch came first: a step's tokens are counted in plain steps' worth of work, c(S) / S each,
 * so that a plain step of any count S emits c(S) single decodes' worth.
 */
export class SharedStepJudges {
  private readonly judges = new Map<number, RealizedJudge>();
  private pending: { step: DecodedStep; tokens: number; ms: number; speculative: boolean } | undefined;

  /** `curve`: what a plain step of S sequences costs, c(S) single decodes. */
  constructor(private readonly curve: VerifyCost) {}

  /** The judge of steps shared by `sequences` sequences (the one of its class). */
  judge(sequences: number): RealizedJudge {
    return getOrCreate(this.judges, concurrencyClass(sequences), () => new RealizedJudge());
  }

  /** One sequence's part of a shared step: what it emitted, the step's time as it saw it, whether it drafted or verified drafts. */
  observe(step: DecodedStep, emitted: number, ms: number, speculative: boolean): void {
    const pending = this.pending;
    if (pending?.step.index === step.index) {
      pending.tokens += emitted;
      pending.ms = Math.max(pending.ms, ms);
      pending.speculative ||= speculative;
      return;
    }
    if (pending && decodingOnly(pending.step)) {
      const { sequences } = pending.step;
      this.judge(sequences).observeStep((pending.tokens * this.curve.cost(sequences)) / sequences, pending.ms, pending.speculative);
    }
    this.pending = { step, tokens: emitted, ms, speculative };
  }
}
