/**
 * What verify tokens cost in a step shared by several sequences, learnt in place.
 *
 * The cost curve is measured with one short sequence. In a step shared by S sequences every token
 * also attends over all their cells (one unified KV cache spans them, masked per sequence), work
 * that grows with the batch's tokens and with the cells held, and that the curve never sees. On
 * a CPU, with 8 sequences of about 300 cells each on a 0.4B-class model, a step's tokens beyond
 * the plain 8 cost about 1.8 times what the curve predicts (5 ms each against 2.8), so trees the
 * curve priced as a 1.2× gain only broke even. The learnt scale multiplies the curve's growth:
 *
 *   step(S sequences, T tokens) / plainStep(S) − 1 = scale · (c(T) / c(S) − 1)
 *
 * where plainStep(S) is a step in which each of the S sequences decodes its one pending token.
 * Both sides are ratios to a step measured in place, so neither needs a decode timed alone (a busy
 * server never runs one). Scales are kept per number of sequences: the cells behind them differ.
 */
import { RecentMedian, RecentValues } from '../stats.js';
import { decodingOnly, type DecodedStep } from '../generate/decoder.js';
import type { CostCurve } from './cost-model.js';

/**
 * Plain steps whose median is the reference: few, so it stays recent (a plain step grows by a
 * quarter while 8 sequences add 200 cells each, as much as the growth being measured).
 */
const PLAIN_WINDOW = 4;

/** Tree steps the scale is learnt from (the most recent). */
const GROWTH_WINDOW = 16;

/** Until this many tree steps have been seen, the curve stands as it is (scale 1). */
const MIN_OBSERVATIONS = 4;

/**
 * Steps the curve says grow a plain step by less than this share tell the scale too little (their
 * observed growth is mostly noise).
 */
const MIN_PREDICTED_GROWTH = 0.1;

/** The scale stays within this range; one step's observed growth is clamped to it too. */
const MIN_SCALE = 0.25;
const MAX_SCALE = 4;

interface AtConcurrency {
  /** Plain steps of this many sequences (ms). */
  plainMs: RecentMedian;
  /** Recent tree steps: observed and predicted growth over the plain step (added in pairs). */
  observed: RecentValues;
  predicted: RecentValues;
}

export class SharedStepCosts {
  private readonly bySequences = new Map<number, AtConcurrency>();
  /** Every sequence of a step reports it; it counts once. */
  private lastStep = -1;

  constructor(private readonly curve: CostCurve) {}

  /** Learns from a decode that decoding sequences alone shared (a prompt chunk's share is unknown). */
  observe(step: DecodedStep, ms: number): void {
    if (step.index === this.lastStep || step.sequences < 2 || !decodingOnly(step)) return;
    this.lastStep = step.index;
    const costs = this.at(step.sequences);
    if (step.tokens === step.sequences) {
      costs.plainMs.add(ms);
      return;
    }
    const plain = costs.plainMs.value;
    const predicted = this.curve.cost(step.tokens) / this.curve.cost(step.sequences) - 1;
    if (plain === undefined || predicted < MIN_PREDICTED_GROWTH) return;
    const observed = Math.min(MAX_SCALE * predicted, Math.max(MIN_SCALE * predicted, ms / plain - 1));
    costs.observed.add(observed);
    costs.predicted.add(predicted);
  }

  /**
   * What the curve's growth of a step of `sequences` sequences is multiplied by here (1 until
   * measured): observed over predicted growth summed over recent tree steps, so large trees,
   * whose growth stands out of the noise, weigh most.
   */
  scale(sequences: number): number {
    const costs = this.bySequences.get(sequences);
    if (!costs || costs.observed.values.length < MIN_OBSERVATIONS) return 1;
    const scale = sum(costs.observed.values) / sum(costs.predicted.values);
    return Math.min(MAX_SCALE, Math.max(MIN_SCALE, scale));
  }

  private at(sequences: number): AtConcurrency {
    let costs = this.bySequences.get(sequences);
    if (!costs) {
      costs = { plainMs: new RecentMedian(PLAIN_WINDOW), observed: new RecentValues(GROWTH_WINDOW), predicted: new RecentValues(GROWTH_WINDOW) };
      this.bySequences.set(sequences, costs);
    }
    return costs;
  }
}

function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}
