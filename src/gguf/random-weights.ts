// Approximately normal random weights from the project's seeded PRNG, fast enough for 500M values.
import { Prng } from '../generate/prng.js';

/** FNV-1a over a string, for deriving independent per-tensor streams from one seed. */
export function hashString(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

/** Sum of four uniform bytes has mean 510 and std sqrt(4·(256²−1)/12) ≈ 147.80. */
const BYTE_SUM_MEAN = 510;
const BYTE_SUM_STD = Math.sqrt((4 * (256 * 256 - 1)) / 12);

/**
 * Fills with approximately normal values of the given std: the four bytes of one 32-bit draw are
 * summed (Irwin–Hall, bounded at ±3.45σ), one draw per value.
 */
export function fillNormalish(rng: Prng, out: Float32Array, std: number): void {
  const scale = std / BYTE_SUM_STD;
  for (let i = 0; i < out.length; i++) {
    const bits = rng.nextUint32();
    const sum = (bits & 0xff) + ((bits >>> 8) & 0xff) + ((bits >>> 16) & 0xff) + (bits >>> 24);
    out[i] = (sum - BYTE_SUM_MEAN) * scale;
  }
}
