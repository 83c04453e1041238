/**
 * The engine loop: one step at a time, for every request at once.
 *
 *   step = reap cancelled → admit / preempt → each decoding request proposes (its pending token or
 *          a token tree) → prompt chunks fill the rest of the batch → ONE llama_decode → each
 *          request accepts and emits → finished requests free their KV in the same step.
 *
 * The loop is mechanism (batches, KV ops, sequence ids); who runs is the Scheduler's, what to
 * verify is each request's decoder's, and nothing here knows about threads: the worker drives it,
 * and tests drive it in-process.
 */
import { TokenBatch } from '../llama/batch.js';
import { GrammarError } from '../llama/grammar.js';
import { grammarConstraint } from '../reasoning/answer-constraint.js';
import { thinkingTagTokens } from '../reasoning/segments.js';
import { evaluateTokens, type Context } from '../llama/context.js';
import type { Tokenizer } from '../llama/tokenizer.js';
import { checkPromptFits } from '../generate/decoder.js';
import { GenerationOutput, type ForcedTokens, type StopReason } from '../generate/generate.js';
import { ROOT, TokenTree, type TreeShape } from '../speculative/tree.js';
import { addProbeBranch, scoreProbe } from '../reasoning/probe.js';
import type { PlannedProbe } from '../reasoning/controller.js';
import { Sampler, type TokenConstraint } from '../generate/sampling.js';
import type { SpeculationMode } from '../speculative/speculation.js';
import type { DecodedStep, SequenceDecoder, StepLimits } from '../generate/decoder.js';
import { EngineDisposedError } from './errors.js';
import { Request, type RequestOptions, type RequestSink } from './request.js';
import { Scheduler } from './scheduler.js';
import { PrefillPacer } from './prefill-pacer.js';
import { SequenceIdPool } from './sequence-ids.js';
import { KvCompactor, type KvCompactionPolicy } from './kv-compaction.js';
import { addTreeNodes, dropTree, keepAcceptedPath, placeTree, releaseBorrowedIds, type PlacedTree } from './tree-kv.js';
import type { PrefixCache } from '../kvcache/prefix-cache.js';
import { commonPrefixLength } from '../token-sequences.js';
import type { StepPhase } from './step-phases.js';

export interface EngineLoopOptions {
  /** Requests running at once (default 8). */
  maxSequences?: number;
  /** Requests waiting for admission (default 64); more are refused with QueueFullError. */
  maxQueued?: number;
  /** Positions one request may use, prompt included (default: the context's size). */
  sequenceLength?: number;
  /** Most prompt tokens evaluated per step (default 256); fewer while other requests decode (see PrefillPacer). */
  prefillChunk?: number;
  /** A step that carries a prompt chunk may take this many times a decode-only step (default 2; see PrefillPacer). */
  prefillStretch?: number;
  /** Most nodes of one request's token tree (default 64). */
  maxTreeNodes?: number;
  /** When the requests' KV cells are moved back into runs (default DEFAULT_KV_COMPACTION; see KvCompactor). */
  kvCompaction?: KvCompactionPolicy;
}

export interface EngineStatus {
  running: number;
  waiting: number;
  kvCellsInUse: number;
  kvCells: number;
  /** Prompt tokens, since start, whose cells a new request shared from one already running (neither restored nor recomputed). */
  sharedPrefixTokens: number;
  /** Times the running requests' KV cells were moved into one run each (see KvCompactor). */
  kvCompactions: number;
  /** Seconds the loop's steps have spent, since start, admitting and scheduling requests (cache restores and KV compaction included). */
  schedulingSeconds: number;
  /** … drafting, planning and building the batch (draft-model decodes included). */
  batchingSeconds: number;
  /** … in the target's llama_decode. */
  decodingSeconds: number;
  /** … accepting and emitting tokens, freeing finished requests' KV and storing their blocks. */
  acceptingSeconds: number;
}

/** Prompt tokens a step must evaluate before its time prices recomputation (a few tokens cost mostly overhead). */
const MIN_TOKENS_TO_PRICE_RECOMPUTE = 32;

/** Where requests get their decoders (the engine's Speculation; tests bring their own). */
export interface DecoderSource {
  /** Throws when a mode cannot run here (checked before the request is queued). */
  check(mode: SpeculationMode): void;
  /**
   * The decoder of a request whose KV lives in sequence `seq` (empty when this is called); `salt`
   * separates tenants' drafting histories.
   */
  decoder(mode: SpeculationMode, sampler: Sampler, seq: number, salt: string): Promise<SequenceDecoder>;
}

