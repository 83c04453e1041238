/** Comparisons of token sequences, shared by the engine, the drafters and the benchmarks. */

/** How many leading tokens `a` and `b` share, counting at most `limit`. */
export function commonPrefixLength(a: ArrayLike<number>, b: ArrayLike<number>, limit = Infinity): number {
  const end = Math.min(a.length, b.length, limit);
  let length = 0;
  while (length < end && a[length] === b[length]) length++;
  return length;
}
