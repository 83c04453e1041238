/**
 * OpenAI's wire format: request fields → engine options (with OpenAI's defaults, not the
 * library's), and engine chunks/results → chat.completion / text_completion objects.
 */
import { randomInt, randomUUID } from 'node:crypto';
import type { GenerateOptions } from '../engine/engine.js';
import type { GenerationChunk } from '../generate/generate.js';
import type { ChatMessage } from '../generate/chat.js';
import type { GenerationResult, StopReason } from '../generate/generate.js';
import type { SpeculationStats } from '../speculative/decoder.js';
import type { TokenChoice, TokenLogprob } from '../generate/logprobs.js';
import { TrimmedSplitText, trimSplitText } from '../reasoning/presentation.js';
import { invalidRequest } from './errors.js';
import { JSON_OBJECT_GRAMMAR, JsonSchemaError, jsonSchemaGrammar } from '../generate/json-grammar.js';
import { UNSUPPORTED_FIELDS, type ChatCompletionRequest, type GenerationRequest } from './schemas.js';

/**
 * Refuses what we do not implement, by name (checked before the schema, which would only say
 * "unknown field" or "must be equal to constant"): unsupported fields, tool messages, non-text parts.
 */
export function refuseUnsupported(body: unknown): void {
  if (!isRecord(body)) return;
  for (const name of UNSUPPORTED_FIELDS) {
    const value = body[name];
    if (value !== undefined && value !== null && value !== false) {
      throw invalidRequest(`'${name}' is not supported by this server`, name, 'unsupported_field');
    }
  }
  if (Array.isArray(body.messages)) body.messages.forEach(refuseUnsupportedMessage);
}

