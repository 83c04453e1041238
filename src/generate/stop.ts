/**
 * Holds back streamed text that could still become a stop string, so a stop string is never
 * printed in part and then cut.
 */
export class StopMatcher {
  private pending = '';

  constructor(private readonly stops: readonly string[]) {}

  /** Feeds new text; returns what is safe to emit, and whether a stop string completed. */
  push(text: string): { text: string; stopped: boolean } {
    this.pending += text;
    let earliest = -1;
    for (const stop of this.stops) {
      const at = this.pending.indexOf(stop);
      if (at >= 0 && (earliest < 0 || at < earliest)) earliest = at;
    }
    if (earliest >= 0) {
      const out = this.pending.slice(0, earliest);
      this.pending = '';
      return { text: out, stopped: true };
    }
    const hold = this.longestPartialStop();
    const out = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return { text: out, stopped: false };
  }

  /** The text still held back (emitted when generation ends for another reason). */
  flush(): string {
    const out = this.pending;
    this.pending = '';
    return out;
  }

  /** Length of the longest suffix of `pending` that is a proper prefix of some stop string. */
  private longestPartialStop(): number {
    let best = 0;
    for (const stop of this.stops) {
      for (let length = Math.min(stop.length - 1, this.pending.length); length > best; length--) {
        if (this.pending.endsWith(stop.slice(0, length))) {
          best = length;
          break;
        }
      }
    }
    return best;
  }
}
