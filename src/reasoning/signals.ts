/**
 * What one logits row says about ending the thinking: the probability of the closing tag, the
 * margin by which the top token beats it, and the entropy. All from the raw logits, no copy.
 */

export interface BoundarySignals {
  /** p(close tag). */
  endProbability: number;
  /** log p(top) − log p(close tag) (≥ 0; 0 when the close tag is the top token). */
  endMargin: number;
  /** Entropy of the next-token distribution (nats). */
  entropy: number;
}

export function boundarySignals(logits: Float32Array, closeToken: number): BoundarySignals {
  let top = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > top) top = logits[i];
  let sum = 0;
  let weighted = 0;
  for (let i = 0; i < logits.length; i++) {
    const e = Math.exp(logits[i] - top);
    sum += e;
    weighted += e * (logits[i] - top);
  }
  const logZ = Math.log(sum);
  return {
    endProbability: Math.exp(logits[closeToken] - top - logZ),
    endMargin: top - logits[closeToken],
    entropy: logZ - weighted / sum,
  };
}
