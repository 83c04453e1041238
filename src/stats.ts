/** Order statistics and running averages used by the engine's planner, the thinking controller and the benchmarks. */

/** Median of the finite values (mean of the middle two for an even count); NaN when there are none. */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/**
 * The p-th percentile (0–100) of the finite values, interpolating linearly between the two nearest
 * ranks (as numpy's default does); NaN when there are none.
 */
export function percentile(values: readonly number[], p: number): number {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const rank = (Math.min(100, Math.max(0, p)) / 100) * (sorted.length - 1);
  const below = Math.floor(rank);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below] + (sorted[above] - sorted[below]) * (rank - below);
}

/** The last `size` values added (the oldest is overwritten first). */
export class RecentValues {
  private readonly items: number[] = [];
  private next = 0;

  constructor(private readonly size: number) {}

  add(value: number): void {
    if (this.items.length < this.size) this.items.push(value);
    else this.items[this.next] = value;
    this.next = (this.next + 1) % this.size;
  }

  get values(): readonly number[] {
    return this.items;
  }
}

/** Median of the last `size` values added (undefined before the first). */
export class RecentMedian {
  private readonly recent: RecentValues;
  private cached: number | undefined;

  constructor(size: number) {
    this.recent = new RecentValues(size);
  }

  add(value: number): void {
    this.recent.add(value);
    this.cached = undefined;
  }

  get value(): number | undefined {
    if (this.recent.values.length === 0) return undefined;
    this.cached ??= median(this.recent.values);
    return this.cached;
  }
}

/** Exponentially weighted moving average; the first value seeds it, unless a starting value is given. */
export class Ewma {
  constructor(
    private readonly alpha: number,
    private current?: number,
  ) {
    if (!(alpha > 0 && alpha <= 1)) throw new RangeError(`EWMA factor must be in (0, 1], got ${alpha}`);
  }

  push(value: number): number {
    this.current = this.current === undefined ? value : this.alpha * value + (1 - this.alpha) * this.current;
    return this.current;
  }

  get value(): number | undefined {
    return this.current;
  }
}
