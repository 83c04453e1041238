/**
 * A grammar for the answer of a model that thinks first: the thinking is free, the text after its
 * closing tag follows the grammar, as vLLM applies structured outputs once the reasoning ends. A
 * reasoning model held to the grammar from its first token cannot think at all.
 */
import type { TokenConstraint } from '../generate/sampling.js';
import { Grammar } from '../llama/grammar.js';
import type { Model } from '../llama/model.js';
import type { Tokenizer } from '../llama/tokenizer.js';
import { endsInsideThinking, type ThinkingTagTokens } from './segments.js';

/**
 * What holds a request's tokens to `gbnf`: the grammar itself for a model without thinking tags,
 * else the grammar for what follows the thinking. Throws GrammarError for a grammar llama.cpp refuses.
 */
export function grammarConstraint(model: Model, gbnf: string, tags: ThinkingTagTokens | undefined, prompt: readonly number[]): TokenConstraint {
  if (!tags) return Grammar.compile(model, gbnf);
  return new AnswerAfterThinking(Grammar.compile(model, answerGrammar(gbnf), ANSWER_START), tags, phaseAfter(prompt, tags, model.tokenizer));
}

/**
 * Where a prompt leaves the model: inside a thinking section it opened, just past one it closed
 * (as templates that switch thinking off end in an empty one: the answer comes next), or free to
 * open one (a thinking section closed earlier in the conversation says nothing of this turn).
 */
function phaseAfter(prompt: readonly number[], tags: ThinkingTagTokens, tokenizer: Tokenizer): Phase {
  if (endsInsideThinking(prompt, tags)) return 'thinking';
  const closed = prompt.lastIndexOf(tags.close);
  return closed >= 0 && tokenizer.detokenize(prompt.slice(closed + 1)).trim() === '' ? 'answer' : 'start';
}

/** The start rule a thinking model's grammar is compiled from: a few whitespace characters (the testbed writes a newline after `</think>`), then its own `root`. */
const ANSWER_START = 'tachyon-answer';

/** `gbnf` with ANSWER_START added. */
function answerGrammar(gbnf: string): string {
  return `${gbnf}\n${ANSWER_START} ::= [ \\t\\n]{0,8} root\n`;
}

type Phase = 'start' | 'thinking' | 'answer';

export class AnswerAfterThinking implements TokenConstraint {
  /** `grammar` is compiled from ANSWER_START; at the `start` the model may open a thinking section or begin its answer. */
  constructor(
    private readonly grammar: TokenConstraint,
    private readonly tags: ThinkingTagTokens,
    private phase: Phase,
  ) {}

  allows(token: number): boolean {
    if (this.phase === 'thinking') return true;
    return (this.phase === 'start' && token === this.tags.open) || this.grammar.allows(token);
  }

  restrict(logits: Float32Array): Float32Array {
    if (this.phase === 'thinking') return logits;
    if (this.phase === 'answer') return this.grammar.restrict(logits);
    const restricted = this.restrictOrEmpty(logits);
    restricted[this.tags.open] = logits[this.tags.open];
    return restricted;
  }

  accept(token: number): void {
    if (this.phase === 'thinking') {
      if (token === this.tags.close) this.phase = 'answer';
      return;
    }
    if (this.phase === 'start' && token === this.tags.open) {
      this.phase = 'thinking';
      return;
    }
    this.grammar.accept(token);
    this.phase = 'answer';
  }

  fork(): AnswerAfterThinking {
    return new AnswerAfterThinking(this.grammar.fork(), this.tags, this.phase);
  }

  dispose(): void {
    this.grammar.dispose();
  }

  /** At the start the opening tag may be all that is allowed: the grammar allowing nothing else is no dead end yet. */
  private restrictOrEmpty(logits: Float32Array): Float32Array {
    try {
      return this.grammar.restrict(logits);
    } catch {
      return new Float32Array(logits.length).fill(-Infinity);
    }
  }
}