/** An answer probe riding a step's tree: what the thinking controller planned, and its nodes in the verified tree. */
interface RidingProbe {
  planned: PlannedProbe;
  nodes: number[];
}

/** A request's part of a step: the tree its decoder proposed, and what is verified (that tree, with an answer probe when one rides it). */
interface VerifiedTree {
  /** The decoder's tree: it accepts on this one (a probe is never accepted, only scored). */
  proposed: TokenTree;
  /** In the batch: `placed.tree` holds the proposed tree's nodes at the same indices, then the probe's. */
  placed: PlacedTree;
  probe?: RidingProbe;
}

/** A scheduled step: the trees of decoding requests, the prompt chunks, and where each sits in the batch. */
interface StepWork {
  trees: ({ request: Request; firstIndex: number } & VerifiedTree)[];
  chunks: { request: Request; from: number; count: number; lastIndex: number }[];
  /** Tokens of the trees (running streams) and of the prompt chunks in the batch. */
  decodingTokens: number;
  promptTokens: number;
}

export class EngineLoop {
  readonly ids: SequenceIdPool;
  readonly sequenceLength: number;
  readonly maxSequences: number;
  private readonly scheduler: Scheduler;
  private readonly pacer: PrefillPacer;
  private readonly compactor: KvCompactor;
  private readonly batch: TokenBatch;
  private readonly maxTreeNodes: number;
  private readonly byId = new Map<number, Request>();
  private disposed = false;
  /** The KV prefix cache and the sequence id it saves and restores blocks through. */
  private cache: { prefix: PrefixCache; scratch: number } | undefined;
  /** Prefix lookups in flight (they need the event loop to turn). */
  private lookups = 0;
  private sharedPrefixTokens = 0;
  /** Decodes run so far (numbers the steps decoders observe). */
  private steps = 0;
  /** Time each phase of the steps has taken since start (ms). */
  private readonly phaseMs: Record<StepPhase, number> = { scheduling: 0, batching: 0, decoding: 0, accepting: 0 };

  constructor(
    private readonly context: Context,
    private readonly tokenizer: Tokenizer,
    private readonly decoders: DecoderSource,
    options: EngineLoopOptions = {},
  ) {
    this.ids = new SequenceIdPool(context.sequences);
    this.sequenceLength = Math.min(options.sequenceLength ?? context.contextSize, context.contextSize);
    this.maxTreeNodes = options.maxTreeNodes ?? 64;
    this.maxSequences = Math.min(options.maxSequences ?? 8, context.sequences);
    this.scheduler = new Scheduler({ maxSequences: this.maxSequences, maxQueued: options.maxQueued ?? 64, kvCells: context.contextSize }, this.ids);
    this.pacer = new PrefillPacer({ maxChunk: options.prefillChunk ?? 256, stretch: options.prefillStretch });
    this.compactor = new KvCompactor(context, this.ids, options.kvCompaction);
    // A token carries at most every sequence id (the root of a tree spanning all borrowed ids).
    this.batch = new TokenBatch(context.batchSize, context.sequences);
  }

  /**
   * Looks up every new prompt's cached prefix before admission, restores it into the request's
   * sequence, and stores the blocks of what requests evaluated (after their prompt, when they
   * end, and when they are preempted). `scratch` is an id of this loop's pool, kept for the cache.
   */
  useCache(prefix: PrefixCache, scratch: number): void {
    this.cache = { prefix, scratch };
  }

  /** Whether a prefix lookup is in flight: the caller must let the event loop turn for it to finish. */
  get waitingForIo(): boolean {
    return this.lookups > 0;
  }

  /** Queues a request; throws PromptTooLongError or QueueFullError at once (nothing is queued then). */
  submit(id: number, prompt: readonly number[], options: RequestOptions, sink: RequestSink): void {
    if (this.disposed) throw new EngineDisposedError();
    checkPromptFits(this.sequenceLength, prompt.length);
    this.decoders.check(options.speculation ?? 'auto');
    const output = new GenerationOutput(this.tokenizer, prompt, options, performance.now());
    const request = new Request(id, prompt, options, output, sink);
    if (!output.wantsTokens) return request.finish('length');
    request.grammar = constraintOf(this.context, this.tokenizer, options, prompt);
    this.scheduler.enqueue(request);
    this.byId.set(id, request);
    this.lookUpPrefix(request, prompt);
  }

