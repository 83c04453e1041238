/**
 * The generation loop: an async iterator of tokens and text over any Decoder, with stop strings,
 * end-of-generation tokens, a token limit, an AbortSignal and per-request statistics.
 */
import type { Tokenizer } from '../llama/tokenizer.js';
import { TextStreamDecoder } from '../llama/tokenizer.js';
import type { Decoder, DecoderTimings } from './decoder.js';
import type { SpeculationStats } from '../speculative/decoder.js';
import { StopMatcher } from './stop.js';
import { ThinkingSegments, thinkingTagTokens, type ForcedThinkingEnd, type ThinkingEnd } from '../reasoning/segments.js';
import { thinkingControllerFor, type BoundaryRecord, type ThinkingController, type ThinkingLimits } from '../reasoning/controller.js';

export type StopReason = 'eos' | 'stop' | 'length' | 'abort' | 'context';

export interface GenerationLimits extends ThinkingLimits {
  /** Most tokens to generate; default 256. */
  maxTokens?: number;
  /** Generation ends before the first of these strings; it is not part of the text. */
  stop?: readonly string[];
  /** Keep going past end-of-generation tokens. */
  ignoreEos?: boolean;
  signal?: AbortSignal;
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
}

export interface GenerationStats {
  promptTokens: number;
  generatedTokens: number;
  /** Decoder steps after the first token (each one target decode). */
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
}

export interface GenerationResult {
  text: string;
  reasoning: string;
  content: string;
  tokens: number[];
  stats: GenerationStats;
}

export async function* generate(
  decoder: Decoder,
  tokenizer: Tokenizer,
  prompt: readonly number[],
  limits: GenerationLimits = {},
): AsyncGenerator<GenerationChunk, GenerationResult, void> {
  const maxTokens = limits.maxTokens ?? 256;
  const stopMatcher = new StopMatcher(limits.stop ?? []);
  const textDecoder = new TextStreamDecoder(tokenizer);
  const segments = new ThinkingSegments(thinkingTagTokens(tokenizer, limits.thinkingTags), prompt);
  const boundaries: BoundaryRecord[] = [];
  const onBoundary = limits.recordBoundaries ? (record: BoundaryRecord) => boundaries.push(record) : undefined;
  const controller = thinkingControllerFor(tokenizer, prompt, { ...limits, onBoundary });
  if (controller?.needsLogits && !decoder.emittedLogits) {
    throw new Error(`early exit reads the logits row of every emitted token, which the ${decoder.name} decoder does not expose; use speculation 'off'`);
  }
  const sequence = [...prompt];
  const generated: number[] = [];
  const output = { text: '', reasoning: '', content: '' };
  const started = performance.now();
  let steps = 0;
  let stopReason: StopReason = 'length';

  let next: readonly number[] = maxTokens > 0 ? [await decoder.prefill(prompt)] : [];
  const firstTokenAt = performance.now();
  while (next.length > 0) {
    const controlled = controller ? applyController(controller, decoder, next) : { tokens: next, keptFromStep: next.length };
    // The decoder's KV holds the sequence and every token of this step but the last (pending) one.
    const kvLength = sequence.length + Math.min(controlled.keptFromStep, next.length - 1);
    const accepted = acceptTokens(controlled.tokens, maxTokens - generated.length, tokenizer, limits.ignoreEos ?? false);
    generated.push(...accepted.tokens);
    sequence.push(...accepted.tokens);
    let raw = '';
    for (const [i, token] of accepted.tokens.entries()) {
      const tokenText = textDecoder.push([token]);
      segments.push(token, tokenText, i === controlled.forcedAt ? controlled.reason : undefined);
      raw += tokenText;
    }
    const piece = stopMatcher.push(raw);
    const chunk = { tokens: accepted.tokens, text: piece.text, ...segments.take(piece.text) };
    appendChunk(output, chunk);
    if (accepted.tokens.length > 0 || piece.text) yield chunk;
    if (piece.stopped) {
      stopReason = 'stop';
      break;
    }
    if (accepted.endOfGeneration) {
      stopReason = 'eos';
      break;
    }
    if (generated.length >= maxTokens) break;
    if (limits.signal?.aborted) {
      stopReason = 'abort';
      break;
    }
    if (decoder.room(sequence.length) <= 0) {
      stopReason = 'context';
      break;
    }
    next = controlled.forcedAt === undefined ? await decoder.step(sequence) : [await extendSequence(decoder, sequence, kvLength)];
    steps++;
  }
  if (stopReason !== 'stop') {
    const released = textDecoder.flush();
    segments.pushText(released);
    const tail = stopMatcher.push(released).text + stopMatcher.flush();
    const chunk = { tokens: [], text: tail, ...segments.take(tail) };
    appendChunk(output, chunk);
    if (tail) yield chunk;
  }
  const stats = collectStats(decoder, prompt.length, generated.length, steps, started, firstTokenAt, stopReason);
  return { ...output, tokens: generated, stats: { ...stats, thinkingTokens: segments.thinkingTokens, ...thinkingEndField(segments.thinkingEnd), ...(onBoundary ? { boundaries } : {}) } };
}

