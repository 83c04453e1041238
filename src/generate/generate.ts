/**
 * What a generation streams and returns: chunks of tokens and text, stop strings, end-of-generation
 * tokens, a token limit and per-request statistics.
 */
import type { Tokenizer } from '../llama/tokenizer.js';
import { TextStreamDecoder } from '../llama/tokenizer.js';
import type { DecoderTimings, SequenceDecoder } from './decoder.js';
import type { SpeculationStats } from '../speculative/decoder.js';
import { StopMatcher } from './stop.js';
import { checkTopLogprobs, tokenLogprob, type TokenLogprob } from './logprobs.js';
import { ThinkingSegments, thinkingTagTokens, type ForcedThinkingEnd, type ThinkingEnd } from '../reasoning/segments.js';
import { thinkingControllerFor, type BoundaryRecord, type PlannedProbe, type ProbePlan, type ThinkingController, type ThinkingLimits } from '../reasoning/controller.js';
import type { ProbeScore } from '../reasoning/probe.js';
import type { TokenTree, TreeShape } from '../speculative/tree.js';

export type StopReason = 'eos' | 'stop' | 'length' | 'abort' | 'context';

export interface GenerationLimits extends ThinkingLimits {
  /** Most tokens to generate; default 256. */
  maxTokens?: number;
  /** Generation ends before the first of these strings; it is not part of the text. */
  stop?: readonly string[];
  /** Keep going past end-of-generation tokens. */
  ignoreEos?: boolean;
  signal?: AbortSignal;
  /** Chunks also carry each token's text (`pieces`), e.g. to colour tokens by drafter. */
  tokenPieces?: boolean;
  /**
   * Chunks also carry each token's log-probability under the model (`logprobs`, see logprobs.ts)
   * with this many most likely alternatives (0–20). Not with a thinking budget or early exit:
   * the tokens they insert have no probability under the model.
   */
  logprobs?: number;
}

export interface GenerationChunk {
  /** Tokens emitted since the previous chunk (one for plain decoding, several when speculating). */
  tokens: readonly number[];
  /** Text that became final with these tokens (may be empty while a UTF-8 character or stop string is pending). */
  text: string;
  /** The part of `text` that is thinking, tags excluded. */
  reasoning: string;
  /** The part of `text` that is the answer, tags excluded. */
  content: string;
  /** For each token, the drafter that proposed it (null: the target's own token, e.g. a bonus token). */
  draftedBy: readonly (string | null)[];
  /** Each token's own text, when the request asked for `tokenPieces`. */
  pieces?: readonly string[];
  /** Each token's log-probability and the most likely alternatives, when the request asked for `logprobs`. */
  logprobs?: readonly TokenLogprob[];
}

export interface GenerationStats {
  promptTokens: number;
  /** Prompt tokens whose KV was reused, not evaluated: restored from the prefix cache or shared from a running request. */
  cachedPromptTokens: number;
  generatedTokens: number;
  /** Engine steps after the first token (each one target decode). */
  steps: number;
  timeToFirstTokenMs: number;
  prefillMs: number;
  prefillTokensPerSecond: number;
  /** Time after the first token. */
  decodeMs: number;
  decodeTokensPerSecond: number;
  totalMs: number;
  timings: DecoderTimings;
  /** Present when a speculative decoder ran: τ, per-drafter acceptance. */
  speculation?: SpeculationStats;
  stopReason: StopReason;
  /** Tokens generated inside thinking sections, tags excluded. */
  thinkingTokens: number;
  /** How the thinking ended; absent when the generation had no thinking. */
  thinkingEnd?: ThinkingEnd;
  /** Every step boundary inside the thinking with its signals, when the request asked to `recordBoundaries`. */
  boundaries?: BoundaryRecord[];
  /** Answer probes verified on the accepted path, when the early-exit policy probes. */
  answerProbes?: number;
}

/** What the engine loop must do after a push the thinking controller cut. */
export interface ForcedTokens {
  /** How many of the pushed tokens were kept (the rest are dropped, their KV too). */
  keptFromStep: number;
  /** Tokens appended after the kept ones, to evaluate like a prompt extension (the last one pending). */
  tokens: readonly number[];
}

export interface GenerationResult {
  text: string;
  reasoning: string;
  content: string;
  tokens: number[];
  stats: GenerationStats;
  /** Each token's log-probability and the most likely alternatives, when the request asked for `logprobs`. */
  logprobs?: TokenLogprob[];
  /** The tree each step verified (the root: its pending token), when the request asked to `recordTrees`. */
  verifiedTrees?: TreeShape[];
}

/**
 * One request's output as the engine loop emits tokens for it: the token limit, end-of-generation
 * tokens, stop strings, streamed text (UTF-8 characters and possible stop strings held back until
 * final) and the statistics of the result.
 */
