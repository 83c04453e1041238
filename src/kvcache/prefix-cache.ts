/**
 * The prefix cache the engine loop asks: which leading blocks of a token sequence are cached
 * (`match`, async, before the request is scheduled), put them into a sequence (`restorePrefix`,
 * sync, between decodes), and keep a sequence's complete blocks for later (`storeBlocks`, sync
 * state read, the tier writes queued in the background).
 *
 * Sequence ids are the engine's: every call names the scratch and destination ids it may touch,
 * and nothing here clears memory or removes cells of any other sequence.
 */
import type { Context } from '../llama/context.js';
import { probeStateLayout, readBlockState, restoreBlockState, type BlockSpan } from './blocks.js';
import { checkContinuation, checkEntry, decodeEntry, encodeEntry } from './entry.js';
import { modelFingerprint } from '../gguf/fingerprint.js';
import { blockKeys, chainKey, continuationName, rootKey, type CacheNamespace } from './keys.js';
import { describeSequenceState, holdsExactly } from './state-format.js';
import { TieredStore, type EntrySource, type StoreStats } from './tiered-store.js';
import type { CacheTier } from './tiers/tier.js';
import { commonPrefixLength } from '../token-sequences.js';

export const DEFAULT_BLOCK_SIZE = 64;
const DEFAULT_MAX_QUEUED_BYTES = 256 * 1024 * 1024;
/** Entries remembered as queued; past this the memory is reset (the tiers still hold the entries). */
const MAX_REMEMBERED_KEYS = 100_000;

export interface PrefixCacheOptions {
  /** Looked up in this order; a hit is promoted into the tiers before it. */
  readonly tiers: readonly CacheTier[];
  /** Tokens per block; default 64. */
  readonly blockSize?: number;
  /** Most bytes of stores waiting to be written before new ones are dropped; default 256 MiB. */
  readonly maxQueuedBytes?: number;
  /**
   * What prefilling one token costs here, ms (the engine measures it; `setRecomputeCost` updates
   * it). A tier whose hits take longer than recomputing a block is skipped. Default: never skip.
   */
  readonly recomputeMsPerToken?: number;
  /** Where model fingerprints are remembered; default <package>/.cache/fingerprints. */
  readonly fingerprintFolder?: string;
}

export interface MatchedBlock {
  readonly key: string;
  /** The positions the entry's state holds. */
  readonly span: BlockSpan;
  /** End of the positions wanted (span.end, or less for a continuation that matches in part). */
  readonly end: number;
  /** Checked state bytes, ready for llama.cpp. */
  readonly state: Uint8Array;
  readonly source: EntrySource;
}

export interface PrefixMatch {
  /** Leading tokens covered: whole blocks, then the part of a stored continuation that matches. */
  readonly tokens: number;
  readonly blocks: readonly MatchedBlock[];
}

export interface PrefixCacheStats extends StoreStats {
  readonly blockSize: number;
  readonly lookups: number;
  readonly hitBlocks: number;
  readonly missBlocks: number;
  readonly restoredTokens: number;
  /** Matched tokens the destination already held (resident in the context, nothing loaded). */
  readonly residentTokens: number;
  readonly storedBlocks: number;
  /** Partial blocks found after the matched whole blocks (their matching tokens count as restored). */
  readonly hitContinuations: number;
}

export class PrefixCache {
  private readonly roots = new Map<string, Buffer>();
  /** Name → key (hex) of the entry this process last queued under it; a whole block's name is its key. */
  private readonly stored = new Map<string, string>();
  private readonly counters = { lookups: 0, hitBlocks: 0, missBlocks: 0, restoredTokens: 0, residentTokens: 0, storedBlocks: 0, hitContinuations: 0 };

  private constructor(
    readonly context: Context,
    readonly namespace: CacheNamespace,
    private readonly store: TieredStore,
    private recomputeMsPerToken: number,
  ) {}

  /**
   * A cache for this context. Reads the model's fingerprint (hashing the file the first time) and
   * probes the context's real KV layout by decoding one token into `scratchSeq` (left empty after).
   */
  static async create(context: Context, scratchSeq: number, options: PrefixCacheOptions): Promise<PrefixCache> {
    const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new RangeError(`block size must be a positive integer, got ${blockSize}`);
    if (options.tiers.length === 0) throw new RangeError('a prefix cache needs at least one tier');
    const namespace: CacheNamespace = {
      modelFingerprint: await modelFingerprint(context.model.path, options.fingerprintFolder),
      backend: context.model.library.backend,
      layout: await probeStateLayout(context, scratchSeq),
      blockSize,
    };
    const store = new TieredStore(options.tiers, options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES);
    return new PrefixCache(context, namespace, store, options.recomputeMsPerToken ?? Infinity);
  }

