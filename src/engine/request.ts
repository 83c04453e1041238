/** One request inside the engine loop: its tokens, where its KV stands, its decoder and its output. */
import { emptyTimings, type SequenceDecoder } from '../generate/decoder.js';
import type { GenerationChunk, GenerationLimits, GenerationOutput, GenerationResult, StopReason } from '../generate/generate.js';
import type { SamplingOptions, TokenConstraint } from '../generate/sampling.js';
import type { SpeculationMode } from '../speculative/speculation.js';
import type { PrefixMatch } from '../kvcache/prefix-cache.js';
import type { TreeShape } from '../speculative/tree.js';

/** What a request asks for (everything but the prompt); plain data, so it can cross threads. */
export interface RequestOptions extends SamplingOptions, Omit<GenerationLimits, 'signal'> {
  /** Speculative decoding: `auto` (default) lets the engine pick drafters and tree size; `off` decodes plainly. */
  speculation?: SpeculationMode;
  /**
   * Tenant isolation: requests with different salts share no cached KV blocks and no drafting
   * history (whose speed would otherwise tell one tenant what another generated).
   */
  cacheSalt?: string;
  /**
   * A GBNF grammar (start symbol `root`) the generated text must follow, e.g. jsonSchemaGrammar's
   * (src/generate/json-grammar.ts). Tokens are chosen among those it allows, exactly as without
   * it otherwise; speculation stays lossless (drafts it forbids are rejected). Not with a
   * thinking budget or early exit, whose inserted tokens the grammar would not allow.
   */
  grammar?: string;
  /** Diagnostics: the result lists the tree each step verified (`verifiedTrees`), to evaluate the output again in the same batches. */
  recordTrees?: boolean;
}

/** What the loop tells a request's consumer. */
export type RequestEvent =
  | { type: 'chunk'; chunk: GenerationChunk }
  | { type: 'done'; result: GenerationResult }
  | { type: 'error'; error: unknown };

export type RequestSink = (event: RequestEvent) => void;

export type RequestState = 'waiting' | 'prefilling' | 'decoding' | 'finished';

export class Request {
  state: RequestState = 'waiting';
  /** Its sequence id while it holds one (kept through preemption: its drafters' KV follows it). */
  seq: number | undefined;
  decoder: SequenceDecoder | undefined;
  /** Prompt + emitted tokens; while decoding, the last one is pending (not in the KV cache yet). */
  readonly sequence: number[];
  /** Tokens of `sequence` whose KV is in the context (the KV cells this request occupies). */
  cached = 0;
  /** Leading cells that may also belong to another request's sequence (shared at admission): KV compaction leaves them in place. */
  sharedPrefix = 0;
  /** Set after a preemption: the prompt's logits are not needed again (the pending token is known). */
  resuming = false;
  cancelled = false;
  /** Admission order (the newest is preempted first). */
  admittedAt = 0;
  /**
   * The cached prefix of what it will evaluate: pending while the tiers are asked (it is not
   * admitted before the answer), undefined without a cache or once restored.
   */
  prefix: { ready: false } | { ready: true; match: PrefixMatch } | undefined;
  /** Its grammar (for the answer after any thinking), compiled at submission, freed when it ends. */
  grammar: TokenConstraint | undefined;
  /** The tree each step verified, when the request asked to `recordTrees`. */
  readonly verifiedTrees: TreeShape[] | undefined;

  constructor(
    readonly id: number,
    readonly prompt: readonly number[],
    readonly options: RequestOptions,
    readonly output: GenerationOutput,
    private readonly sink: RequestSink,
  ) {
    this.sequence = [...prompt];
    this.verifiedTrees = options.recordTrees ? [] : undefined;
  }

  /** Tokens still to evaluate before decoding starts (the prompt, or everything but the pending token after a preemption). */
  get prefillTarget(): number {
    return this.resuming ? this.sequence.length - 1 : this.prompt.length;
  }

  emit(chunk: GenerationChunk): void {
    this.sink({ type: 'chunk', chunk });
  }

  /** Ends the request with a result (the tail of held-back text first). */
  finish(stopReason: StopReason): void {
    this.state = 'finished';
    const decoder = this.decoder ?? { timings: emptyTimings(), speculation: undefined };
    const { tail, result } = this.output.finish(stopReason, decoder);
    if (tail) this.emit(tail);
    this.sink({ type: 'done', result: this.verifiedTrees ? { ...result, verifiedTrees: this.verifiedTrees } : result });
  }

  fail(error: unknown): void {
    this.state = 'finished';
    this.sink({ type: 'error', error });
  }
}
