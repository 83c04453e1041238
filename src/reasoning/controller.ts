/**
 * The thinking controller: one per sequence, called by the generation loop for every emitted
 * token with the logits row that chose it. It counts thinking tokens, enforces the hard budget
 * and, when a request asks for an effort level, runs the early-exit policy at step boundaries.
 *
 * The loop acts on what it returns: tokens to decode next as if they extended the prompt (the
 * closing tag and an optional message), and possibly the instruction to drop the token it just
 * passed. That second part is what makes "exit only at a boundary" exact: the signals of a
 * boundary live in the logits row *after* it (p(close tag) is the chance that the next line is
 * the answer), and that row is the one that chose the next token. An exit decided there replaces
 * that token with the closing tag, so the thinking ends with the boundary itself. In plain
 * decoding, and after the last token of a speculative step, the dropped token is the pending one
 * (not yet in the KV cache), so dropping it costs nothing.
 *
 * With a probe rule, the loop also asks it before each step what the step's tree must carry (an
 * answer probe from a boundary) and leave out (`planProbe`), and hands it the probe's score when
 * the accepted path passed that boundary (`probed`), before the tokens after it are emitted.
 */
import { TextStreamDecoder, type Tokenizer } from '../llama/tokenizer.js';
import { ROOT, type TokenTree } from '../speculative/tree.js';
import { lastConcludedResult } from './answers.js';
import { probedAnswer, probeRequestSync, type ProbeRequest, type ProbeScore } from './probe.js';
import { endsInsideThinking, thinkingTagTokens, type ForcedThinkingEnd, type ThinkingTagTokens, type ThinkingTags } from './segments.js';
import { boundarySignals, type BoundarySignals } from './signals.js';
import { Ewma } from '../stats.js';

export type ReasoningEffort = 'low' | 'medium' | 'high';

export const REASONING_EFFORTS: readonly ReasoningEffort[] = ['low', 'medium', 'high'];

/** What a request can ask of the thinking (all optional; GenerationLimits carries them). */
export interface ThinkingLimits {
  /** Tags of the model's thinking section; default `<think>`/`</think>` when the model has them as tokens. */
  thinkingTags?: ThinkingTags;
  /** Hard budget: at this many thinking tokens the engine closes the thinking and lets the model answer. */
  maxThinkingTokens?: number;
  /** Text decoded after the closing tag when the engine (budget or early exit) ends the thinking. */
  thinkingExitMessage?: string;
  /** Strings that end a step of thinking (early exit happens only right after one); default a newline. */
  thinkingBoundaries?: readonly string[];
  /**
   * Early exit at the preset thresholds of this level for the model (changes outputs, so it runs
   * only when asked). Resolved into `exitThresholds` by `withReasoningPresets`.
   */
  reasoningEffort?: ReasoningEffort;
  /** Early exit at these thresholds (what `reasoningEffort` resolves to). */
  exitThresholds?: ExitThresholds;
  /** Return every step boundary inside the thinking, with its signals, in the stats (calibration, benchmarks). */
  recordBoundaries?: boolean;
}

/** Thresholds of the early-exit policy (see `ExitPolicy.decide`); fitted per model by `tachyon calibrate reasoning`. */
export interface ExitThresholds {
  /** No early exit before this many thinking tokens. */
  minThinkingTokens: number;
  /** EWMA factor of the boundary signals (1 = the latest boundary alone). */
  alpha: number;
  /** Exit when the smoothed p(close tag) at a boundary reaches this (above 1: never on this signal alone). */
  endProbability: number;
  /**
   * Exit when the answer the thinking concludes has been the same this many times in a row
   * (Dynasor-style agreement; 0: never on this signal) …
   */
  agreement: number;
  /** … and the smoothed margin log p(top) − log p(close tag) is at most this (Infinity: any). */
  maxEndMargin: number;
  /** Answer probes riding the verification trees (absent: the policy never probes). */
  probe?: ProbeThresholds;
}