  get blockSize(): number {
    return this.namespace.blockSize;
  }

  /** The engine's latest measure of prefill time per token, ms (see PrefixCacheOptions). */
  setRecomputeCost(msPerToken: number): void {
    if (!(msPerToken > 0)) throw new RangeError(`recompute cost must be positive, got ${msPerToken}`);
    this.recomputeMsPerToken = msPerToken;
  }

  /**
   * The longest run of leading blocks of `tokens` that some tier holds, then as much of the
   * stored partial block after them as matches `tokens`; fetched and checked.
   */
  async match(tokens: readonly number[], salt = ''): Promise<PrefixMatch> {
    this.counters.lookups++;
    const root = this.rootFor(salt);
    const keys = blockKeys(root, tokens, this.blockSize);
    const blocks: MatchedBlock[] = [];
    let parent: Buffer = root;
    for (const [index, key] of keys.entries()) {
      const hex = key.toString('hex');
      const span = { first: index * this.blockSize, end: (index + 1) * this.blockSize };
      const expected = { root, key, firstPosition: span.first, tokens: tokens.slice(span.first, span.end), layout: this.namespace.layout };
      const accept = (bytes: Uint8Array): Uint8Array => {
        const entry = decodeEntry(bytes);
        checkEntry(entry, expected);
        return entry.state;
      };
      const found = await this.store.load(hex, accept, this.recomputeMsPerToken * this.blockSize);
      if (!found) {
        this.counters.missBlocks++;
        // Evicted everywhere (or never written): let the next storeBlocks write it again.
        this.stored.delete(hex);
        break;
      }
      this.counters.hitBlocks++;
      blocks.push({ key: hex, span, end: span.end, state: found.value, source: found.source });
      parent = key;
    }
    const matched = blocks.length * this.blockSize;
    const continuation = matched < tokens.length ? await this.matchContinuation(root, parent, tokens, matched) : undefined;
    if (continuation) blocks.push(continuation);
    return { tokens: continuation?.end ?? matched, blocks };
  }

  /** The stored partial block after `parent` (at `first`), when its leading tokens are the next of `tokens`. */
  private async matchContinuation(root: Buffer, parent: Buffer, tokens: readonly number[], first: number): Promise<MatchedBlock | undefined> {
    const name = continuationName(parent).toString('hex');
    const expected = { root, parent, firstPosition: first, layout: this.namespace.layout };
    const accept = (bytes: Uint8Array) => {
      const entry = decodeEntry(bytes);
      checkContinuation(entry, expected);
      const same = commonPrefixLength(entry.tokens, tokens.slice(first, first + entry.tokens.length));
      return { state: entry.state, stored: entry.tokens.length, same };
    };
    const found = await this.store.load(name, accept, this.recomputeMsPerToken * this.blockSize);
    if (!found || found.value.same === 0) return undefined;
    this.counters.hitContinuations++;
    const { state, stored, same } = found.value;
    return { key: name, span: { first, end: first + stored }, end: first + same, state, source: found.source };
  }

  /**
   * Restores the matched blocks that `destSeq` does not hold yet, block by block through
   * `scratchSeq`, and keeps at most `limit` tokens (pass the prompt length − 1 when the whole
   * prompt matched: its last token must be decoded again for its logits). Stops at the first
   * block llama.cpp refuses (no room in the context), counted as a miss. Returns how many leading
   * tokens `destSeq` now holds; the caller prefills from there.
   */
  restorePrefix(match: PrefixMatch, scratchSeq: number, destSeq: number, limit = match.tokens): number {
    let held = this.context.seqPosMax(destSeq) + 1;
    for (const block of match.blocks) {
      if (held >= limit) break;
      if (block.end <= held) {
        this.counters.residentTokens += block.end - block.span.first;
        continue;
      }
      if (block.span.first !== held) break;
      if (!restoreBlockState(this.context, block.state, scratchSeq, destSeq, block.span)) {
        // The entry passed every check, so the likely cause is the context (no free cells), not
        // the entry: it stays in the tiers for the next request.
        this.store.countRejected('restore');
        break;
      }
      // Cells past the limit, or past the tokens a partial block shares, are not this sequence's.
      const end = Math.min(block.end, limit);
      if (end < block.span.end) this.context.seqRemove(destSeq, end, -1);
      this.counters.restoredTokens += end - block.span.first;
      held = end;
    }
    if (held > limit) {
      this.context.seqRemove(destSeq, limit, -1);
      held = limit;
    }
    return held;
  }

