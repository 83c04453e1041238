/**
 * Token log-probabilities, as OpenAI's `logprobs` reports them: the log-softmax of the model's raw
 * logits, before temperature, penalties and truncation (vLLM's default), for the emitted token and
 * the most likely alternatives. They are the same whether a token came from a verified draft or
 * from plain decoding: the target's row that chose it is the same row.
 */
import type { Tokenizer } from '../llama/tokenizer.js';

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
  const logNormalizer = logSumExp(logits);
  const choice = (id: number): TokenChoice => {
    const bytes = tokenizer.pieceBytes(id);
    return { token: id, text: utf8.decode(bytes), bytes: Array.from(bytes), logprob: logits[id] - logNormalizer };
  };
  return { ...choice(token), top: mostLikely(logits, top).map(choice) };
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

function logSumExp(logits: Float32Array): number {
  let max = -Infinity;
  for (const value of logits) if (value > max) max = value;
  let sum = 0;
  for (const value of logits) sum += Math.exp(value - max);
  return max + Math.log(sum);
}

/** The k largest logits' ids, largest first (k is small: one pass keeping a sorted list). */
function mostLikely(logits: Float32Array, k: number): number[] {
  const best: number[] = [];
  if (k === 0) return best;
  for (let id = 0; id < logits.length; id++) {
    if (best.length === k && logits[id] <= logits[best[k - 1]]) continue;
    let at = best.length === k ? k - 1 : best.length;
    while (at > 0 && logits[best[at - 1]] < logits[id]) {
      best[at] = best[at - 1];
      at--;
    }
    best[at] = id;
  }
  return best;
}