/**
 * The probe rule: a probe is due at a boundary once `every` thinking tokens have passed since the
 * last one (and the minimum thinking length), if the thinking has concluded a result to probe.
 * Exit where a probe shows the model's answer with at least `confidence`, and the last
 * `agreement` probes showed that same answer (Dynasor-style agreement of probed answers).
 */
export interface ProbeThresholds {
  every: number;
  confidence: number;
  agreement: number;
}

/** Whether a probe is due at a boundary with `thinkingTokens`, the last probe having been at `lastProbeAt`. */
export function probeDue(thresholds: ExitThresholds, thinkingTokens: number, lastProbeAt: number): boolean {
  const rule = thresholds.probe;
  return rule !== undefined && thinkingTokens >= thresholds.minThinkingTokens && thinkingTokens - lastProbeAt >= rule.every;
}

/** What a probe showed at one boundary. */
export interface BoundaryProbe {
  /** The answer the model gives when cut there (undefined: the probe did not show it whole). */
  answer: string | undefined;
  /** Geometric mean of the target's probabilities of the probed answer's tokens. */
  confidence: number;
}

/** A probe the policy wants verified in this step's tree: a branch from `node`, a boundary. */
export interface PlannedProbe {
  node: number;
  request: ProbeRequest;
  /** The answer probed: the result the thinking had concluded by that boundary. */
  candidate: string;
  /** Thinking tokens up to and including the boundary. */
  thinkingTokens: number;
}

/** What a step's tree must carry and leave out for the probe rule (see `ThinkingController.planProbe`). */
export interface ProbePlan {
  probe: PlannedProbe | undefined;
  /** Nodes of the tree not to verify, with everything below them. */
  cut: readonly number[];
}

/** What the loop must do after `onEmitted` returned it. */
export interface ThinkingIntervention {
  /** Drop the token just passed to `onEmitted` (it was not emitted; the forced tokens take its place). */
  dropEmitted: boolean;
  /** Tokens to decode next like a prompt extension: the closing tag, then the configured message. */
  force: readonly number[];
  reason: ForcedThinkingEnd;
}

/** One step boundary inside the thinking, as the controller saw it (for calibration and benchmarks). */
export interface BoundaryRecord extends BoundarySignals {
  /** Thinking tokens before the boundary's next token. */
  thinkingTokens: number;
  /** Prompt + generated tokens up to and including the boundary token. */
  sequenceLength: number;
  /** Smoothed signals up to and including this boundary. */
  smoothedEndProbability: number;
  smoothedEndMargin: number;
  /** The answer the thinking had concluded so far (undefined: none yet). */
  concluded: string | undefined;
  /** How many conclusions in a row, ending with the latest, gave `concluded`. */
  agreement: number;
  /** The probe verified at this boundary, if any. */
  probe?: BoundaryProbe;
  /** How many probes in a row, ending with this boundary's, showed its answer (0: no answer probed here). */
  probeAgreement: number;
}

export interface ThinkingControllerOptions {
  tags: ThinkingTagTokens;
  /** Tokens that end a step of thinking (the testbed's: the newline token). */
  boundaryTokens: ReadonlySet<number>;
  /** Hard budget of thinking tokens (tags excluded). */
  maxThinkingTokens?: number;
  /** Tokens decoded after the closing tag when the engine ends the thinking. */
  exitMessage?: readonly number[];
  /** Early-exit policy; absent: thinking ends naturally or at the budget only. */
  thresholds?: ExitThresholds;
  onBoundary?: (boundary: BoundaryRecord) => void;
}

export class ThinkingController {
  private thinking: boolean;
  private thinkingTokenCount = 0;
  private afterBoundary = false;
  private readonly textDecoder: TextStreamDecoder;
  private thinkingText = '';
  private lineStart = 0;
  private readonly conclusions: string[] = [];
  private readonly endProbability: Ewma | undefined;
  private readonly endMargin: Ewma | undefined;
  /** Tokens of the sequence so far (prompt + emitted). */
  private sequenceLength: number;
  /** Answers shown by the probes so far, in order (undefined: that probe showed none). */
  private readonly probedAnswers: (string | undefined)[] = [];
  private lastProbe: (BoundaryProbe & { thinkingTokens: number }) | undefined;
  /** The token that ends a probed answer (the testbed's "."), when the policy probes. */
  private readonly answerEnd: number | undefined;

