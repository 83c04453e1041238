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
 * server never runs one). The plain step is kept per number of sequences, the scale per class of
 * them (2, 3-4, 5-8, 9-16, …, as the shared judges are): under 16 concurrent requests the count
 * moves between 9 and 16 as they end and are admitted, and a scale per exact count, which applies
 * after 4 tree steps at that count, left trees priced by the bare curve at each count it reached.
 */
import { RecentMedian, RecentValues } from '../stats.js';
import { getOrCreate } from '../memo.js';
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

/** Recent tree steps of a class of sequence counts: observed and predicted growth over their plain step (added in pairs). */
interface Growth {
  observed: RecentValues;
  predicted: RecentValues;
}

/** The class of a count of sequences sharing a step: 2, 3-4, 5-8, 9-16, … (as ⌈log2 S⌉). */
export function concurrencyClass(sequences: number): number {
  return Math.ceil(Math.log2(sequences));
}

export class SharedStepCosts {
  /** Plain steps of each number of sequences (ms). */
  private readonly plainMs = new Map<number, RecentMedian>();
  private readonly growthByClass = new Map<number, Growth>();
  /** Every sequence of a step reports it; it counts once. */
  private lastStep = -1;

  constructor(private readonly curve: CostCurve) {}

  /** Learns from a decode that decoding sequences alone shared (a prompt chunk's share is unknown). */
  observe(step: DecodedStep, ms: number): void {
    if (step.index === this.lastStep || step.sequences < 2 || !decodingOnly(step)) return;
    this.lastStep = step.index;
    const plainMs = getOrCreate(this.plainMs, step.sequences, () => new RecentMedian(PLAIN_WINDOW));
    if (step.tokens === step.sequences) {
      plainMs.add(ms);
      return;
    }
    const plain = plainMs.value;
    const predicted = this.curve.cost(step.tokens) / this.curve.cost(step.sequences) - 1;
    if (plain === undefined || predicted < MIN_PREDICTED_GROWTH) return;
    const observed = Math.min(MAX_SCALE * predicted, Math.max(MIN_SCALE * predicted, ms / plain - 1));
    const growth = getOrCreate(this.growthByClass, concurrencyClass(step.sequences), () => ({ observed: new RecentValues(GROWTH_WINDOW), predicted: new RecentValues(GROWTH_WINDOW) }));
    growth.observed.add(observed);
    growth.predicted.add(predicted);
  }

  /**
   * What the curve's growth of a step of `sequences` sequences is multiplied by here (1 until
   * measured): observed over predicted growth summed over recent tree steps, so large trees,
   * whose growth stands out of the noise, weigh most.
   */
  scale(sequences: number): number {
    const growth = this.growthByClass.get(concurrencyClass(sequences));
    if (!growth || growth.observed.values.length < MIN_OBSERVATIONS) return 1;
    const scale = sum(growth.observed.values) / sum(growth.predicted.values);
    return Math.min(MAX_SCALE, Math.max(MIN_SCALE, scale));
  }
}

function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}
