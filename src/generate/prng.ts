/**
 * Seeded pseudo-random generator for token sampling.
 *
 * Algorithm: xoshiro128** 1.0 (Blackman & Vigna, https://prng.di.unimi.it/xoshiro128starstar.c),
 * a 128-bit-state generator with 32-bit outputs; chosen because it needs only 32-bit integer
 * arithmetic (Math.imul, >>>), which is fast and exact in JavaScript.
 *
 * Seeding: as recommended by the authors, the 128-bit state is filled from SplitMix64
 * (https://prng.di.unimi.it/splitmix64.c) started at the seed taken modulo 2^64 (so -1 means
 * 0xFFFFFFFFFFFFFFFF). Two SplitMix64 outputs a, b give the state words
 * [low32(a), high32(a), low32(b), high32(b)]. This is bit-exact with the C reference, which
 * lets other implementations reproduce our random streams.
 *
 * Lossless speculative decoding needs plain decoding and the verifier to consume identical
 * random streams, so `next()` is the single unit of consumption: one call per sampled token.
 */

/** The four 32-bit state words s[0..3] of xoshiro128**, as unsigned integers. */
export type PrngState = readonly [number, number, number, number];

const TWO_POW_26 = 67108864;
const TWO_POW_53 = 9007199254740992;
const MASK_64 = (1n << 64n) - 1n;

export class Prng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  /** @param seed any safe integer; equal seeds give equal streams. */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`Prng seed must be a safe integer, got ${seed}`);
    const seeder = new SplitMix64(BigInt(seed));
    const a = seeder.next();
    const b = seeder.next();
    this.setState([low32(a), high32(a), low32(b), high32(b)]);
  }

  /** Rebuilds a generator from `state()`, e.g. to resume a saved session. */
  static fromState(state: PrngState): Prng {
    if (state.every((word) => word >>> 0 === 0)) throw new RangeError('xoshiro128** state must not be all zero');
    const prng = new Prng(0);
    prng.setState(state);
    return prng;
  }

  /** Uniform double in [0, 1) with 53 random bits; consumes two 32-bit outputs (MT19937 genrand_res53 construction). */
  next(): number {
    const high27 = this.nextUint32() >>> 5;
    const low26 = this.nextUint32() >>> 6;
    return (high27 * TWO_POW_26 + low26) / TWO_POW_53;
  }

  /** Raw xoshiro128** output: uniform unsigned 32-bit integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Independent copy that continues with exactly the same stream (for tentative drafts). */
  clone(): Prng {
    return Prng.fromState(this.state());
  }

  /** Snapshot of the state words (unsigned); pass to `Prng.fromState` to restore. */
  state(): PrngState {
    return [this.s0 >>> 0, this.s1 >>> 0, this.s2 >>> 0, this.s3 >>> 0];
  }

  private setState(state: PrngState): void {
    // Kept as signed int32 internally: that is what the bit operators produce anyway.
    [this.s0, this.s1, this.s2, this.s3] = state.map((word) => word | 0);
  }
}

/** SplitMix64 (Steele, Lea & Flood); BigInt is fine here because it only runs at seeding time. */
class SplitMix64 {
  private x: bigint;

  constructor(seed: bigint) {
    this.x = BigInt.asUintN(64, seed);
  }

  next(): bigint {
    this.x = (this.x + 0x9e3779b97f4a7c15n) & MASK_64;
    let z = this.x;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK_64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK_64;
    return z ^ (z >> 31n);
  }
}

function rotl(value: number, bits: number): number {
  return (value << bits) | (value >>> (32 - bits));
}

function low32(value: bigint): number {
  return Number(value & 0xffffffffn);
}

function high32(value: bigint): number {
  return Number(value >> 32n);
}
