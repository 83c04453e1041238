/** Tokenize / detokenize through the model's vocabulary; incremental, UTF-8-safe decoding for streams. */
import type { LlamaApi, Pointer } from './ffi.js';
import type { SpecialTokens } from './model.js';

export interface TokenizeOptions {
  /** Add BOS (and EOS) if the model asks for it. Default true. */
  addSpecial?: boolean;
  /** Recognise control tokens written as text (e.g. "<|end|>"). Default true. */
  parseSpecial?: boolean;
}

export class Tokenizer {
  readonly vocabularySize: number;
  readonly special: SpecialTokens;
  /** Piece bytes per token, filled lazily: a 152k vocabulary is too large to convert up front. */
  private readonly pieces: (Uint8Array | undefined)[];
  /** Per token: 0 not asked yet, 1 end of generation, 2 not; asked of llama.cpp once per token, not per step. */
  private readonly eog: Uint8Array;

  constructor(
    private readonly api: LlamaApi,
    private readonly vocab: Pointer,
  ) {
    this.vocabularySize = api.vocabNTokens(vocab);
    this.pieces = new Array(this.vocabularySize);
    this.special = {
      bos: api.vocabBos(vocab),
      eos: api.vocabEos(vocab),
      eot: api.vocabEot(vocab),
      addBos: api.vocabGetAddBos(vocab),
    };
    this.eog = new Uint8Array(this.vocabularySize);
    for (const token of [this.special.eos, this.special.eot]) if (token >= 0) this.eog[token] = 1;
  }

  tokenize(text: string, options: TokenizeOptions = {}): number[] {
    const bytes = Buffer.from(text, 'utf8');
    const addSpecial = options.addSpecial ?? true;
    const parseSpecial = options.parseSpecial ?? true;
    let out = new Int32Array(bytes.length + 8);
    let count = this.api.tokenize(this.vocab, bytes, bytes.length, out, out.length, addSpecial, parseSpecial);
    if (count < 0) {
      out = new Int32Array(-count);
      count = this.api.tokenize(this.vocab, bytes, bytes.length, out, out.length, addSpecial, parseSpecial);
    }
    if (count < 0) throw new Error('tokenization failed');
    return Array.from(out.subarray(0, count));
  }

  /** The raw bytes of one token (may be part of a multi-byte UTF-8 character). */
  pieceBytes(token: number): Uint8Array {
    const cached = this.pieces[token];
    if (cached) return cached;
    this.checkToken(token);
    let buffer = Buffer.alloc(32);
    let length = this.api.tokenToPiece(this.vocab, token, buffer, buffer.length, 0, true);
    if (length < 0) {
      buffer = Buffer.alloc(-length);
      length = this.api.tokenToPiece(this.vocab, token, buffer, buffer.length, 0, true);
    }
    const piece = new Uint8Array(buffer.subarray(0, Math.max(0, length)));
    this.pieces[token] = piece;
    return piece;
  }

  detokenize(tokens: readonly number[]): string {
    const decoder = new TextStreamDecoder(this);
    return decoder.push(tokens) + decoder.flush();
  }

  /** Text of a token as the vocabulary stores it (e.g. "▁the", "<0x0A>"). */
  tokenText(token: number): string {
    this.checkToken(token);
    return this.api.vocabGetText(this.vocab, token);
  }

  /** End of generation: EOS, EOT and whatever else the vocabulary marks as such. */
  isEndOfGeneration(token: number): boolean {
    if (this.eog[token] === 0) this.eog[token] = this.api.vocabIsEog(this.vocab, token) ? 1 : 2;
    return this.eog[token] === 1;
  }

  private checkToken(token: number): void {
    if (!Number.isInteger(token) || token < 0 || token >= this.vocabularySize) {
      throw new RangeError(`token id ${token} outside the vocabulary (0..${this.vocabularySize - 1})`);
    }
  }
}

/**
 * Turns a stream of tokens into text, holding back bytes of an unfinished UTF-8 character until
 * the token that completes it arrives.
 */
export class TextStreamDecoder {
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });

  constructor(private readonly tokenizer: Tokenizer) {}

  push(tokens: readonly number[]): string {
    let text = '';
    for (const token of tokens) text += this.decoder.decode(this.tokenizer.pieceBytes(token), { stream: true });
    return text;
  }

  /** Emits whatever is held back (invalid trailing bytes become U+FFFD). */
  flush(): string {
    return this.decoder.decode();
  }
}
