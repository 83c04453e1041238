/**
 * When drafters that do not pay are next asked anyway (a probe), to re-measure. Probes fall on
 * multiples of a power-of-two interval of the engine's step number: concurrent requests whose
 * intervals are equal probe in the same steps, and one with a longer interval in a subset of them
 * (their draft-model decodes share batches, and the other steps stay plain).
 */
export class ProbeSchedule {
  private interval: number;
  private lastProbe = -1;
  private lengthenedAt = -1;

  /** `start`: the interval to begin with, when not `first` (what earlier sequences reached). */
  constructor(
    private readonly first: number,
    start = first,
  ) {
    this.interval = start;
  }

  /** Steps between probes now. */
  get every(): number {
    return this.interval;
  }

  /** Whether `step` is a probe step (every sequence that shares the schedule and asks during it is told so). */
  due(step: number): boolean {
    if (step === this.lastProbe) return true;
    if (step % this.interval !== 0) return false;
    this.lastProbe = step;
    return true;
  }

  /**
   * At a probe that re-checks a drafter still not paying (CostlyDrafts): twice the interval, up
   * to `max` (rounded up to a power of two); once per probe step, however many sequences probed
   * in it. A planner's probe that found nothing spaces its schedule by cost instead (spaceTo).
   */
  lengthen(max: number): void {
    if (this.lengthenedAt === this.lastProbe) return;
    this.lengthenedAt = this.lastProbe;
    this.interval = Math.min(this.interval * 2, powerOfTwoAtLeast(max));
  }

  /**
   * Probes every `steps` steps from now on (rounded up to a power of two): after a probe that
   * found nothing worth verifying, the interval that keeps probing within its share of the time,
   * at once. Doubling towards it instead, from the 8 a fresh engine starts at, took 6 probes of
   * the tiny testbed's draft model to get there, and each request that had explored left its
   * schedule at 128 or less: probes took 5% of rewriting's time, for a 2% share (planner replay,
   * cheap proposals at 2.5 ms).
   */
  spaceTo(steps: number): void {
    this.interval = powerOfTwoAtLeast(steps);
  }

  /** Probes no more often than every `steps` steps (rounded up to a power of two). */
  atLeast(steps: number): void {
    this.interval = Math.max(this.interval, powerOfTwoAtLeast(steps));
  }

  /** Drafting pays again: back to the first interval. */
  reset(): void {
    this.interval = this.first;
  }
}

function powerOfTwoAtLeast(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}
