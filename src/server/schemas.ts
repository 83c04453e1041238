/**
 * Request bodies of the OpenAI-compatible endpoints, as TypeBox schemas (fastify validates them
 * with Ajv before a handler runs). Unknown fields are refused, not ignored: a client that asks for
 * something we do not do must hear so.
 */
import { Type, type Static } from '@sinclair/typebox';
import { MAX_TOP_LOGPROBS } from '../generate/logprobs.js';

/** Most choices (`n`) one request may ask for. */
export const MAX_CHOICES = 16;

/** Largest integer JSON can carry exactly into a JavaScript number. */
const SAFE = Number.MAX_SAFE_INTEGER;
/** Longest GBNF grammar a request may carry (llama.cpp parses it in the engine's thread). */
const MAX_GRAMMAR_CHARS = 100_000;

/**
 * OpenAI fields this server does not implement. Each is named in a 400 when present with a value
 * that asks for something (null, and false for the boolean switches, ask for nothing).
 */
export const UNSUPPORTED_FIELDS = [
  'tools',
  'tool_choice',
  'functions',
  'function_call',
  'parallel_tool_calls',
  'audio',
  'modalities',
  'prediction',
  'web_search_options',
  'echo',
  'suffix',
  'best_of',
] as const;

const unsupported = Object.fromEntries(UNSUPPORTED_FIELDS.map((name) => [name, Type.Optional(Type.Unknown())]));

const StreamOptions = Type.Object(
  {
    include_usage: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
    /** Vendor opt-in: each chunk names the drafter that proposed each of its tokens. */
    include_drafters: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

/** OpenAI's structured output: plain text, any JSON object, or JSON that a schema describes (src/generate/json-grammar.ts). */
const ResponseFormat = Type.Object(
  {
    type: Type.Union([Type.Literal('text'), Type.Literal('json_object'), Type.Literal('json_schema')]),
    /** With `type: "json_schema"` only (openai.ts checks; one object keeps the schema's complaints about `type` precise). */
    json_schema: Type.Optional(
      Type.Object(
        {
          name: Type.String({ minLength: 1, maxLength: 64 }),
          description: Type.Optional(Type.Union([Type.String(), Type.Null()])),
          schema: Type.Optional(Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Boolean(), Type.Null()])),
          strict: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

/** Fields shared by both generation endpoints. */
const generationFields = {
  /** Optional, as llama-server and vLLM have it: the one model served answers when it is absent. */
  model: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 256 }), Type.Null()])),
  stream: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
  stream_options: Type.Optional(Type.Union([StreamOptions, Type.Null()])),
  max_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: SAFE }), Type.Null()])),
  stop: Type.Optional(Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { maxItems: 4 }), Type.Null()])),
  temperature: Type.Optional(Type.Union([Type.Number({ minimum: 0, maximum: 2 }), Type.Null()])),
  top_p: Type.Optional(Type.Union([Type.Number({ exclusiveMinimum: 0, maximum: 1 }), Type.Null()])),
  top_k: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: 1_000_000 }), Type.Null()])),
  min_p: Type.Optional(Type.Union([Type.Number({ minimum: 0, maximum: 1 }), Type.Null()])),
  seed: Type.Optional(Type.Union([Type.Integer({ minimum: -SAFE, maximum: SAFE }), Type.Null()])),
  frequency_penalty: Type.Optional(Type.Union([Type.Number({ minimum: -2, maximum: 2 }), Type.Null()])),
  presence_penalty: Type.Optional(Type.Union([Type.Number({ minimum: -2, maximum: 2 }), Type.Null()])),
  /** llama.cpp / vLLM's multiplicative repetition penalty (1 = off). */
  repetition_penalty: Type.Optional(Type.Union([Type.Number({ exclusiveMinimum: 0, maximum: 10 }), Type.Null()])),
  /** llama-server's and vLLM's: generation goes on past end-of-generation tokens, to max_tokens (benchmarks that need exact lengths). */
  ignore_eos: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
  /** Choices per request, each its own engine request sharing the prompt's KV. */
  n: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: MAX_CHOICES }), Type.Null()])),
  /** Token id (as a string) → bias added to its logit, -100 (ban) to 100 (force). */
  logit_bias: Type.Optional(
    Type.Union([Type.Record(Type.String({ pattern: '^[0-9]{1,9}$' }), Type.Number({ minimum: -100, maximum: 100 }), { additionalProperties: false, maxProperties: 1024 }), Type.Null()]),
  ),
  /** OpenAI's reasoning effort: ends the thinking early at this model's calibrated thresholds (a 400 when it has none). */
  reasoning_effort: Type.Optional(Type.Union([Type.Literal('low'), Type.Literal('medium'), Type.Literal('high'), Type.Null()])),
  /** Tenant of the KV prefix cache and the drafting history (vLLM's field): different salts share nothing. */
  cache_salt: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 256 }), Type.Null()])),
  /** The answer's format (both endpoints, as vLLM has it): JSON mode and JSON schemas constrain decoding. */
  response_format: Type.Optional(Type.Union([ResponseFormat, Type.Null()])),
  /** llama-server's: a GBNF grammar (start symbol `root`) the answer must follow. */
  grammar: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: MAX_GRAMMAR_CHARS }), Type.Null()])),
  /** An end-user id for the operator's abuse tracking; it does not change the output. */
  user: Type.Optional(Type.Union([Type.String({ maxLength: 256 }), Type.Null()])),
  ...unsupported,
};

