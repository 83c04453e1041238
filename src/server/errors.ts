/** Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with their HTTP status. */
import type { FastifyError } from 'fastify';
import { QueueFullError } from '../engine/errors.js';
import { MissingPresetsError } from '../reasoning/presets.js';
import { PromptTooLongError } from '../generate/decoder.js';
import { ChatTemplateError } from '../generate/chat.js';
import { GrammarError } from '../llama/grammar.js';

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers (Retry-After). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  get body(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export function invalidRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, 'invalid_request_error', param, code);
}

/** Seconds a client told the queue is full should wait before trying again. */
const RETRY_AFTER_SECONDS = 1;

/**
 * What a client hears about an error: engine errors it caused or can retry in their own terms,
 * framework errors (bad JSON, wrong content type, body too large, schema) with their 4xx status,
 * anything else as a 500 without internals.
 */
export function toApiError(error: unknown, promptParam: 'messages' | 'prompt' = 'prompt'): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof PromptTooLongError) {
    const message =
      error.promptTokens === 0
        ? 'the prompt is empty'
        : `the prompt has ${error.promptTokens} tokens, more than this model's context of ${error.contextSize} tokens allows (it needs room for at least one more)`;
    return invalidRequest(message, promptParam, error.promptTokens === 0 ? 'empty_prompt' : 'context_length_exceeded');
  }
  if (error instanceof QueueFullError) {
    return new ApiError(429, `the server is busy (${error.message}); retry shortly`, 'rate_limit_error', null, 'queue_full', {
      'retry-after': String(RETRY_AFTER_SECONDS),
    });
  }
  if (error instanceof ChatTemplateError) return invalidRequest(error.message, 'messages');
  if (error instanceof MissingPresetsError) return invalidRequest(error.message, 'reasoning_effort');
  if (error instanceof GrammarError) return invalidRequest(error.message, 'grammar', 'invalid_grammar');
  const framework = error as Partial<FastifyError>;
  if (framework.validation) return schemaError(framework.validation, framework.validationContext ?? 'body');
  if (framework.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return new ApiError(415, 'the body must be JSON (content-type: application/json)', 'invalid_request_error', null, 'unsupported_media_type');
  }
  if (typeof framework.statusCode === 'number' && framework.statusCode >= 400 && framework.statusCode < 500) {
    return new ApiError(framework.statusCode, framework.message ?? 'bad request', 'invalid_request_error', null, framework.code ?? null);
  }
  return new ApiError(500, 'internal server error', 'server_error');
}

interface ValidationIssue {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

/** The deepest schema complaint names the field (a union's branches all complain at its root). */
function schemaError(issues: readonly ValidationIssue[], context: string): ApiError {
  const issue = [...issues].sort((a, b) => b.instancePath.length - a.instancePath.length)[0];
  const path = issue.instancePath.slice(1).replaceAll('/', '.');
  if (issue.keyword === 'required') {
    const field = [path, String(issue.params.missingProperty)].filter(Boolean).join('.');
    return invalidRequest(`missing required field '${field}'`, field, 'missing_required_parameter');
  }
  if (issue.keyword === 'additionalProperties') {
    const field = [path, String(issue.params.additionalProperty)].filter(Boolean).join('.');
    return invalidRequest(`unknown field '${field}'`, field, 'unknown_field');
  }
  const param = path || null;
  // A union of constants (a role, an effort level) fails once per constant: name them all.
  const allowed = issues.filter((other) => other.keyword === 'const' && other.instancePath === issue.instancePath).map((other) => JSON.stringify(other.params.allowedValue));
  if (allowed.length > 0) return invalidRequest(`invalid '${param ?? context}': must be one of ${allowed.join(', ')}`, param, 'invalid_value');
  return invalidRequest(`invalid ${param ? `'${param}'` : context}: ${issue.message ?? issue.keyword}`, param, 'invalid_value');
}