  /** Cancels a request; it ends with stop reason `abort` before the next step decodes anything for it. */
  cancel(id: number): void {
    const request = this.byId.get(id);
    if (request) request.cancelled = true;
  }

  get idle(): boolean {
    return this.byId.size === 0;
  }

  status(): EngineStatus {
    return {
      running: this.scheduler.running.length,
      waiting: this.scheduler.waiting.length,
      kvCellsInUse: this.scheduler.cellsInUse,
      kvCells: this.context.contextSize,
      sharedPrefixTokens: this.sharedPrefixTokens,
      kvCompactions: this.compactor.count,
      schedulingSeconds: this.phaseMs.scheduling / 1000,
      batchingSeconds: this.phaseMs.batching / 1000,
      decodingSeconds: this.phaseMs.decoding / 1000,
      acceptingSeconds: this.phaseMs.accepting / 1000,
    };
  }

  /** Every sequence id that holds KV cells, with its position range (tests check that nothing leaks). */
  kvAudit(): { seq: number; min: number; max: number }[] {
    const held: { seq: number; min: number; max: number }[] = [];
    for (let seq = 0; seq < this.ids.size; seq++) {
      const max = this.context.seqPosMax(seq);
      if (max >= 0) held.push({ seq, min: this.context.seqPosMin(seq), max });
    }
    return held;
  }

  /**
   * Logits after `prompt` + `continuation`, the continuation evaluated one token per decode as
   * plain decoding evaluates it, in a scratch sequence. Runs between steps.
   */
  logitsAfter(prompt: readonly number[], continuation: readonly number[]): Float32Array {
    return this.inScratchSequence((seq) => {
      let last = evaluateTokens(this.context, this.batch, prompt, 0, seq);
      for (const [i, token] of continuation.entries()) last = evaluateTokens(this.context, this.batch, [token], prompt.length + i, seq);
      return Float32Array.from(this.context.logits(last));
    });
  }

  /**
   * The logits row that chose `output[at]` when the output is evaluated as a speculative run
   * verified it: after the prompt, each step decodes the tree that step verified (`trees`, as the
   * run recorded them: the root, its pending token, and every drafted node, rejected ones too,
   * in one batch) and keeps the accepted path's KV. Same batches, same kernels: where this row
   * and plain decoding's disagree, batching alone chose the run's token. Runs between steps.
   */
  rowAlongTrees(prompt: readonly number[], output: readonly number[], trees: readonly TreeShape[], at: number): Float32Array {
    if (!(at >= 0 && at < output.length)) throw new RangeError(`token ${at} is outside the output (0…${output.length - 1})`);
    return this.inScratchSequence((seq) => {
      const promptRow = evaluateTokens(this.context, this.batch, prompt, 0, seq);
      if (at === 0) return Float32Array.from(this.context.logits(promptRow));
      let next = 1;
      for (const shape of trees) {
        const tree = TokenTree.fromShape(shape);
        if (tree.rootToken !== output[next - 1]) throw new RangeError(`the tree of the step after token ${next - 1} does not start with it`);
        const placed = placeTree(this.context, this.ids, seq, tree, prompt.length + next - 1);
        let kept = false;
        try {
          this.batch.clear();
          const first = addTreeNodes(this.batch, placed);
          this.context.decodeSync(this.batch);
          // The step emitted the output tokens along its drafted path, then the token after them.
          let node = ROOT;
          for (;;) {
            if (next === at) return Float32Array.from(this.context.logits(first + node));
            const child = tree.childWithToken(node, output[next++]);
            if (child < 0) break;
            node = child;
          }
          keepAcceptedPath(this.context, placed, node);
          kept = true;
        } finally {
          if (!kept) dropTree(this.context, placed);
          releaseBorrowedIds(this.ids, placed);
        }
      }
      throw new RangeError(`the trees cover the output up to token ${next - 1}, not ${at}`);
    });
  }

  private inScratchSequence<T>(evaluate: (seq: number) => T): T {
    const seq = this.ids.acquire();
    if (seq === undefined) throw new Error('no free sequence id for a scratch evaluation');
    try {
      return evaluate(seq);
    } finally {
      this.context.seqRemove(seq, -1, -1);
      this.ids.release(seq);
    }
  }