const TextPart = Type.Object({ type: Type.Literal('text'), text: Type.String() }, { additionalProperties: false });

const Message = Type.Object(
  {
    role: Type.Union([Type.Literal('system'), Type.Literal('developer'), Type.Literal('user'), Type.Literal('assistant')]),
    content: Type.Union([Type.String(), Type.Array(TextPart, { maxItems: 1024 })]),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
  },
  { additionalProperties: false },
);

export const ChatCompletionRequest = Type.Object(
  {
    messages: Type.Array(Message, { minItems: 1, maxItems: 4096 }),
    max_completion_tokens: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: SAFE }), Type.Null()])),
    logprobs: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
    top_logprobs: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: MAX_TOP_LOGPROBS }), Type.Null()])),
    ...generationFields,
  },
  { additionalProperties: false },
);
export type ChatCompletionRequest = Static<typeof ChatCompletionRequest>;

export const CompletionRequest = Type.Object(
  {
    prompt: Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1, maxItems: 1 }), Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 })]),
    logprobs: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: MAX_TOP_LOGPROBS }), Type.Null()])),
    ...generationFields,
  },
  { additionalProperties: false },
);
export type CompletionRequest = Static<typeof CompletionRequest>;

const GenerationFields = Type.Object(generationFields);
/** The fields both endpoints read when they build generation options (`logprobs` is a switch in chat, a count in completions). */
export type GenerationRequest = Static<typeof GenerationFields> & {
  max_completion_tokens?: number | null;
  logprobs?: boolean | number | null;
  top_logprobs?: number | null;
};

/**
 * llama-server's and vLLM's /tokenize, one route for both: text as `content` (llama-server: no BOS
 * unless `add_special`) or `prompt` (vLLM: BOS unless `add_special_tokens` is false), or chat
 * `messages` through the chat template; `with_pieces` (llama-server) pairs each id with its text.
 */
export const TokenizeRequest = Type.Object(
  {
    model: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 256 }), Type.Null()])),
    content: Type.Optional(Type.String()),
    prompt: Type.Optional(Type.String()),
    messages: Type.Optional(Type.Array(Message, { minItems: 1, maxItems: 4096 })),
    add_special: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
    add_special_tokens: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
    with_pieces: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
  },
  { additionalProperties: false },
);
export type TokenizeRequest = Static<typeof TokenizeRequest>;

/** /detokenize (llama-server and vLLM alike): token ids back to text. */
export const DetokenizeRequest = Type.Object(
  {
    model: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 256 }), Type.Null()])),
    tokens: Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 1_000_000 }),
  },
  { additionalProperties: false },
);
export type DetokenizeRequest = Static<typeof DetokenizeRequest>;
