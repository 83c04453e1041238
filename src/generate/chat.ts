/** Chat: renders the model's GGUF `tokenizer.chat_template` (Jinja) with @huggingface/jinja. */
import { Template } from '@huggingface/jinja';
import type { Model } from '../llama/model.js';

export type ChatRole = 'system' | 'user' | 'assistant' | 'tool';

export interface ChatMessage {
  role: ChatRole;
  content: string;
  /** The participant's name (OpenAI's field); templates that know it render it. */
  name?: string;
}

export class ChatTemplateError extends Error {
  override name = 'ChatTemplateError';
}

/** A compiled chat template with the model's special tokens bound. */
export class ChatFormatter {
  private readonly template: Template;

  constructor(
    /** The Jinja source. */
    readonly source: string,
    private readonly specialTokens: { bos_token: string; eos_token: string },
  ) {
    try {
      this.template = new Template(source);
    } catch (error) {
      throw new ChatTemplateError(`the chat template does not parse: ${(error as Error).message}`);
    }
  }

  /** The model's own template, or `source` in its place; the model's BOS and EOS either way. */
  static forModel(model: Model, source = model.metadata.chatTemplate): ChatFormatter {
    if (!source) throw new ChatTemplateError(`model ${model.path} has no tokenizer.chat_template; use a plain prompt instead of chat`);
    const { bos, eos } = model.metadata.specialTokens;
    const text = (token: number) => (token >= 0 ? model.tokenizer.tokenText(token) : '');
    return new ChatFormatter(source, { bos_token: text(bos), eos_token: text(eos) });
  }

  /**
   * Messages in, prompt text out, ending with the assistant's generation prompt. The BOS token is
   * left to the tokenizer (templates that print `bos_token` themselves are tokenized without it).
   */
  render(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
    if (messages.length === 0) throw new ChatTemplateError('a chat needs at least one message');
    try {
      return this.template.render({ messages, add_generation_prompt: addGenerationPrompt, ...this.specialTokens });
    } catch (error) {
      throw new ChatTemplateError(`cannot render the chat template: ${(error as Error).message}`);
    }
  }

  /** Whether the rendered text already starts with BOS (then the tokenizer must not add another). */
  startsWithBos(rendered: string): boolean {
    return this.specialTokens.bos_token.length > 0 && rendered.startsWith(this.specialTokens.bos_token);
  }
}