  /**
   * Branches off one sequence, as a verification computes them for a tree's branches: for each
   * branch, the rows after the sequence's first `at` tokens and after each longer prefix of that
   * + `tokens` (row m chooses the token after the first m of `tokens`). The sequence is evaluated
   * once; each branch shares its cells up to `at` and decodes its own tokens. Runs between steps.
   */
  branchRows(sequence: readonly number[], branches: readonly { at: number; tokens: readonly number[] }[]): Float32Array[][] {
    const [trunk, branch] = [this.ids.acquire(), this.ids.acquire()];
    try {
      if (trunk === undefined || branch === undefined) throw new Error('no free sequence ids for a scratch evaluation');
      const end = Math.max(0, ...branches.map(({ at }) => at - 1));
      if (end > 0) evaluateTokens(this.context, this.batch, sequence.slice(0, end), 0, trunk);
      return branches.map(({ at, tokens }) => {
        if (!(at >= 1 && at <= sequence.length)) throw new RangeError(`a branch at ${at} is outside the sequence (1…${sequence.length})`);
        if (tokens.length + 1 > this.batch.capacity) throw new RangeError(`${tokens.length + 1} tokens exceed one batch (${this.batch.capacity})`);
        // The branch decodes the sequence's token at `at` − 1 again, for the row after it.
        if (at > 1) this.context.seqCopyPrefix(trunk, branch, at - 1);
        this.batch.clear();
        this.batch.addSequence([sequence[at - 1], ...tokens], at - 1, branch, true);
        this.context.decodeSync(this.batch);
        const rows = Array.from({ length: tokens.length + 1 }, (_, m) => Float32Array.from(this.context.logits(m)));
        this.context.seqRemove(branch, -1, -1);
        return rows;
      });
    } finally {
      for (const seq of [trunk, branch]) {
        if (seq === undefined) continue;
        this.context.seqRemove(seq, -1, -1);
        this.ids.release(seq);
      }
    }
  }

  async step(): Promise<void> {
    const phases = this.phaseMs;
    const scheduling = performance.now();
    this.reap();
    await this.schedule();
    this.compactKv();
    const batching = performance.now();
    phases.scheduling += batching - scheduling;
    const work = await this.buildBatch();
    const started = performance.now();
    phases.batching += started - batching;
    if (this.batch.size === 0) return;
    try {
      this.context.decodeSync(this.batch);
    } catch (error) {
      return this.recoverFailedDecode(work, error);
    }
    const ms = performance.now() - started;
    phases.decoding += ms;
    this.pacer.observe(work.decodingTokens, work.promptTokens, ms);
    await this.finishStep(work, ms);
    phases.accepting += performance.now() - started - ms;
  }

  /** Ends every request (stop reason `abort`) and frees their KV; later submits throw. */
  dispose(): void {
    this.disposed = true;
    for (const request of [...this.byId.values()]) this.end(request, 'abort');
    this.batch.dispose();
  }

  /**
   * Moves every running request's cells into one run each once enough of them have been refilled
   * out of order (see KvCompactor). A request whose cells a failed restore left incomplete ends
   * with the error; the others go on.
   */
  private compactKv(): void {
    const holders = this.scheduler.running.filter((request) => request.seq !== undefined && request.cached > 0);
    if (!this.compactor.due(this.scheduler.cellsInUse, holders.length)) return;
    try {
      this.compactor.compact(holders.map((request) => ({ seq: request.seq!, pinned: request.sharedPrefix })));
    } catch (error) {
      for (const request of holders) if (this.context.seqPosMax(request.seq!) + 1 < request.cached) this.endWithError(request, error);
    }
  }

  /** Cancelled requests end now, before anything more is decoded for them. */
  private reap(): void {
    for (const request of this.byId.values()) if (request.cancelled) this.end(request, 'abort');
  }

  private async schedule(): Promise<void> {
    for (const victim of this.scheduler.preempt()) this.evict(victim);
    for (const request of this.scheduler.admit()) {
      this.shareResidentPrefix(request);
      this.restorePrefix(request);
      if (!request.resuming) request.output.cachedPromptTokens = request.cached;
      if (request.resuming && request.cached >= request.prefillTarget) {
        // Its KV came back whole (shared or restored): it decodes its pending token at once.
        request.state = 'decoding';
        request.resuming = false;
      }
      if (request.decoder) continue; // resuming after a preemption
      const sampler = new Sampler(request.options, request.grammar);
      try {
        request.decoder = await this.decoders.decoder(request.options.speculation ?? 'auto', sampler, request.seq!, request.options.cacheSalt ?? '');
      } catch (error) {
        this.endWithError(request, error);
      }
    }
  }

