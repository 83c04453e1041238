/**
 * Thinking segments: which generated text is the model's thinking and which is its answer.
 *
 * The split follows the model's *tokens* (a tag counts only when the model emits the tag token,
 * not when its characters happen to appear in the text), and is applied to the text the
 * generation loop actually emits: that text lags the tokens (UTF-8 characters and stop strings
 * are held back) and may be cut by a stop string, so the segmenter records which raw-text
 * characters belong to which segment and splits emitted text by its offset in the raw text.
 */
import type { Tokenizer } from '../llama/tokenizer.js';

/** The strings that open and close a thinking section (each must be one token of the model). */
export interface ThinkingTags {
  open: string;
  close: string;
}

export const DEFAULT_THINKING_TAGS: ThinkingTags = { open: '<think>', close: '</think>' };

export interface ThinkingTagTokens {
  open: number;
  close: number;
}

/**
 * How a thinking section ended: the model closed it, the hard budget closed it, the early-exit
 * policy closed it, or generation stopped inside it.
 */
export type ThinkingEnd = 'natural' | 'budget' | 'early-exit' | 'unfinished';

/** Who closed a thinking section when the engine, not the model, inserted the closing tag. */
export type ForcedThinkingEnd = Extract<ThinkingEnd, 'budget' | 'early-exit'>;

/** Text split into its thinking part and its answer part, tags excluded. */
export interface SplitText {
  reasoning: string;
  content: string;
}

/**
 * The tag tokens of this model, looked up by their text. With the default tags, a model that
 * lacks them simply has no thinking (undefined); tags asked for explicitly must exist.
 */
export function thinkingTagTokens(tokenizer: Tokenizer, tags?: ThinkingTags): ThinkingTagTokens | undefined {
  const chosen = tags ?? DEFAULT_THINKING_TAGS;
  const open = singleToken(tokenizer, chosen.open);
  const close = singleToken(tokenizer, chosen.close);
  if (open !== undefined && close !== undefined && open !== close) return { open, close };
  if (tags) {
    throw new Error(`thinking tags ${JSON.stringify(tags.open)} and ${JSON.stringify(tags.close)} must each be one (distinct) token of this model's vocabulary`);
  }
  return undefined;
}

function singleToken(tokenizer: Tokenizer, text: string): number | undefined {
  if (text.length === 0) return undefined;
  const tokens = tokenizer.tokenize(text, { addSpecial: false, parseSpecial: true });
  return tokens.length === 1 ? tokens[0] : undefined;
}

/** Whether `tokens` (a prompt) end inside an open thinking section, as templates that open `<think>` for the model do. */
export function endsInsideThinking(tokens: readonly number[], tags: ThinkingTagTokens): boolean {
  for (let i = tokens.length - 1; i >= 0; i--) {
    if (tokens[i] === tags.close) return false;
    if (tokens[i] === tags.open) return true;
  }
  return false;
}

type SpanKind = 'reasoning' | 'content' | 'tag';

interface Span {
  kind: SpanKind;
  length: number;
}

/** Follows one generation's tokens through thinking and answer; see the module comment. */
export class ThinkingSegments {
  private thinking: boolean;
  private thinkingTokenCount = 0;
  private ended: ThinkingEnd | undefined;
  /** Raw text not yet handed out by `take`, as consecutive spans. */
  private readonly spans: Span[] = [];

  /** `tags` undefined: the model has no thinking tags, everything is answer. */
  constructor(
    private readonly tags: ThinkingTagTokens | undefined,
    prompt: readonly number[],
  ) {
    this.thinking = tags !== undefined && endsInsideThinking(prompt, tags);
  }

  /** Inside a thinking section now (the next token would be thinking). */
  get inThinking(): boolean {
    return this.thinking;
  }

  /** Tokens generated inside thinking sections, tags excluded. */
  get thinkingTokens(): number {
    return this.thinkingTokenCount;
  }

  /** How the (last) thinking section ended; undefined when there was none. */
  get thinkingEnd(): ThinkingEnd | undefined {
    return this.thinking ? 'unfinished' : this.ended;
  }

  /**
   * One generated token and the raw text it added. `forced` says who inserted a closing tag
   * that the model did not choose itself.
   */
  push(token: number, text: string, forced?: ForcedThinkingEnd): void {
    if (this.tags && !this.thinking && token === this.tags.open) {
      this.thinking = true;
      this.ended = undefined;
      this.addText('tag', text);
    } else if (this.tags && this.thinking && token === this.tags.close) {
      this.thinking = false;
      this.ended = forced ?? 'natural';
      this.addText('tag', text);
    } else {
      if (this.thinking) this.thinkingTokenCount++;
      this.addText(this.thinking ? 'reasoning' : 'content', text);
    }
  }

  /** Raw text that no token added (characters a UTF-8 decoder releases at the end). */
  pushText(text: string): void {
    this.addText(this.thinking ? 'reasoning' : 'content', text);
  }

  /** Splits the next `text.length` characters of emitted text (a prefix of the raw text not yet taken). */
  take(text: string): SplitText {
    const split: SplitText = { reasoning: '', content: '' };
    let offset = 0;
    while (offset < text.length) {
      const span = this.spans[0];
      if (!span) throw new Error('emitted text runs past the generated text');
      const length = Math.min(span.length, text.length - offset);
      if (span.kind !== 'tag') split[span.kind] += text.slice(offset, offset + length);
      offset += length;
      span.length -= length;
      if (span.length === 0) this.spans.shift();
    }
    return split;
  }

  private addText(kind: SpanKind, text: string): void {
    if (text.length === 0) return;
    const last = this.spans.at(-1);
    if (last && last.kind === kind && kind !== 'tag') last.length += text.length;
    else this.spans.push({ kind, length: text.length });
  }
}