  constructor(
    private readonly tokenizer: Tokenizer,
    prompt: readonly number[],
    private readonly options: ThinkingControllerOptions,
  ) {
    this.thinking = endsInsideThinking(prompt, options.tags);
    this.sequenceLength = prompt.length;
    this.textDecoder = new TextStreamDecoder(tokenizer);
    if (options.maxThinkingTokens !== undefined && !(Number.isInteger(options.maxThinkingTokens) && options.maxThinkingTokens >= 0)) {
      throw new RangeError(`maxThinkingTokens must be a non-negative integer, got ${options.maxThinkingTokens}`);
    }
    if (options.thresholds) {
      this.endProbability = new Ewma(options.thresholds.alpha);
      this.endMargin = new Ewma(options.thresholds.alpha);
    }
    if (options.thresholds?.probe) this.answerEnd = this.tokenize('.')[0];
  }

  /** Whether the policy needs the logits rows (the budget alone does not). */
  get needsLogits(): boolean {
    return this.options.thresholds !== undefined || this.options.onBoundary !== undefined;
  }

  get inThinking(): boolean {
    return this.thinking;
  }

  /**
   * Called for every emitted token, in order, with the logits row that chose it (a view valid
   * only during the call; undefined when the decoder cannot provide it and `needsLogits` is false).
   */
  onEmitted(token: number, logits: Float32Array | undefined): ThinkingIntervention | undefined {
    const intervention = this.control(token, logits);
    this.sequenceLength += intervention ? (intervention.dropEmitted ? 0 : 1) + intervention.force.length : 1;
    return intervention;
  }

  private control(token: number, logits: Float32Array | undefined): ThinkingIntervention | undefined {
    const { tags } = this.options;
    if (!this.thinking) {
      if (token === tags.open) this.startThinking();
      return undefined;
    }
    if (token === tags.close) {
      this.thinking = false;
      return undefined;
    }
    if (this.afterBoundary && logits && this.atBoundary(logits)) return this.exit('early-exit', true);
    if (this.thinkingTokenCount >= (this.options.maxThinkingTokens ?? Infinity)) return this.exit('budget', true);
    this.thinkingTokenCount++;
    this.appendText(token);
    this.afterBoundary = this.options.boundaryTokens.has(token);
    if (this.thinkingTokenCount >= (this.options.maxThinkingTokens ?? Infinity)) return this.exit('budget', false);
    return undefined;
  }

  /** Probes so far. */
  get probeCount(): number {
    return this.probedAnswers.length;
  }

  /**
   * What this step's tree must do for the probe rule, if the policy probes:
   * - `probe`: the probe it carries, from the first boundary along the tree's likeliest chain (its
   *   root, the pending token, included) where a probe is due and the thinking has concluded a
   *   result: the earliest such node is the likeliest to be accepted;
   * - `cut`: every other node where a probe would be due (on any path, counting the carried probe
   *   as made), which the step must not verify. Exit decisions then never depend on how the
   *   tree was drafted: the accepted path never passes a boundary where plain decoding would
   *   probe without probing there, and a boundary cut here comes back as a later step's root.
   */
  planProbe(tree: TokenTree): ProbePlan | undefined {
    const thresholds = this.options.thresholds;
    if (!thresholds?.probe || !this.thinking) return undefined;
    const { tags, boundaryTokens } = this.options;
    let probe: PlannedProbe | undefined;
    const cut: number[] = [];
    // `text`: the lines since the last complete one emitted (whose conclusions are counted), down to `node`.
    const visit = (node: number, text: string, lastProbeAt: number, onLikeliestChain: boolean): void => {
      const boundary = node === ROOT ? this.afterBoundary : boundaryTokens.has(tree.token(node));
      const thinkingTokens = this.thinkingTokenCount + tree.depth(node);
      const candidate = boundary ? this.dueCandidate(thresholds, thinkingTokens, lastProbeAt, text) : undefined;
      if (candidate !== undefined) {
        if (!onLikeliestChain || probe) {
          cut.push(node);
          return;
        }
        probe = { node, candidate, thinkingTokens, request: probeRequestSync((t) => this.tokenize(t), tags, candidate) };
        lastProbeAt = thinkingTokens;
      }
      const chainChild = onLikeliestChain ? likeliestChild(tree, node) : -1;
      for (const child of tree.children(node)) {
        const token = tree.token(child);
        if (token !== tags.close && token !== tags.open) visit(child, text + this.tokenizer.detokenize([token]), lastProbeAt, child === chainChild);
      }
    };
    visit(ROOT, this.thinkingText.slice(this.lineStart), this.lastProbe?.thinkingTokens ?? -Infinity, true);
    return { probe, cut };
  }

