/**
 * One draft context's decodes, batched across the requests drafting in the same engine step.
 *
 * A draft model proposes a chain one token at a time; run per request, 8 requests drafting 16
 * tokens each cost 128 serial decodes while every sequence of the step waits. Here each drafter's
 * next decode is queued, and the queue is decoded as ONE batch once every drafter that can run has
 * queued its own (the flush waits for the event loop's next turn: the loop asks all decoders to
 * draft at once, so by then each has either queued a token or finished its chain). 8 chains of 16
 * then cost 16 decodes of 8 tokens, which on a CPU cost about 3 single decodes each.
 *
 * With one member the decode runs at once: a request alone pays no turn of the event loop.
 */
import { TokenBatch } from '../llama/batch.js';
import { evaluateTokens, type Context } from '../llama/context.js';

/** What a queued decode gives back: what its reader made of the last token's logits, and its share of the decode's time. */
export interface DraftDecode<T> {
  value: T;
  /** The decode's time × this entry's share of its tokens (ms): what the drafter's tokens cost the step. */
  ms: number;
}

interface Pending {
  seq: number;
  tokens: readonly number[];
  position: number;
  read: (logits: Float32Array) => unknown;
  resolve: (result: DraftDecode<unknown>) => void;
  reject: (error: unknown) => void;
}

export interface DraftBatcherStats {
  /** Decodes run. */
  decodes: number;
  /** Entries (one drafter's tokens each) decoded: entries / decodes is how many requests a decode served. */
  entries: number;
}

const batchers = new WeakMap<Context, DraftBatcher>();

/** The batcher of a draft context: every drafter on one context shares it. */
export function draftBatcherOf(context: Context): DraftBatcher {
  let batcher = batchers.get(context);
  if (!batcher) {
    batcher = new DraftBatcher(context);
    batchers.set(context, batcher);
  }
  return batcher;
}

export class DraftBatcher {
  /** Native batch, held while drafters are members (released when the last one leaves). */
  private held: TokenBatch | undefined;
  private queue: Pending[] = [];
  private flushScheduled = false;
  private members = 0;
  private readonly counts: DraftBatcherStats = { decodes: 0, entries: 0 };

  constructor(readonly context: Context) {}

  /** A drafter starts serving a request (while more than one does, decodes wait to be batched). */
  join(): void {
    this.members++;
  }

  leave(): void {
    this.members = Math.max(0, this.members - 1);
    if (this.members > 0 || this.queue.length > 0) return;
    this.held?.dispose();
    this.held = undefined;
  }

  private get batch(): TokenBatch {
    this.held ??= new TokenBatch(Math.min(this.context.batchSize, 512), 1);
    return this.held;
  }

  get stats(): DraftBatcherStats {
    return { ...this.counts };
  }

  /**
   * Evaluates `tokens` at `position…` in sequence `seq` and calls `read` with the logits after the
   * last one, during the flush (the logits are a view that the next decode overwrites).
   */
  evaluate<T>(seq: number, tokens: readonly number[], position: number, read: (logits: Float32Array) => T): Promise<DraftDecode<T>> {
    return new Promise<DraftDecode<T>>((resolve, reject) => {
      this.queue.push({ seq, tokens, position, read, resolve: resolve as (result: DraftDecode<unknown>) => void, reject });
      if (this.members <= 1) return this.flush();
      if (this.flushScheduled) return;
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    });
  }

  /** Decodes the queue, as few batches as the batch size allows; an entry longer than a batch (a prompt) goes alone. */
  private flush(): void {
    this.flushScheduled = false;
    const queue = this.queue;
    this.queue = [];
    let group: Pending[] = [];
    let groupTokens = 0;
    for (const entry of queue) {
      if (entry.tokens.length > this.batch.capacity) {
        this.run([entry], () => evaluateTokens(this.context, this.batch, entry.tokens, entry.position, entry.seq));
        continue;
      }
      if (groupTokens + entry.tokens.length > this.batch.capacity) {
        this.decodeGroup(group);
        [group, groupTokens] = [[], 0];
      }
      group.push(entry);
      groupTokens += entry.tokens.length;
    }
    if (group.length > 0) this.decodeGroup(group);
  }

  private decodeGroup(group: Pending[]): void {
    this.batch.clear();
    const last: number[] = [];
    for (const entry of group) {
      this.batch.addSequence(entry.tokens, entry.position, entry.seq);
      last.push(this.batch.size - 1);
    }
    this.run(group, () => {
      this.context.decodeSync(this.batch);
      return last;
    });
  }

  /** Runs one decode for `group`, then hands each entry its logits row (`decode` returns the rows' batch indices). */
  private run(group: Pending[], decode: () => number | number[]): void {
    const started = performance.now();
    let rows: number[];
    try {
      const result = decode();
      rows = typeof result === 'number' ? [result] : result;
    } catch (error) {
      for (const entry of group) entry.reject(error);
      return;
    }
    const ms = performance.now() - started;
    const tokens = group.reduce((sum, entry) => sum + entry.tokens.length, 0);
    this.counts.decodes++;
    this.counts.entries += group.length;
    group.forEach((entry, i) => {
      try {
        entry.resolve({ value: entry.read(this.context.logits(rows[i])), ms: (ms * entry.tokens.length) / tokens });
      } catch (error) {
        entry.reject(error);
      }
    });
  }
}
