/**
 * Token log-probabilities, as OpenAI's `logprobs` reports them: the log-softmax of the model's raw
 * logits, before temperature, penalties and truncation (vLLM's default), for the emitted token and
 * the most likely alternatives. They are the same whether a token came from a verified draft or
 * from plain decoding: the target's row that chose it is the same row.
 */
import type { Tokenizer } from '../llama/tokenizer.js';
import { highestLogits } from './sampling.js';

/** The most alternatives a request may ask for (OpenAI's `top_logprobs` limit). */
export const MAX_TOP_LOGPROBS = 20;

export interface TokenChoice {
  token: number;
  /** The token's own text (a piece of a multi-byte character shows as U+FFFD; `bytes` has it whole). */
  text: string;
  bytes: number[];
  logprob: number;
}

export interface TokenLogprob extends TokenChoice {
  /** The `top` most likely tokens at this position, most likely first (may include the emitted one). */
  top: TokenChoice[];
}

export function checkTopLogprobs(top: number): void {
  if (!(Number.isInteger(top) && top >= 0 && top <= MAX_TOP_LOGPROBS)) {
    throw new RangeError(`logprobs must be an integer from 0 to ${MAX_TOP_LOGPROBS} (the alternatives per token), got ${top}`);
  }
}

/** The log-probability of `token` under `logits` and the `top` most likely tokens. */
export function tokenLogprob(tokenizer: Tokenizer, logits: Float32Array, token: number, top: number): TokenLogprob {
  const logProbability = logProbabilities(logits);
  const choice = (id: number): TokenChoice => {
    const bytes = tokenizer.pieceBytes(id);
    return { token: id, text: utf8.decode(bytes), bytes: Array.from(bytes), logprob: logProbability(id) };
  };
  return { ...choice(token), top: highestLogits(logits, top).map(({ id }) => choice(id)) };
}

/** log p(token) under `logits`, for any token: the normalizer is computed once. */
export function logProbabilities(logits: Float32Array): (token: number) => number {
  let top = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > top) top = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - top);
  const logSum = Math.log(sum);
  return (token) => logits[token] - top - logSum;
}

const utf8 = new TextDecoder('utf-8', { fatal: false });
