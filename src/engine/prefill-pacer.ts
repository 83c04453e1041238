/**
 * How many prompt tokens a step may add while other requests are decoding (chunked prefill with a
 * time budget, after Sarathi-Serve): a step carrying a prompt chunk keeps every running stream
 * waiting, so the chunk is sized for the step to take at most `stretch` times a step of decoding
 * alone. The price of a prompt token is learned from the steps themselves, so the chunk follows
 * the machine: on a GPU, where a few hundred tokens cost hardly more than one, chunks stay large;
 * on a CPU, where a 256-token chunk costs ~20 decodes, they shrink to what keeps the streams'
 * inter-token latency within the budget (and a prompt token costs about as much in a chunk of 16
 * at the margin as in one of 256 there; the price is the streams' share of every step: the
 * prompt gets (stretch − 1) / stretch of the machine, so its first token comes about
 * stretch / (stretch − 1) times later than alone). Where even the smallest chunk breaks the
 * budget (a tiny model, whose steps are mostly fixed overhead), the smallest chunk it is: the
 * budget is held as nearly as it can be, at a higher price in time to first token. With nothing
 * decoding, prompts go at full chunk size, and so they do while at least as many requests wait
 * for their first token as there are streams: holding one stream's pace would make seven
 * prompts wait (a wave of requests arriving together).
 */

export interface PrefillPacerOptions {
  /** Most prompt tokens one step evaluates (the chunk with nothing else running). */
  maxChunk: number;
  /** A step with a prompt chunk may take this many times a decode-only step (default 2). */
  stretch?: number;
  /** Fewest prompt tokens per step, so a prompt always progresses (default 8). */
  minChunk?: number;
}

/** A step with a prompt chunk may take twice a decode-only step: streams' inter-token p99 within 2× their median. */
export const DEFAULT_PREFILL_STRETCH = 2;

/** Weight of the newest observation in the running estimates. */
const SMOOTHING = 0.25;
/** A chunk grows at most this much from one step to the next (one fast step proves little). */
const MAX_GROWTH = 2;

export class PrefillPacer {
  private readonly maxChunk: number;
  private readonly stretch: number;
  private readonly minChunk: number;
  /**
   * Time of a step that decodes only (ms, running estimate), by how many tokens it decodes, in
   * powers of two: the budget of a step that decodes 8 streams is not that of one decoding 1.
   */
  private readonly decodeStepMs = new Map<number, number>();
  /** What one prompt token adds to a step (ms, running estimate). */
  private promptTokenMs: number | undefined;
  /** The chunk last given while streams decode (it grows from there at most MAX_GROWTH-fold). */
  private lastChunk: number;

  constructor(options: PrefillPacerOptions) {
    this.maxChunk = Math.max(1, options.maxChunk);
    this.stretch = options.stretch ?? DEFAULT_PREFILL_STRETCH;
    this.minChunk = Math.min(this.maxChunk, options.minChunk ?? 8);
    this.lastChunk = this.minChunk;
  }

  /**
   * Prompt tokens the next step may evaluate, given how many of its tokens decode running
   * streams and how many requests decode or prefill. None when a step decoding that many tokens
   * has not been timed yet: every step would carry a chunk while prompts wait, and the budget
   * would never be known.
   */
  chunk(decodingTokens: number, requests: { decoding: number; prefilling: number }): number {
    if (decodingTokens === 0 || requests.prefilling >= requests.decoding) return this.maxChunk;
    const decodeStepMs = this.decodeStepMs.get(sizeClass(decodingTokens));
    if (decodeStepMs === undefined) return 0;
    if (this.promptTokenMs === undefined) return this.lastChunk;
    const room = ((this.stretch - 1) * decodeStepMs) / this.promptTokenMs;
    this.lastChunk = Math.round(Math.min(this.maxChunk, this.lastChunk * MAX_GROWTH, Math.max(this.minChunk, room)));
    return this.lastChunk;
  }

  /** Learns from a decode: `ms` for `decodingTokens` tokens of running streams and `promptTokens` prompt tokens. */
  observe(decodingTokens: number, promptTokens: number, ms: number): void {
    if (decodingTokens === 0) return;
    const size = sizeClass(decodingTokens);
    const decodeStepMs = this.decodeStepMs.get(size);
    if (promptTokens === 0) {
      this.decodeStepMs.set(size, smooth(decodeStepMs, ms));
      return;
    }
    if (decodeStepMs === undefined) return;
    // A step faster than decoding alone (noise) says a prompt token is nearly free, not negative.
    this.promptTokenMs = smooth(this.promptTokenMs, Math.max(ms - decodeStepMs, 0.01 * decodeStepMs) / promptTokens);
  }
}

/** 1, 2, 3–4, 5–8, …: steps whose decode-only times are told apart. */
function sizeClass(tokens: number): number {
  return Math.ceil(Math.log2(tokens));
}

function smooth(previous: number | undefined, value: number): number {
  return previous === undefined ? value : previous + SMOOTHING * (value - previous);
}
