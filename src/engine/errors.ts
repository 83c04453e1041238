/** Errors the engine gives a request, rebuilt on the main thread from what the worker sends. */
import { PromptTooLongError } from '../generate/decoder.js';
import { ModelLoadError } from '../llama/model.js';
import { GrammarError } from '../llama/grammar.js';

/** The waiting queue is full: retry later (servers answer 429). */
export class QueueFullError extends Error {
  override name = 'QueueFullError';
  constructor(readonly maxQueued: number) {
    super(`the engine's queue is full (${maxQueued} requests waiting); retry later`);
  }
}

/** The engine was disposed while the request waited or ran, or before it was made. */
export class EngineDisposedError extends Error {
  override name = 'EngineDisposedError';
  constructor() {
    super('the engine is disposed');
  }
}

/** An error as it crosses the thread boundary. */
export interface SerializedError {
  name: string;
  message: string;
  /** Numeric fields some errors carry (PromptTooLongError's sizes, QueueFullError's limit). */
  fields?: Record<string, number>;
}

export function serializeError(error: unknown): SerializedError {
  if (error instanceof PromptTooLongError) return { name: error.name, message: error.message, fields: { promptTokens: error.promptTokens, contextSize: error.contextSize } };
  if (error instanceof QueueFullError) return { name: error.name, message: error.message, fields: { maxQueued: error.maxQueued } };
  if (error instanceof Error) return { name: error.name, message: error.message };
  return { name: 'Error', message: String(error) };
}

export function deserializeError(error: SerializedError): Error {
  const fields = error.fields ?? {};
  if (error.name === 'PromptTooLongError') return new PromptTooLongError(fields.promptTokens ?? 0, fields.contextSize ?? 0);
  if (error.name === 'QueueFullError') return new QueueFullError(fields.maxQueued ?? 0);
  if (error.name === 'EngineDisposedError') return new EngineDisposedError();
  if (error.name === 'ModelLoadError') return new ModelLoadError(error.message);
  if (error.name === 'GrammarError') return new GrammarError(error.message);
  const rebuilt = new Error(error.message);
  rebuilt.name = error.name;
  return rebuilt;
}
