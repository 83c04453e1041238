/** Seeded uniform numbers for synthetic test data, from the project's own PRNG. */
import { Prng } from '../../src/generate/prng.js';

/** A function returning uniform doubles in [0, 1), reproducible per seed. */
export function seededUniform(seed: number): () => number {
  const rng = new Prng(seed);
  return () => rng.next();
}
