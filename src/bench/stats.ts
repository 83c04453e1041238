/** Small statistics for benchmark samples: medians resist the noise of a shared machine. */

import { median } from '../stats.js';

export { median, percentile } from '../stats.js';

/** The item whose value is the median (the lower of the two middle ones for an even count): a whole run, latencies and all, not a mix of runs. */
export function medianItem<T>(items: readonly T[], value: (item: T) => number): T {
  const sorted = [...items].sort((a, b) => value(a) - value(b));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

export interface Summary {
  median: number;
  min: number;
  max: number;
  /** How many samples. */
  n: number;
}

export function summarize(values: readonly number[]): Summary {
  const finite = values.filter(Number.isFinite);
  return {
    median: median(finite),
    min: finite.length > 0 ? Math.min(...finite) : Number.NaN,
    max: finite.length > 0 ? Math.max(...finite) : Number.NaN,
    n: finite.length,
  };
}

/** a / b, or null when either is missing or b is not positive. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b <= 0) return null;
  return a / b;
}

export { commonPrefixLength } from '../token-sequences.js';

/** Rounds for JSON output (keeps reports readable without losing meaningful digits). */
export function round(value: number | null, digits = 3): number | null {
  if (value == null || !Number.isFinite(value)) return null;
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** The gap between the two largest logits: batched and single-token kernels may flip near-ties. */
export function top2Gap(logits: Float32Array): number {
  let first = -Infinity;
  let second = -Infinity;
  for (const value of logits) {
    if (value > first) [first, second] = [value, first];
    else if (value > second) second = value;
  }
  return first - second;
}