  /**
   * Queues every complete block of `tokens` that `seq` holds and that is not stored yet, then the
   * partial block after them (under its parent's continuation name, replacing the one before).
   * `tokens` are the sequence's tokens from position 0 (prompt and generated). The KV is read
   * now, through `scratchSeq`; the tier writes happen in the background. Returns the number of
   * blocks queued (a partial one included).
   */
  storeBlocks(seq: number, tokens: readonly number[], salt: string, scratchSeq: number): number {
    const root = this.rootFor(salt);
    const held = Math.min(this.context.seqPosMax(seq) + 1, tokens.length);
    let parent: Buffer = root;
    let queued = 0;
    let stored = 0;
    for (const [index, key] of blockKeys(root, tokens, this.blockSize).entries()) {
      const span = { first: index * this.blockSize, end: (index + 1) * this.blockSize };
      if (span.end > held) break;
      const hex = key.toString('hex');
      if (this.queueBlock({ root, parent, key, hex, name: hex, span, tokens: tokens.slice(span.first, span.end) }, seq, scratchSeq)) queued++;
      parent = key;
      stored = span.end;
    }
    if (stored < held) {
      const rest = tokens.slice(stored, held);
      const key = chainKey(parent, rest);
      const partial = { root, parent, key, hex: key.toString('hex'), name: continuationName(parent).toString('hex'), span: { first: stored, end: held }, tokens: rest };
      if (this.queueBlock(partial, seq, scratchSeq)) queued++;
    }
    return queued;
  }

  /** Hex keys of the complete blocks of `tokens` (the names entries have in every tier). */
  keysFor(tokens: readonly number[], salt = ''): string[] {
    return blockKeys(this.rootFor(salt), tokens, this.blockSize).map((key) => key.toString('hex'));
  }

  /** Resolves once every queued store is written. */
  flush(): Promise<void> {
    return this.store.flush();
  }

  stats(): PrefixCacheStats {
    return { blockSize: this.blockSize, ...this.counters, ...this.store.stats() };
  }

  /** Writes what is queued, then closes the tiers. */
  close(): Promise<void> {
    return this.store.close();
  }

  /**
   * Reads the block's KV and queues its entry under `block.name`; false when this process already
   * queued that entry there, when there is nothing whole to store, or when the queue is full.
   */
  private queueBlock(block: BlockToStore, seq: number, scratchSeq: number): boolean {
    if (this.stored.get(block.name) === block.hex) return false;
    const state = readBlockState(this.context, seq, scratchSeq, block.span);
    // A sequence with a hole in the block (cells removed by the engine) has nothing to store.
    if (!holdsExactly(describeSequenceState(state).positions, block.span.first, block.span.end - block.span.first)) return false;
    const encode = (): Uint8Array =>
      encodeEntry({ root: block.root, parent: block.parent, key: block.key, firstPosition: block.span.first, tokens: Int32Array.from(block.tokens), state });
    if (!this.store.enqueue(block.name, encode, state.length)) return false;
    if (this.stored.size >= MAX_REMEMBERED_KEYS) this.stored.clear();
    this.stored.set(block.name, block.hex);
    this.counters.storedBlocks++;
    return true;
  }

  private rootFor(salt: string): Buffer {
    let root = this.roots.get(salt);
    if (!root) {
      root = rootKey(this.namespace, salt);
      this.roots.set(salt, root);
    }
    return root;
  }
}

interface BlockToStore {
  readonly root: Buffer;
  readonly parent: Buffer;
  readonly key: Buffer;
  readonly hex: string;
  /** What the tiers call it: the key's hex, or its parent's continuation name. */
  readonly name: string;
  readonly span: BlockSpan;
  readonly tokens: readonly number[];
}
