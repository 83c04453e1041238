/**
 * A GBNF grammar that the generated text must follow, kept by llama.cpp's grammar sampler: which
 * tokens may come next, and where the grammar stands after each emitted token.
 *
 * Only the sampler's two grammar operations are used (apply to candidates, accept a token); which
 * token to take among the allowed ones stays with our sampling (src/generate/sampling.ts), so
 * greedy, seeded and speculative decoding choose exactly as they do without a grammar.
 */
import koffi from 'koffi';
import type { Pointer } from './ffi.js';
import type { Model } from './model.js';

/** A grammar that does not parse, or that allows no token where a token must come. */
export class GrammarError extends Error {
  override name = 'GrammarError';
}

/** sizeof(llama_token_data): int32 id, float logit, float p. */
const TOKEN_DATA_WORDS = 3;
/** sizeof(llama_token_data_array) on 64-bit targets: data pointer, size_t size, int64 selected, bool sorted (padded). */
const TOKEN_DATA_ARRAY_BYTES = 32;

export class Grammar {
  private sampler: Pointer | null;
  /** llama_token_data[vocabulary] in native memory, seen as ids and logits (every third word). */
  private readonly data: Pointer;
  private readonly words: ArrayBuffer;
  private readonly ids: Int32Array;
  private readonly logits: Float32Array;
  /** The llama_token_data_array header handed to llama_sampler_apply. */
  private readonly header: Pointer;
  private readonly headerWords: BigInt64Array;

  private constructor(
    private readonly model: Model,
    sampler: Pointer,
    private readonly vocabularySize: number,
  ) {
    this.sampler = sampler;
    this.data = koffi.alloc('int32_t', vocabularySize * TOKEN_DATA_WORDS);
    this.words = koffi.view(this.data, vocabularySize * TOKEN_DATA_WORDS * 4);
    this.ids = new Int32Array(this.words);
    this.logits = new Float32Array(this.words);
    this.header = koffi.alloc('uint8_t', TOKEN_DATA_ARRAY_BYTES);
    this.headerWords = new BigInt64Array(koffi.view(this.header, TOKEN_DATA_ARRAY_BYTES));
  }

  /** Parses `gbnf` (start symbol `root`) for `model`'s vocabulary; a grammar llama.cpp refuses throws GrammarError with its reason. */
  static compile(model: Model, gbnf: string): Grammar {
    const { api } = model.library;
    model.library.takeErrors();
    const sampler = api.samplerInitGrammar(api.modelGetVocab(model.pointer), gbnf, 'root');
    if (!sampler) {
      const reasons = model.library.takeErrors().join('; ').trim();
      // The parser's own reason goes to stderr, past the log callback, so only llama.cpp's summary may be here.
      throw new GrammarError(`the grammar does not parse as GBNF (llama.cpp's grammars/README.md)${reasons ? `: ${reasons}` : ''}`);
    }
    return new Grammar(model, sampler, model.tokenizer.vocabularySize);
  }

  /** Whether `token` may come next. */
  allows(token: number): boolean {
    this.ids[0] = token;
    this.logits[1] = 0;
    this.apply(1);
    return this.logits[1] !== -Infinity;
  }

  /** A copy of `logits` with every token that may not come next at -Infinity; throws GrammarError when none may. */
  restrict(logits: Float32Array): Float32Array {
    const size = Math.min(logits.length, this.vocabularySize);
    for (let id = 0; id < size; id++) {
      this.ids[id * TOKEN_DATA_WORDS] = id;
      this.logits[id * TOKEN_DATA_WORDS + 1] = logits[id];
    }
    this.apply(size);
    const restricted = new Float32Array(logits.length).fill(-Infinity);
    let allowed = 0;
    for (let i = 0; i < size; i++) {
      const logit = this.logits[i * TOKEN_DATA_WORDS + 1];
      if (logit === -Infinity) continue;
      restricted[this.ids[i * TOKEN_DATA_WORDS]] = logit;
      allowed++;
    }
    if (allowed === 0) throw new GrammarError('the grammar allows no token here (the model cannot go on within it)');
    return restricted;
  }

  /** Moves the grammar past `token`, which it must allow (llama.cpp aborts the process on one it does not). */
  accept(token: number): void {
    if (!this.allows(token)) throw new GrammarError(`the grammar does not allow token ${token} here`);
    this.model.library.api.samplerAccept(this.pointer, token);
  }

  dispose(): void {
    if (!this.sampler) return;
    this.model.library.api.samplerFree(this.sampler);
    this.sampler = null;
    koffi.free(this.data);
    koffi.free(this.header);
  }

  private get pointer(): Pointer {
    if (!this.sampler) throw new Error('grammar is disposed');
    return this.sampler;
  }

  /** Runs the grammar over the first `size` candidates; it sets the logits of those it rejects to -Infinity, in place. */
  private apply(size: number): void {
    this.headerWords[0] = koffi.address(this.data);
    this.headerWords[1] = BigInt(size);
    this.headerWords[2] = -1n;
    this.headerWords[3] = 0n;
    this.model.library.api.samplerApply(this.pointer, this.header);
  }
}