export class GenerationOutput {
  private readonly maxTokens: number;
  private readonly promptTokens: number;
  private readonly stopMatcher: StopMatcher;
  private readonly textDecoder: TextStreamDecoder;
  private readonly segments: ThinkingSegments;
  private readonly controller: ThinkingController | undefined;
  private readonly boundaries: BoundaryRecord[] = [];
  private readonly generated: number[] = [];
  private readonly output = { text: '', reasoning: '', content: '' };
  private readonly logprobs: TokenLogprob[] = [];
  private steps = 0;
  private firstTokenAt: number | undefined;
  /** Set by the engine loop when the request is first admitted. */
  cachedPromptTokens = 0;

  constructor(
    private readonly tokenizer: Tokenizer,
    prompt: readonly number[],
    private readonly limits: GenerationLimits,
    /** When the request arrived (its time to first token includes waiting for admission). */
    private readonly started: number,
  ) {
    this.maxTokens = limits.maxTokens ?? 256;
    this.promptTokens = prompt.length;
    this.stopMatcher = new StopMatcher(limits.stop ?? []);
    this.textDecoder = new TextStreamDecoder(tokenizer);
    this.segments = new ThinkingSegments(thinkingTagTokens(tokenizer, limits.thinkingTags), prompt);
    const onBoundary = limits.recordBoundaries ? (record: BoundaryRecord) => this.boundaries.push(record) : undefined;
    this.controller = thinkingControllerFor(tokenizer, prompt, { ...limits, onBoundary });
    if (limits.logprobs !== undefined) {
      checkTopLogprobs(limits.logprobs);
      if (limits.maxThinkingTokens !== undefined || limits.exitThresholds !== undefined) {
        throw new Error('logprobs cannot be combined with a thinking budget or early exit: the closing tokens they insert have no probability under the model');
      }
    }
  }

  /** Whether `push` needs the logits row of every token (the early-exit policy or `logprobs` reads them). */
  get needsLogits(): boolean {
    return (this.controller?.needsLogits ?? false) || this.limits.logprobs !== undefined;
  }

  /** What the thinking controller's probe rule asks of this step's tree (undefined: nothing). */
  planProbe(tree: TokenTree): ProbePlan | undefined {
    return this.controller?.planProbe(tree);
  }

  /** A planned probe was verified and its boundary accepted: the controller reads its score. */
  probed(probe: PlannedProbe, score: ProbeScore): void {
    this.controller?.probed(probe, score);
  }

  get tokenCount(): number {
    return this.generated.length;
  }

  /** Whether the request wants any token at all (maxTokens 0 ends before the prompt is evaluated). */
  get wantsTokens(): boolean {
    return this.maxTokens > 0;
  }

  /**
   * Takes the tokens a step emitted (the first token counts as the prompt's step), with the
   * logits row that chose each (`rowOf(i)`, read only when `needsLogits`). Returns the chunk to
   * stream, if any, why generation ends when it does, and what the thinking controller forced:
   * the loop then keeps only the kept tokens and evaluates the forced ones before decoding on.
   */
  push(
    tokens: readonly number[],
    draftedBy: readonly (string | null)[],
    rowOf?: (index: number) => Float32Array,
  ): { chunk?: GenerationChunk; stopReason?: StopReason; forced?: ForcedTokens } {
    if (this.firstTokenAt === undefined) this.firstTokenAt = performance.now();
    else this.steps++;
    const controlled = this.controller ? applyController(this.controller, tokens, rowOf) : { tokens, keptFromStep: tokens.length };
    const drafted = [...draftedBy.slice(0, controlled.keptFromStep), ...new Array<null>(controlled.tokens.length - controlled.keptFromStep).fill(null)];
    const accepted = acceptTokens(controlled.tokens, this.maxTokens - this.generated.length, this.tokenizer, this.limits.ignoreEos ?? false);
    this.generated.push(...accepted.tokens);
    let raw = '';
    for (const [i, token] of accepted.tokens.entries()) {
      const tokenText = this.textDecoder.push([token]);
      this.segments.push(token, tokenText, i === controlled.forcedAt ? controlled.reason : undefined);
      raw += tokenText;
    }
    const piece = this.stopMatcher.push(raw);
    const chunk =
      accepted.tokens.length > 0 || piece.text
        ? this.chunk(piece.text, accepted.tokens, drafted.slice(0, accepted.tokens.length), this.logprobsOf(accepted.tokens, rowOf))
        : undefined;
    if (piece.stopped) return { chunk, stopReason: 'stop' };
    if (accepted.endOfGeneration) return { chunk, stopReason: 'eos' };
    if (this.generated.length >= this.maxTokens) return { chunk, stopReason: 'length' };
    if (controlled.forcedAt === undefined) return { chunk };
    return { chunk, forced: { keptFromStep: controlled.keptFromStep, tokens: controlled.tokens.slice(controlled.keptFromStep) } };
  }