function appendChunk(output: { text: string; reasoning: string; content: string }, chunk: GenerationChunk): void {
  output.text += chunk.text;
  output.reasoning += chunk.reasoning;
  output.content += chunk.content;
}

/** The optional stats field, left out (not undefined) when there was no thinking. */
function thinkingEndField(end: ThinkingEnd | undefined): { thinkingEnd?: ThinkingEnd } {
  return end ? { thinkingEnd: end } : {};
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
function applyController(controller: ThinkingController, decoder: Decoder, tokens: readonly number[]): ControlledTokens {
  for (const [i, token] of tokens.entries()) {
    const intervention = controller.onEmitted(token, controller.needsLogits ? decoder.emittedLogits?.(i) : undefined);
    if (!intervention) continue;
    const kept = tokens.slice(0, intervention.dropEmitted ? i : i + 1);
    return { tokens: [...kept, ...intervention.force], keptFromStep: kept.length, forcedAt: kept.length, reason: intervention.reason };
  }
  return { tokens, keptFromStep: tokens.length };
}

/** Decodes forced tokens like a prompt extension (a decoder without `extend` evaluates the whole sequence again). */
function extendSequence(decoder: Decoder, sequence: readonly number[], kvLength: number): Promise<number> {
  return decoder.extend ? decoder.extend(sequence, kvLength) : decoder.prefill(sequence);
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

function collectStats(
  decoder: Decoder,
  promptTokens: number,
  generatedTokens: number,
  steps: number,
  started: number,
  firstTokenAt: number,
  stopReason: StopReason,
): Omit<GenerationStats, 'thinkingTokens' | 'thinkingEnd'> {
  const now = performance.now();
  const prefillMs = decoder.timings.prefillMs;
  const decodeMs = now - firstTokenAt;
  return {
    promptTokens,
    generatedTokens,
    steps,
    timeToFirstTokenMs: firstTokenAt - started,
    prefillMs,
    prefillTokensPerSecond: prefillMs > 0 ? (promptTokens / prefillMs) * 1000 : 0,
    decodeMs,
    decodeTokensPerSecond: decodeMs > 0 && generatedTokens > 1 ? ((generatedTokens - 1) / decodeMs) * 1000 : 0,
    totalMs: now - started,
    timings: { ...decoder.timings },
    speculation: decoder.speculation,
    stopReason,
  };
}

/** Runs a generation to the end and returns its result. */
export async function generateAll(iterator: AsyncGenerator<GenerationChunk, GenerationResult, void>): Promise<GenerationResult> {
  for (;;) {
    const step = await iterator.next();
    if (step.done) return step.value;
  }
}
