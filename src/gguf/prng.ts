// Seeded, fast PRNG for synthetic weights: xoshiro128** seeded through splitmix32.
// Pure 32-bit integer math (Math.imul), so the stream is identical on every platform.

/** splitmix32 step: turns any 32-bit seed into well-mixed state words. */
function splitmix32(state: number): [next: number, output: number] {
  const next = (state + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return [next, (z ^ (z >>> 16)) >>> 0];
}

/** FNV-1a over a string, for deriving independent per-tensor streams from one seed. */
export function hashString(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

/** Sum of four uniform bytes has mean 510 and std sqrt(4·(256²−1)/12) ≈ 147.80. */
const BYTE_SUM_MEAN = 510;
const BYTE_SUM_STD = Math.sqrt((4 * (256 * 256 - 1)) / 12);

export class Xoshiro128 {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    let state = seed | 0;
    const words: number[] = [];
    for (let i = 0; i < 4; i++) {
      const [next, output] = splitmix32(state);
      state = next;
      words.push(output | 0);
    }
    [this.s0, this.s1, this.s2, this.s3] = words;
    // An all-zero state would emit zeros forever; splitmix32 makes this practically impossible.
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9);
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result >>> 0;
  }

  /** Uniform in [0, 1). */
  nextFloat(): number {
    return this.nextU32() / 0x100000000;
  }

  /**
   * Fill with approximately normal values of the given std: the four bytes of one 32-bit draw
   * are summed (Irwin–Hall, bounded at ±3.45σ), one draw per value, so 500M values take seconds.
   */
  fillNormalish(out: Float32Array, std: number): void {
    const scale = std / BYTE_SUM_STD;
    for (let i = 0; i < out.length; i++) {
      const bits = this.nextU32();
      const sum = (bits & 0xff) + ((bits >>> 8) & 0xff) + ((bits >>> 16) & 0xff) + (bits >>> 24);
      out[i] = (sum - BYTE_SUM_MEAN) * scale;
    }
  }
}

function rotl(value: number, shift: number): number {
  return (value << shift) | (value >>> (32 - shift));
}