  /** Asks the cache for the longest cached prefix of `tokens`; the request waits for the answer. */
  private lookUpPrefix(request: Request, tokens: readonly number[]): void {
    const cache = this.cache;
    if (!cache || tokens.length < cache.prefix.blockSize) return;
    request.prefix = { ready: false };
    this.lookups++;
    cache.prefix
      .match(tokens, request.options.cacheSalt ?? '')
      .then(
        (match) => (request.prefix = { ready: true, match }),
        // A lookup that fails is a miss: the request recomputes its prompt.
        () => (request.prefix = undefined),
      )
      .finally(() => this.lookups--);
  }

  /**
   * Shares into a just-admitted request's sequence the longest prefix that a running request
   * already holds (`seq_cp`: in the unified KV the cells get a second sequence id, nothing is
   * copied or computed; a KV buffer per sequence copies the donor's buffer, still no compute).
   * Concurrent requests with one system prompt then hold it once. When the cache matched further,
   * the share stops at a block boundary, so the restore goes on from there.
   */
  private shareResidentPrefix(request: Request): void {
    const limit = this.prefixLimit(request);
    let donor: Request | undefined;
    let shared = 0;
    for (const other of this.scheduler.running) {
      if (other === request || other.seq === undefined) continue;
      const length = commonPrefixLength(other.sequence, request.sequence, Math.min(other.cached, limit));
      if (length > shared) [donor, shared] = [other, length];
    }
    const matched = request.prefix?.ready ? request.prefix.match.tokens : 0;
    if (this.cache && matched > shared) shared -= shared % this.cache.prefix.blockSize;
    if (!donor || shared === 0 || this.context.seqPosMax(request.seq!) >= 0) return;
    this.context.seqCopyPrefix(donor.seq!, request.seq!, shared);
    request.cached = shared;
    request.sharedPrefix = shared;
    donor.sharedPrefix = Math.max(donor.sharedPrefix, shared);
    this.sharedPrefixTokens += shared;
  }

  /** How much of its sequence a just-admitted request may take from elsewhere: a new prompt keeps its last token to evaluate (its logits give the first token). */
  private prefixLimit(request: Request): number {
    return request.resuming ? request.prefillTarget : request.prompt.length - 1;
  }

  /**
   * Restores a just-admitted request's cached prefix into its sequence. A new prompt keeps its
   * last token to evaluate (its logits give the first token); a resumed request needs none.
   */
  private restorePrefix(request: Request): void {
    const prefix = request.prefix;
    request.prefix = undefined;
    if (!this.cache || !prefix?.ready || prefix.match.tokens === 0) return;
    request.cached = this.cache.prefix.restorePrefix(prefix.match, this.cache.scratch, request.seq!, this.prefixLimit(request));
  }

  /** Keeps the complete blocks of what the request's sequence holds (tier writes happen in the background). */
  private storeBlocks(request: Request): void {
    if (!this.cache || request.seq === undefined || request.cached < this.cache.prefix.blockSize) return;
    this.cache.prefix.storeBlocks(request.seq, request.sequence.slice(0, request.cached), request.options.cacheSalt ?? '', this.cache.scratch);
  }

  /** Trees of decoding requests first (each priced against what the batch already holds), then prompt chunks. */
  private async buildBatch(): Promise<StepWork> {
    const work: StepWork = { trees: [], chunks: [], decodingTokens: 0, promptTokens: 0 };
    this.batch.clear();
    await this.draftAll(this.scheduler.running.filter((r) => r.state === 'decoding'));
    // Without those whose drafting failed (they have ended).
    const decoding = this.scheduler.running.filter((r) => r.state === 'decoding');
    let freeCells = this.freeCellsBeside(decoding);
    for (const [i, request] of decoding.entries()) {
      const othersLeft = decoding.length - 1 - i;
      const spare = Math.min(this.batch.capacity - work.decodingTokens - othersLeft, freeCells + 1);
      try {
        const verified = await this.verifiedTree(request, spare, decoding.length, work.decodingTokens + othersLeft);
        work.trees.push({ request, ...verified, firstIndex: -1 });
        freeCells -= verified.placed.tree.size - 1;
        work.decodingTokens += verified.placed.tree.size;
      } catch (error) {
        this.endWithError(request, error);
      }
    }
    const prefilling = this.scheduler.running.length - decoding.length;
    const budget = Math.min(this.batch.capacity - work.decodingTokens, freeCells, this.pacer.chunk(work.decodingTokens, { decoding: decoding.length, prefilling }));
    for (const { request, count } of this.scheduler.prefillChunks(budget)) {
      work.promptTokens += count;
      work.chunks.push({ request, from: request.cached, count, lastIndex: -1 });
    }
    this.fillBatch(work);
    return work;
  }

