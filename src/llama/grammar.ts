/**
 * A GBNF grammar that the generated text must follow, kept by llama.cpp's grammar sampler: which
 * tokens may come next, and where the grammar stands after each emitted token.
 *
 * Only the sampler's grammar operations are used (apply to candidates, accept a token, clone);
 * which token to take among the allowed ones stays with our sampling (src/generate/sampling.ts),
 * so greedy, seeded and speculative decoding choose exactly as they do without a grammar.
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

/**
 * The native candidates array a grammar and its forks fill and hand to llama.cpp: one per
 * request (a 152k vocabulary takes 1.8 MB), freed when the last of them is disposed.
 */
class Candidates {
  readonly data: Pointer;
  readonly ids: Int32Array;
  readonly logits: Float32Array;
  /** The llama_token_data_array header. */
  readonly header: Pointer;
  private readonly headerWords: BigInt64Array;
  private users = 0;

  constructor(readonly vocabularySize: number) {
    this.data = koffi.alloc('int32_t', vocabularySize * TOKEN_DATA_WORDS);
    const words = koffi.view(this.data, vocabularySize * TOKEN_DATA_WORDS * 4);
    this.ids = new Int32Array(words);
    this.logits = new Float32Array(words);
    this.header = koffi.alloc('uint8_t', TOKEN_DATA_ARRAY_BYTES);
    this.headerWords = new BigInt64Array(koffi.view(this.header, TOKEN_DATA_ARRAY_BYTES));
  }

  use(): this {
    this.users++;
    return this;
  }

  release(): void {
    if (--this.users > 0) return;
    koffi.free(this.data);
    koffi.free(this.header);
  }

  /** The header for the first `size` candidates. */
  headerFor(size: number): Pointer {
    this.headerWords[0] = koffi.address(this.data);
    this.headerWords[1] = BigInt(size);
    this.headerWords[2] = -1n;
    this.headerWords[3] = 0n;
    return this.header;
  }
}

export class Grammar {
  private sampler: Pointer | null;

  private constructor(
    private readonly model: Model,
    sampler: Pointer,
    private readonly candidates: Candidates,
  ) {
    this.sampler = sampler;
    candidates.use();
  }

  /** Parses `gbnf` (from its rule `start`) for `model`'s vocabulary; a grammar llama.cpp refuses throws GrammarError with its reason. */
  static compile(model: Model, gbnf: string, start = 'root'): Grammar {
    const { api } = model.library;
    model.library.takeErrors();
    const sampler = api.samplerInitGrammar(api.modelGetVocab(model.pointer), gbnf, start);
    if (!sampler) {
      // The parser's own reason goes to stderr, past the log callback, so only llama.cpp's summary may be here.
      const reasons = model.library.takeErrors().join('; ').trim();
      throw new GrammarError(`the grammar does not parse as GBNF (llama.cpp's grammars/README.md)${reasons ? `: ${reasons}` : ''}`);
    }
    return new Grammar(model, sampler, new Candidates(model.tokenizer.vocabularySize));
  }

  /** An independent copy of where this grammar stands (to follow drafted tokens without moving this one); dispose it. */
  fork(): Grammar {
    const clone = this.model.library.api.samplerClone(this.pointer);
    if (!clone) throw new GrammarError('the grammar could not be copied');
    return new Grammar(this.model, clone, this.candidates);
  }

  /** Whether `token` may come next. */
  allows(token: number): boolean {
    const { ids, logits } = this.candidates;
    ids[0] = token;
    logits[1] = 0;
    this.apply(1);
    return logits[1] !== -Infinity;
  }

  /** A copy of `logits` with every token that may not come next at -Infinity; throws GrammarError when none may. */
  restrict(logits: Float32Array): Float32Array {
    const { ids, logits: values } = this.candidates;
    const size = Math.min(logits.length, this.candidates.vocabularySize);
    for (let id = 0; id < size; id++) {
      ids[id * TOKEN_DATA_WORDS] = id;
      values[id * TOKEN_DATA_WORDS + 1] = logits[id];
    }
    this.apply(size);
    const restricted = new Float32Array(logits.length).fill(-Infinity);
    let allowed = 0;
    for (let i = 0; i < size; i++) {
      const logit = values[i * TOKEN_DATA_WORDS + 1];
      if (logit === -Infinity) continue;
      restricted[ids[i * TOKEN_DATA_WORDS]] = logit;
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
    this.candidates.release();
  }

  private get pointer(): Pointer {
    if (!this.sampler) throw new Error('grammar is disposed');
    return this.sampler;
  }

  /** Runs the grammar over the first `size` candidates; it sets the logits of those it rejects to -Infinity, in place. */
  private apply(size: number): void {
    this.model.library.api.samplerApply(this.pointer, this.candidates.headerFor(size));
  }
}