function refuseUnsupportedMessage(message: unknown, index: number): void {
  if (!isRecord(message)) return;
  const at = `messages.${index}`;
  if (message.role === 'tool' || message.role === 'function') {
    throw invalidRequest(`'${at}.role' is '${message.role}': this server has no tool calling`, `${at}.role`, 'unsupported_field');
  }
  if (message.tool_calls !== undefined && message.tool_calls !== null) {
    throw invalidRequest(`'${at}.tool_calls' is not supported: this server has no tool calling`, `${at}.tool_calls`, 'unsupported_field');
  }
  if (!Array.isArray(message.content)) return;
  message.content.forEach((part: unknown, partIndex) => {
    if (isRecord(part) && typeof part.type === 'string' && part.type !== 'text') {
      throw invalidRequest(`'${at}.content.${partIndex}.type' is '${part.type}': this server reads text parts only`, `${at}.content.${partIndex}.type`, 'unsupported_field');
    }
  });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** What a request is checked against. */
export interface ModelLimits {
  contextSize: number;
  vocabularySize: number;
}

/** Engine options for a request (each choice adds its seed and signal); unset fields take OpenAI's defaults (temperature 1, top_p 1, a random seed). */
export function generationOptions(body: GenerationRequest, { contextSize, vocabularySize }: ModelLimits): GenerateOptions & { seed: number } {
  if (body.stream_options && !body.stream) throw invalidRequest("'stream_options' is only allowed with 'stream': true", 'stream_options', 'invalid_value');
  const maxTokensField = body.max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? contextSize;
  if (maxTokens > contextSize) {
    throw invalidRequest(`'${maxTokensField}' is ${maxTokens}, more than the context of ${contextSize} tokens`, maxTokensField, 'invalid_value');
  }
  const outside = Object.keys(body.logit_bias ?? {}).find((token) => Number(token) >= vocabularySize);
  if (outside !== undefined) throw invalidRequest(`'logit_bias' names token ${outside}, not a token id of this model (0..${vocabularySize - 1})`, 'logit_bias', 'invalid_value');
  const logprobs = requestedLogprobs(body);
  if (logprobs !== undefined && body.reasoning_effort != null) {
    throw invalidRequest("'logprobs' cannot be combined with 'reasoning_effort': the tokens that end the thinking early have no probability under the model", 'logprobs', 'invalid_value');
  }
  const grammar = requestedGrammar(body);
  if (grammar !== undefined && body.reasoning_effort != null) {
    const field = body.grammar != null ? 'grammar' : 'response_format';
    throw invalidRequest(`'${field}' cannot be combined with 'reasoning_effort': the tokens that end the thinking early would break the format`, field, 'invalid_value');
  }
  return {
    maxTokens,
    ignoreEos: body.ignore_eos ?? false,
    logprobs,
    grammar,
    stop: typeof body.stop === 'string' ? [body.stop] : (body.stop ?? []),
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? 1,
    topK: body.top_k ?? 0,
    minP: body.min_p ?? 0,
    seed: body.seed ?? randomInt(2 ** 47),
    frequencyPenalty: body.frequency_penalty ?? 0,
    presencePenalty: body.presence_penalty ?? 0,
    repeatPenalty: body.repetition_penalty ?? 1,
    logitBias: body.logit_bias ?? undefined,
    cacheSalt: body.cache_salt ?? undefined,
    reasoningEffort: body.reasoning_effort ?? undefined,
  };
}

/** The GBNF grammar of the answer: `grammar` as given, or `response_format`'s JSON; undefined: free text. */
function requestedGrammar({ response_format: format, grammar }: GenerationRequest): string | undefined {
  if (format?.json_schema && format.type !== 'json_schema') {
    throw invalidRequest(`'response_format.json_schema' is for 'type': 'json_schema', not '${format.type}'`, 'response_format.json_schema', 'invalid_value');
  }
  const constrained = format != null && format.type !== 'text';
  if (constrained && grammar != null) throw invalidRequest("'grammar' and a JSON 'response_format' cannot both be given", 'grammar', 'invalid_value');
  if (grammar != null) return grammar;
  if (!constrained) return undefined;
  if (format.type === 'json_object') return JSON_OBJECT_GRAMMAR;
  if (!format.json_schema) throw invalidRequest("'response_format.json_schema' is required with 'type': 'json_schema'", 'response_format.json_schema', 'missing_required_parameter');
  try {
    return jsonSchemaGrammar(format.json_schema.schema ?? true);
  } catch (error) {
    if (error instanceof JsonSchemaError) throw invalidRequest(`'response_format.json_schema.schema' cannot be followed: ${error.message}`, 'response_format.json_schema.schema', 'unsupported_schema');
    throw error;
  }
}

/** Alternatives per token the request asks for: chat's `logprobs: true` with `top_logprobs`, or completions' `logprobs: n`; undefined: none. */
function requestedLogprobs(body: GenerationRequest): number | undefined {
  if (typeof body.logprobs === 'number') return body.logprobs;
  if (body.top_logprobs != null && body.logprobs !== true) throw invalidRequest("'top_logprobs' needs 'logprobs': true", 'top_logprobs', 'invalid_value');
  return body.logprobs === true ? (body.top_logprobs ?? 0) : undefined;
}

/** Messages as the chat template takes them: text parts joined, `developer` as `system`, names kept. */
export function chatMessages(body: Pick<ChatCompletionRequest, 'messages'>): ChatMessage[] {
  return body.messages.map(({ role, content, name }) => ({
    role: role === 'developer' ? 'system' : role,
    content: typeof content === 'string' ? content : content.map((part) => part.text).join(''),
    ...(name ? { name } : {}),
  }));
}

export type FinishReason = 'stop' | 'length';

export function finishReason(stopReason: StopReason): FinishReason {
  return stopReason === 'length' || stopReason === 'context' ? 'length' : 'stop';
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt tokens whose KV was reused (the prefix cache, or a running request's shared prefix), as OpenAI and llama-server report them. */
  prompt_tokens_details: { cached_tokens: number };
  completion_tokens_details: { reasoning_tokens: number };
}

/** The usage of a response's choices: the prompt once (it was evaluated once: the choices share its KV), the completions summed. */
export function usageOf(results: readonly GenerationResult[]): Usage {
  const [{ stats: first }] = results;
  const completionTokens = sum(results, (result) => result.stats.generatedTokens);
  return {
    prompt_tokens: first.promptTokens,
    completion_tokens: completionTokens,
    total_tokens: first.promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: first.cachedPromptTokens },
    completion_tokens_details: { reasoning_tokens: sum(results, (result) => result.stats.thinkingTokens) },
  };
}

function sum<T>(items: readonly T[], value: (item: T) => number): number {
  return items.reduce((total, item) => total + value(item), 0);
}

/** The vendor extras of a finished response: why it was fast. */
export interface TachyonSummary {
  /** Tokens per verification step (1 = no speculation paid off). */
  tau: number;
  steps: number;
  speculative_steps: number;
  /** Drafted tokens proposed and accepted, per drafter. */
  drafters: SpeculationStats['drafters'];
  time_to_first_token_ms: number;
  decode_tokens_per_second: number;
}

/** The extras of a response's choices taken together: they decoded side by side, so their token rates add up. */
export function summaryOf(results: readonly GenerationResult[]): TachyonSummary {
  const steps = sum(results, (result) => result.stats.steps);
  const verifications = sum(results, (result) => result.stats.speculation?.steps ?? result.stats.steps);
  const emitted = sum(results, (result) => result.stats.speculation?.emitted ?? result.stats.steps);
  const drafters: SpeculationStats['drafters'] = {};
  for (const result of results) {
    for (const [name, stats] of Object.entries(result.stats.speculation?.drafters ?? {})) {
      const total = (drafters[name] ??= { proposed: 0, accepted: 0 });
      total.proposed += stats.proposed;
      total.accepted += stats.accepted;
    }
  }
  return {
    tau: verifications > 0 ? emitted / verifications : 1,
    steps,
    speculative_steps: sum(results, (result) => result.stats.speculation?.speculativeSteps ?? 0),
    drafters,
    time_to_first_token_ms: Math.max(...results.map((result) => result.stats.timeToFirstTokenMs)),
    decode_tokens_per_second: sum(results, (result) => result.stats.decodeTokensPerSecond),
  };
}

/** One token of a stream chunk and the drafter that proposed it (null: the target's own). */
export interface DraftedToken {
  text: string;
  drafter: string | null;
}

/** How one endpoint names its objects and fills its choices. */
export interface ResponseFormat {
  idPrefix: string;
  object: string;
  chunkObject: string;
  /** The choice fields of a stream's first chunk, sent before any text. */
  opening?: Record<string, unknown>;
  /**
   * One stream's delta writer: the choice fields of a chunk, undefined when it adds nothing (no
   * text shown yet, no logprobs). A writer may hold text back.
   */
  deltas(): (chunk: GenerationChunk) => Record<string, unknown> | undefined;
  /** The choice fields of a chunk that adds no text: the last one (with the finish reason), one that carries only drafted tokens. */
  noText: Record<string, unknown>;
  /** The choice fields of a whole response. */
  whole(result: GenerationResult): Record<string, unknown>;
}

export const chatFormat: ResponseFormat = {
  idPrefix: 'chatcmpl-',
  object: 'chat.completion',
  chunkObject: 'chat.completion.chunk',
  opening: { delta: { role: 'assistant', content: '' } },
  deltas: () => {
    const trimmed = new TrimmedSplitText();
    return (chunk) => {
      const { reasoning, content } = trimmed.push(chunk);
      if (!reasoning && !content && !chunk.logprobs?.length) return undefined;
      return { delta: { ...(reasoning ? { reasoning_content: reasoning } : {}), ...(content ? { content } : {}) }, ...chatLogprobs(chunk.logprobs) };
    };
  },
  noText: { delta: {} },
  whole: (result) => {
    const { reasoning, content } = trimSplitText(result);
    return { message: { role: 'assistant', content, ...(reasoning ? { reasoning_content: reasoning } : {}) }, ...chatLogprobs(result.logprobs) };
  },
};

export const completionFormat: ResponseFormat = {
  idPrefix: 'cmpl-',
  object: 'text_completion',
  chunkObject: 'text_completion',
  deltas: () => {
    const offset = { at: 0 };
    return ({ text, logprobs }) => (text || logprobs?.length ? { text, ...completionLogprobs(logprobs, offset) } : undefined);
  },
  noText: { text: '' },
  whole: (result) => ({ text: result.text, ...completionLogprobs(result.logprobs, { at: 0 }) }),
};

/** Chat's `logprobs`: one entry per token (thinking included, as vLLM reports them). */
function chatLogprobs(entries: readonly TokenLogprob[] | undefined) {
  if (!entries) return {};
  const fields = ({ text, logprob, bytes }: TokenChoice) => ({ token: text, logprob, bytes });
  return { logprobs: { content: entries.map((entry) => ({ ...fields(entry), top_logprobs: entry.top.map(fields) })), refusal: null } };
}

/** The completions endpoint's legacy `logprobs`; `offset.at` is where the next token's text starts in the completion. */
function completionLogprobs(entries: readonly TokenLogprob[] | undefined, offset: { at: number }) {
  if (!entries) return {};
  const textOffset = entries.map((entry) => {
    const at = offset.at;
    offset.at += entry.text.length;
    return at;
  });
  return {
    logprobs: {
      tokens: entries.map((entry) => entry.text),
      token_logprobs: entries.map((entry) => entry.logprob),
      top_logprobs: entries.map((entry) => Object.fromEntries(entry.top.map((top) => [top.text, top.logprob]))),
      text_offset: textOffset,
    },
  };
}

/** Identity of one response: every chunk of a stream carries the same id, time and model. */
export interface ResponseHeader {
  id: string;
  created: number;
  model: string;
}

export function responseHeader(format: ResponseFormat, model: string): ResponseHeader {
  return { id: `${format.idPrefix}${randomUUID().replaceAll('-', '')}`, created: Math.floor(Date.now() / 1000), model };
}