  /**
   * Writes the step's trees and prompt chunks into the batch in sequence-id order, noting where
   * each landed. A KV buffer per sequence runs a batch in pieces wherever its sequence ids stop
   * being consecutive (llama.cpp's sequential split), and each piece reads the weights again.
   */
  private fillBatch(work: StepWork): void {
    const writers = [
      ...work.trees.map((entry) => ({
        seq: entry.request.seq!,
        write: () => {
          const { placed } = entry;
          entry.firstIndex = addTreeNodes(this.batch, placed);
        },
      })),
      ...work.chunks.map((chunk) => ({
        seq: chunk.request.seq!,
        write: () => {
          const { request, from, count } = chunk;
          const wantsLogits = !request.resuming && from + count === request.prompt.length;
          for (let i = 0; i < count; i++) this.batch.add(request.sequence[from + i], from + i, request.seq!, wantsLogits && i === count - 1);
          chunk.lastIndex = this.batch.size - 1;
        },
      })),
    ];
    for (const { write } of writers.sort((a, b) => a.seq - b.seq)) write();
  }

  /**
   * Every decoding request's drafters at once, so that their draft-model decodes share batches.
   * Each gets an even share of the batch and of the free cells, and prices its drafts as if the
   * others verified their pending tokens only; placeTree then cuts each plan to the step's room.
   */
  private async draftAll(decoding: readonly Request[]): Promise<void> {
    const share = Math.floor((this.batch.capacity - decoding.length) / Math.max(1, decoding.length)) + 1;
    const cellShare = Math.floor(Math.max(0, this.freeCellsBeside(decoding)) / Math.max(1, decoding.length)) + 1;
    await Promise.all(
      decoding.map(async (request) => {
        try {
          await request.decoder!.draft?.(request.sequence, this.stepLimits(request, Math.min(share, cellShare), decoding.length, decoding.length - 1));
        } catch (error) {
          this.endWithError(request, error);
        }
      }),
    );
  }

  /** KV cells free for trees once every decoding request's pending token has its cell. */
  private freeCellsBeside(decoding: readonly Request[]): number {
    return this.context.contextSize - this.scheduler.cellsInUse - decoding.length;
  }

  /** What a request's tree may use this step, beside `othersTokens` of `sequences` sequences in all. */
  private stepLimits(request: Request, spare: number, sequences: number, othersTokens: number): StepLimits {
    const position = request.sequence.length - 1;
    return {
      room: this.sequenceLength - position,
      maxNodes: Math.max(1, Math.min(this.maxTreeNodes, spare)),
      maxBranches: 1 + this.borrowableIds,
      batchTokens: othersTokens,
      sequences,
      step: this.steps,
    };
  }

  /**
   * Asks the request's decoder what to verify, fits it to the probe rule of its thinking, and
   * places the tree in the KV: the request's sequence id for its first branch, borrowed ones for the others.
   */
  private async verifiedTree(request: Request, spare: number, sequences: number, othersTokens: number): Promise<VerifiedTree> {
    const limits = this.stepLimits(request, spare, sequences, othersTokens);
    const { proposed, verified, probe } = this.withProbe(request, await request.decoder!.propose(request.sequence, limits), spare, limits.room);
    const placed = placeTree(this.context, this.ids, request.seq!, verified, request.sequence.length - 1);
    return { proposed, placed, ...(probe ? { probe } : {}) };
  }