  /** Ends the generation: text still held back, and the result. */
  finish(stopReason: StopReason, decoder: Pick<SequenceDecoder, 'timings' | 'speculation'>): { tail?: GenerationChunk; result: GenerationResult } {
    let tail: GenerationChunk | undefined;
    if (stopReason !== 'stop') {
      const released = this.textDecoder.flush();
      this.segments.pushText(released);
      const text = this.stopMatcher.push(released).text + this.stopMatcher.flush();
      if (text) tail = this.chunk(text, [], []);
    }
    const stats = this.stats(decoder, stopReason);
    const logprobs = this.limits.logprobs === undefined ? {} : { logprobs: this.logprobs };
    return { tail, result: { ...this.output, tokens: this.generated, stats, ...logprobs } };
  }

  /** A chunk of final text, split into thinking and answer, and added to the result's text. */
  private chunk(text: string, tokens: readonly number[], draftedBy: readonly (string | null)[], logprobs?: TokenLogprob[]): GenerationChunk {
    const split = this.segments.take(text);
    this.output.text += text;
    this.output.reasoning += split.reasoning;
    this.output.content += split.content;
    const chunk: GenerationChunk = { tokens, text, ...split, draftedBy };
    if (this.limits.tokenPieces) chunk.pieces = tokens.map((token) => this.tokenizer.detokenize([token]));
    if (logprobs) {
      chunk.logprobs = logprobs;
      this.logprobs.push(...logprobs);
    }
    return chunk;
  }

  /** Token i was chosen by the row `rowOf(i)` (no controller can have inserted tokens: see the constructor). */
  private logprobsOf(tokens: readonly number[], rowOf: ((index: number) => Float32Array) | undefined): TokenLogprob[] | undefined {
    const top = this.limits.logprobs;
    if (top === undefined) return undefined;
    if (!rowOf) throw new Error('logprobs need the logits row of every token');
    return tokens.map((token, i) => tokenLogprob(this.tokenizer, rowOf(i), token, top));
  }

  private stats(decoder: Pick<SequenceDecoder, 'timings' | 'speculation'>, stopReason: StopReason): GenerationStats {
    const now = performance.now();
    const firstTokenAt = this.firstTokenAt ?? now;
    const prefillMs = decoder.timings.prefillMs;
    const decodeMs = now - firstTokenAt;
    const generatedTokens = this.generated.length;
    const thinkingEnd = this.segments.thinkingEnd;
    return {
      promptTokens: this.promptTokens,
      cachedPromptTokens: this.cachedPromptTokens,
      generatedTokens,
      steps: this.steps,
      timeToFirstTokenMs: firstTokenAt - this.started,
      prefillMs,
      prefillTokensPerSecond: prefillMs > 0 ? (this.promptTokens / prefillMs) * 1000 : 0,
      decodeMs,
      decodeTokensPerSecond: decodeMs > 0 && generatedTokens > 1 ? ((generatedTokens - 1) / decodeMs) * 1000 : 0,
      totalMs: now - this.started,
      timings: { ...decoder.timings },
      speculation: decoder.speculation,
      stopReason,
      thinkingTokens: this.segments.thinkingTokens,
      ...(thinkingEnd ? { thinkingEnd } : {}),
      ...(this.limits.recordBoundaries ? { boundaries: this.boundaries } : {}),
      ...(this.limits.exitThresholds?.probe ? { answerProbes: this.controller?.probeCount ?? 0 } : {}),
    };
  }
}

interface ControlledTokens {
  tokens: readonly number[];
  /** How many of the step's own tokens are kept (the rest were cut by the controller). */
  keptFromStep: number;
  /** Index in `tokens` of the closing tag the controller forced, and who forced it. */
  forcedAt?: number;
  reason?: ForcedThinkingEnd;
}

/** Shows the step's tokens to the controller in order; an intervention cuts them and appends what it forces. */
function applyController(controller: ThinkingController, tokens: readonly number[], rowOf: ((index: number) => Float32Array) | undefined): ControlledTokens {
  for (const [i, token] of tokens.entries()) {
    const intervention = controller.onEmitted(token, controller.needsLogits ? rowOf?.(i) : undefined);
    if (!intervention) continue;
    const kept = tokens.slice(0, intervention.dropEmitted ? i : i + 1);
    return { tokens: [...kept, ...intervention.force], keptFromStep: kept.length, forcedAt: kept.length, reason: intervention.reason };
  }
  return { tokens, keptFromStep: tokens.length };
}

/** Takes tokens up to the limit and up to (excluding) an end-of-generation token. */
function acceptTokens(tokens: readonly number[], limit: number, tokenizer: Tokenizer, ignoreEos: boolean) {
  const taken: number[] = [];
  for (const token of tokens) {
    if (taken.length >= limit) break;
    if (!ignoreEos && tokenizer.isEndOfGeneration(token)) return { tokens: taken, endOfGeneration: true };
    taken.push(token);
  }
  return { tokens: taken, endOfGeneration: false };
}

/** Runs a generation to the end and returns its result. */
export async function generateAll(iterator: AsyncGenerator<GenerationChunk, GenerationResult, void>): Promise<GenerationResult> {
  for (;;) {
    const step = await iterator.next();
    if (step.done) return step.value;
  }
}