  /** The answer to probe at a boundary with `thinkingTokens` after `text` (the lines since the last counted one), if a probe is due there. */
  private dueCandidate(thresholds: ExitThresholds, thinkingTokens: number, lastProbeAt: number, text: string): string | undefined {
    if (!probeDue(thresholds, thinkingTokens, lastProbeAt)) return undefined;
    return lastConcludedResult(text) ?? this.conclusions.at(-1);
  }

  /** The probe was verified and the accepted path passed its boundary: its score counts there. */
  probed(probe: PlannedProbe, score: ProbeScore): void {
    const answer = probedAnswer(score, probe.candidate, this.answerEnd!);
    this.probedAnswers.push(answer);
    this.lastProbe = { answer, confidence: score.confidence, thinkingTokens: probe.thinkingTokens };
  }

  private tokenize(text: string): number[] {
    return this.tokenizer.tokenize(text, { addSpecial: false });
  }

  private startThinking(): void {
    this.thinking = true;
    this.afterBoundary = false;
  }

  /** Records the boundary just passed (its signals are in `logits`); true when the policy exits here. */
  private atBoundary(logits: Float32Array): boolean {
    const signals = boundarySignals(logits, this.options.tags.close);
    const smoothedEndProbability = this.endProbability?.push(signals.endProbability) ?? signals.endProbability;
    const smoothedEndMargin = this.endMargin?.push(signals.endMargin) ?? signals.endMargin;
    const probe = this.lastProbe?.thinkingTokens === this.thinkingTokenCount ? this.lastProbe : undefined;
    const record: BoundaryRecord = {
      ...signals,
      thinkingTokens: this.thinkingTokenCount,
      sequenceLength: this.sequenceLength,
      smoothedEndProbability,
      smoothedEndMargin,
      concluded: this.conclusions.at(-1),
      agreement: trailingAgreement(this.conclusions),
      ...(probe ? { probe: { answer: probe.answer, confidence: probe.confidence } } : {}),
      probeAgreement: probe ? probeAgreement(this.probedAnswers) : 0,
    };
    this.options.onBoundary?.(record);
    return this.options.thresholds !== undefined && shouldExit(record, this.options.thresholds);
  }

  private exit(reason: ForcedThinkingEnd, dropEmitted: boolean): ThinkingIntervention {
    this.thinking = false;
    return { dropEmitted, force: [this.options.tags.close, ...(this.options.exitMessage ?? [])], reason };
  }

  /** Keeps the thinking text, and notes a conclusion whenever a line that concludes one is complete. */
  private appendText(token: number): void {
    this.thinkingText += this.textDecoder.push([token]);
    const lineEnd = this.thinkingText.lastIndexOf('\n');
    if (lineEnd < this.lineStart) return;
    const concluded = lastConcludedResult(this.thinkingText.slice(this.lineStart, lineEnd + 1));
    if (concluded !== undefined) this.conclusions.push(concluded);
    this.lineStart = lineEnd + 1;
  }
}

/**
 * The controller a request asks for, or undefined when it asks for nothing (then generation is
 * exactly what it was without one). Budget and early exit need a model with thinking tags.
 */