  /**
   * The decoder's tree as the probe rule of the request's thinking wants it: without the nodes
   * where a probe would be due and none rides (`proposed`, what the decoder accepts on), and
   * with the answer probe when the step has room for it (batch slots and free cells, the
   * sequence's room, a sequence id for the branch). A probe that does not fit has its boundary
   * cut too, to be probed as a later step's root. The probe's nodes come after the proposed
   * ones, so every proposed node keeps its index in the verified tree.
   */
  private withProbe(request: Request, drafted: TokenTree, spare: number, room: number): { proposed: TokenTree; verified: TokenTree; probe?: RidingProbe } {
    const plan = request.output.planProbe(drafted);
    if (!plan) return { proposed: drafted, verified: drafted };
    const { tree: proposed, indexOf } = plan.cut.length > 0 ? drafted.without(plan.cut) : { tree: drafted, indexOf: (node: number) => node };
    if (!plan.probe) return { proposed, verified: proposed };
    const planned = { ...plan.probe, node: indexOf(plan.probe.node)! };
    const verified = proposed.subtree(Array.from({ length: proposed.size }, (_, node) => node));
    const nodes = addProbeBranch(verified, planned.request, planned.node);
    if (verified.size <= spare && verified.maxDepth() < room && verified.branchIds().branchCount <= 1 + this.borrowableIds) return { proposed, verified, probe: { planned, nodes } };
    if (planned.node === ROOT) return { proposed, verified: proposed };
    const unprobed = drafted.without([...plan.cut, plan.probe.node]).tree;
    return { proposed: unprobed, verified: unprobed };
  }

  /**
   * Ids a tree may borrow for its branches this step. A KV buffer per sequence gives each id its
   * own cells, so a branch could not share its trunk's: there, trees are single chains.
   */
  private get borrowableIds(): number {
    return this.context.unifiedKv ? this.ids.available : 0;
  }

  /** After the decode: each tree's request accepts and emits; finished prompts give their first token. */
  private async finishStep(work: StepWork, ms: number): Promise<void> {
    const step: DecodedStep = { index: this.steps++, tokens: this.batch.size, decodingTokens: work.decodingTokens, sequences: work.trees.length };
    for (const { request, proposed, placed, probe, firstIndex } of work.trees) {
      releaseBorrowedIds(this.ids, placed);
      if (request.state === 'finished') continue;
      try {
        const decoder = request.decoder!;
        const rowOf = (node: number) => this.context.logits(firstIndex + node);
        decoder.observeDecode(ms, step);
        const accepted = decoder.accept(proposed, rowOf, request.sequence);
        keepAcceptedPath(this.context, placed, accepted.lastNode);
        request.verifiedTrees?.push(placed.tree.shape());
        this.compactor.noteFreed(placed.tree.size - 1 - placed.tree.depth(accepted.lastNode));
        request.cached = placed.position + placed.tree.depth(accepted.lastNode) + 1;
        // The rows behind the emitted tokens are read only by a thinking controller that wants logits.
        const path = request.output.needsLogits ? nodesTo(placed.tree, accepted.lastNode) : [];
        // A probe counts only where the thinking went on through its boundary.
        if (probe && path.includes(probe.planned.node)) request.output.probed(probe.planned, scoreProbe(placed.tree, probe.nodes, probe.planned.request.answerStart, rowOf));
        this.emit(request, accepted.tokens, accepted.draftedBy, (i) => rowOf(path[i]));
      } catch (error) {
        this.endWithError(request, error);
      }
    }
    this.measureRecompute(work, ms);
    for (const { request, count, lastIndex } of work.chunks) {
      if (request.state === 'finished') continue;
      request.cached += count;
      request.decoder!.timings.prefillMs += ms;
      if (request.cached < request.prefillTarget) continue;
      this.storeBlocks(request);
      request.state = 'decoding';
      if (request.resuming) {
        request.resuming = false;
        continue;
      }
      await this.startDecoding(request, lastIndex);
    }
  }

  /** A step of prompt chunks alone tells the cache what recomputing a token costs (a tier slower than that is skipped). */
  private measureRecompute(work: StepWork, ms: number): void {
    if (!this.cache || work.trees.length > 0) return;
    const tokens = work.chunks.reduce((sum, chunk) => sum + chunk.count, 0);
    if (tokens >= MIN_TOKENS_TO_PRICE_RECOMPUTE) this.cache.prefix.setRecomputeCost(ms / tokens);
  }

  /** The prompt is in: its last logits give the first token. */
  private async startDecoding(request: Request, lastIndex: number): Promise<void> {
    try {
      this.emit(request, [await request.decoder!.start(request.prompt, this.context.logits(lastIndex))], [null], () => this.context.logits(lastIndex));
    } catch (error) {
      this.endWithError(request, error);
    }
  }

  /**
   * Appends emitted tokens, streams them, and ends the request when its output says so or its
   * room runs out. `rowOf(i)` is the logits row that chose token i (the thinking controller reads it).
   */
  private emit(request: Request, tokens: readonly number[], draftedBy: readonly (string | null)[], rowOf: (index: number) => Float32Array): void {
    if (request.state === 'finished') return;
    const before = request.sequence.length;
    const { chunk, stopReason, forced } = request.output.push(tokens, draftedBy, rowOf);
    request.sequence.push(...tokens);
    if (chunk) request.emit(chunk);
    if (stopReason) return this.end(request, stopReason);
    if (forced) this.force(request, before, tokens.length, forced);
    if (this.sequenceLength - (request.sequence.length - 1) <= 0) this.end(request, 'context');
  }

  /**
   * The thinking controller cut this step's tokens and forced its own (the closing tag): the cut
   * tokens' KV goes, and the forced tokens are evaluated like a prompt extension, all but the
   * last, which stays pending as any emitted token does.
   */
  private force(request: Request, before: number, emitted: number, forced: ForcedTokens): void {
    // The KV holds the sequence up to this step's last (pending) token.
    const kept = before + Math.min(forced.keptFromStep, emitted - 1);
    request.sequence.length = before + forced.keptFromStep;
    request.sequence.push(...forced.tokens);
    this.context.seqRemove(request.seq!, kept, -1);
    this.compactor.noteFreed(request.cached - kept);
    request.cached = kept;
    request.resuming = true;
    if (request.cached < request.prefillTarget) request.state = 'prefilling';
    else request.resuming = false;
  }

  /**
   * A decode that failed changed nothing the requests rely on: trees and prompt chunks are
   * undone. A full KV cache preempts the newest request; any other failure ends the requests of
   * this batch with the error (the engine itself goes on).
   */
  private recoverFailedDecode(work: StepWork, error: unknown): void {
    for (const { placed } of work.trees) {
      dropTree(this.context, placed);
      releaseBorrowedIds(this.ids, placed);
    }
    for (const { request, from } of work.chunks) this.context.seqRemove(request.seq!, from, -1);
    const full = (error as { code?: number }).code === 1;
    if (full && this.scheduler.running.length > 1) return this.evict(this.scheduler.preemptNewest());
    for (const request of [...work.trees.map((t) => t.request), ...work.chunks.map((c) => c.request)]) this.endWithError(request, error);
  }

  /** A preempted request gives its KV back; it will evaluate its sequence again, without sampling anything again. */
  private evict(request: Request): void {
    this.storeBlocks(request);
    this.context.seqRemove(request.seq!, -1, -1);
    this.compactor.noteFreed(request.cached);
    request.cached = 0;
    request.sharedPrefix = 0;
    if (request.decoder && request.sequence.length > request.prompt.length) request.resuming = true;
    this.lookUpPrefix(request, request.sequence.slice(0, request.prefillTarget));
  }

  private end(request: Request, stopReason: StopReason): void {
    this.close(request);
    request.finish(stopReason);
  }

  private endWithError(request: Request, error: unknown): void {
    this.close(request);
    request.fail(error);
  }

  /** Frees everything the request holds, in this step: KV cells, its sequence id, its decoder. */
  private close(request: Request): void {
    this.scheduler.remove(request);
    this.byId.delete(request.id);
    if (request.seq !== undefined) {
      this.storeBlocks(request);
      this.context.seqRemove(request.seq, -1, -1);
      // Holes among the cells of the requests that go on (nothing to compact once none does).
      if (this.scheduler.running.length > 0) this.compactor.noteFreed(request.cached);
      this.ids.release(request.seq);
      request.seq = undefined;
    }
    request.decoder?.dispose();
    request.grammar?.dispose();
  }
}

/**
 * What constrains the request's tokens (undefined: nothing): its grammar, for the answer after the
 * thinking of a model that has thinking tags. Throws GrammarError for a grammar llama.cpp refuses.
 */
function constraintOf(context: Context, tokenizer: Tokenizer, options: RequestOptions, prompt: readonly number[]): TokenConstraint | undefined {
  if (options.grammar === undefined) return undefined;
  if (options.maxThinkingTokens !== undefined || options.exitThresholds !== undefined) {
    // The closing tokens they force reach the output, not the sampler: the grammar would not see the answer start.
    throw new GrammarError('a grammar cannot be combined with a thinking budget or early exit: the tokens that close the thinking would bypass it');
  }
  return grammarConstraint(context.model, options.grammar, thinkingTagTokens(tokenizer, options.thinkingTags), prompt);
}

/** The nodes from the root to `node`, in order: node i's row chose the i-th emitted token. */
function nodesTo(tree: TokenTree, node: number): number[] {
  const nodes = [node];
  while (nodes[0] !== ROOT) nodes.unshift(tree.parent(nodes[0]));
  return nodes;
}