export function thinkingControllerFor(
  tokenizer: Tokenizer,
  prompt: readonly number[],
  limits: ThinkingLimits & { onBoundary?: (boundary: BoundaryRecord) => void },
): ThinkingController | undefined {
  if (limits.reasoningEffort !== undefined && limits.exitThresholds === undefined) {
    throw new Error(`reasoningEffort '${limits.reasoningEffort}' was not resolved to this model's thresholds (withReasoningPresets)`);
  }
  if (limits.maxThinkingTokens === undefined && limits.exitThresholds === undefined && !limits.onBoundary) return undefined;
  const tags = thinkingTagTokens(tokenizer, limits.thinkingTags);
  if (!tags) throw new Error('a thinking budget or early exit needs a model with thinking tags (<think> and </think> as tokens, or thinkingTags)');
  return new ThinkingController(tokenizer, prompt, {
    tags,
    boundaryTokens: boundaryTokens(tokenizer, limits.thinkingBoundaries ?? ['\n']),
    maxThinkingTokens: limits.maxThinkingTokens,
    exitMessage: limits.thinkingExitMessage ? tokenizer.tokenize(limits.thinkingExitMessage, { addSpecial: false }) : [],
    thresholds: limits.exitThresholds,
    onBoundary: limits.onBoundary,
  });
}

const boundaryCache = new WeakMap<Tokenizer, Map<string, ReadonlySet<number>>>();

/** Every token whose text ends with one of the delimiters (a newline may be merged into a longer piece). */
export function boundaryTokens(tokenizer: Tokenizer, delimiters: readonly string[]): ReadonlySet<number> {
  if (delimiters.length === 0 || delimiters.some((d) => d.length === 0)) throw new Error('thinking boundaries must be non-empty strings');
  const key = JSON.stringify(delimiters);
  const cached = boundaryCache.get(tokenizer)?.get(key);
  if (cached) return cached;
  const decoder = new TextDecoder('utf-8', { fatal: false });
  const tokens = new Set<number>();
  for (let token = 0; token < tokenizer.vocabularySize; token++) {
    const text = decoder.decode(tokenizer.pieceBytes(token));
    if (delimiters.some((d) => text.endsWith(d))) tokens.add(token);
  }
  if (!boundaryCache.has(tokenizer)) boundaryCache.set(tokenizer, new Map());
  boundaryCache.get(tokenizer)!.set(key, tokens);
  return tokens;
}

/** How many probes in a row, ending with the last, showed its answer (0 when the last showed none). */
export function probeAgreement(answers: readonly (string | undefined)[]): number {
  return answers.at(-1) === undefined ? 0 : trailingAgreement(answers);
}

/** How many entries at the end of `values` equal the last one. */
export function trailingAgreement<T>(values: readonly T[]): number {
  let count = 0;
  for (let i = values.length - 1; i >= 0 && values[i] === values[values.length - 1]; i--) count++;
  return count;
}

/**
 * The policy at one boundary: after the minimum thinking length, exit when the model itself leans
 * towards closing (smoothed p(close tag)), when its conclusions have agreed often enough while
 * the close tag is within the margin, or when a probe here showed a sure answer that the probes
 * before it agree with.
 */
export function shouldExit(boundary: BoundaryRecord, thresholds: ExitThresholds): boolean {
  if (boundary.thinkingTokens < thresholds.minThinkingTokens) return false;
  if (boundary.smoothedEndProbability >= thresholds.endProbability) return true;
  if (thresholds.agreement > 0 && boundary.agreement >= thresholds.agreement && boundary.smoothedEndMargin <= thresholds.maxEndMargin) return true;
  const rule = thresholds.probe;
  return rule !== undefined && boundary.probe !== undefined && boundary.probe.confidence >= rule.confidence && boundary.probeAgreement >= Math.max(1, rule.agreement);
}

/** The child of `node` with the highest score (−1: a leaf). */
function likeliestChild(tree: TokenTree, node: number): number {
  let best = -1;
  for (const child of tree.children(node)) if (best < 0 || tree.score(child) > tree.score(best)) best = child;
  return best;
}
