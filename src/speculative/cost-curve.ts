/**
 * Measures the verify cost curve t(n)/t(1) of a model on this machine: the time of one decode of
 * n tokens (all with logits, as in verification) relative to a single-token decode. Cached per
 * model file, backend, thread count, CPU and flash-attention setting, since it only changes when one
 * of those does.
 */
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { TokenBatch } from '../llama/batch.js';
import { evaluateTokens, type Context } from '../llama/context.js';
import { cacheDir } from '../paths.js';
import { writeFileAtomic } from '../atomic-file.js';
import { CostCurve, type CostPoint } from './cost-model.js';
import { median } from '../stats.js';

/**
 * Every size up to 16, then every 4th: CPU kernels make some sizes cheaper than smaller ones (tiles
 * of columns per thread), so a size between two measured ones may cost more than either; the
 * sizes plans use most are measured, not interpolated. And the sizes just below the batch at which
 * llama.cpp's CPU flash attention changes kernels: from FLASH_ATTENTION_TILE_ROWS query rows on it
 * multiplies tiles of rows at once instead of walking the cache row by row, so a batch of 64 costs
 * less than one of 63 (embedded m after 384 cells: c(56) 37-38, c(63) 42, c(64) 34; make-model's
 * tiny F16 model: c(63) 32-36, c(64) 12-13). Interpolated from 56 to 64, c(63) came out 22% too
 * cheap on embedded m.
 */
export const COST_CURVE_SIZES: readonly number[] = [...Array.from({ length: 16 }, (_, i) => i + 1), 20, 24, 28, 32, 40, 48, 56, 60, 63, 64];

/** GGML_FA_TILE_Q in ggml-cpu (common.h) of the pinned llama.cpp: the batch at which the tiled kernel starts. */
const FLASH_ATTENTION_TILE_ROWS = 64;

export interface MeasuredCostCurve {
  /** Median seconds per decode for each batch size. */
  points: CostPoint[];
  curve: CostCurve;
}

interface CachedCurve {
  key: string;
  points: CostPoint[];
}

/** Single-token decodes before each timed batch (measured: about six to settle after a 64-token batch). */
const SETTLE_DECODES = 6;

/**
 * Times each batch size the way speculation meets it: a tree decode in the middle of plain
 * decoding, after a prefix of realistic length (attention over a few hundred cells costs more than
 * over a handful). So the curve includes what leaving single-token decoding costs (llama.cpp
 * rebuilds its graph for a new batch shape). Before each timed batch, single-token decodes run
 * until settled (on a CPU a decode after a big batch takes several to get back to speed), and the
 * last is the single-token time of that batch's ratio. Sizes are measured round-robin, `rounds`
 * times: a machine whose speed drifts during the measurement (a noisy neighbour, a frequency
 * change) then moves both sides of a ratio alike, instead of bending the curve wherever the drift
 * fell. Each size's time is its median ratio times the median single-token time.
 */
export function measureCostCurve(context: Context, seq: number, rounds = 5, sizes: readonly number[] = COST_CURVE_SIZES): CostPoint[] {
  const prefix = Math.min(384, Math.floor(context.contextSize / 2));
  const batchSizes = sizes.filter((n) => n > 1 && n <= context.batchSize && prefix + n < context.contextSize);
  const batch = new TokenBatch(Math.max(1, ...batchSizes, Math.min(prefix, context.batchSize)), 1);
  const vocabulary = context.vocabularySize;
  const token = (i: number) => 1 + ((i * 7919) % (vocabulary - 1));
  const timeDecode = (n: number): number => {
    batch.clear();
    for (let i = 0; i < n; i++) batch.add(token(prefix + i), prefix + i, seq, true);
    const started = performance.now();
    context.decodeSync(batch);
    const seconds = (performance.now() - started) / 1000;
    context.seqRemove(seq, prefix, -1);
    return seconds;
  };
  try {
    context.seqRemove(seq);
    evaluateTokens(context, batch, Array.from({ length: prefix }, (_, i) => token(i)), 0, seq);
    for (const n of batchSizes) timeDecode(n); // graph allocation for every size, untimed
    const singles: number[] = [];
    const ratios = batchSizes.map((): number[] => []);
    for (let round = 0; round < rounds; round++) {
      for (const [i, n] of batchSizes.entries()) {
        let single = 0;
        for (let k = 0; k < SETTLE_DECODES; k++) single = timeDecode(1);
        singles.push(single);
        ratios[i].push(timeDecode(n) / single);
      }
    }
    const single = median(singles);
    return [{ n: 1, seconds: single }, ...batchSizes.map((n, i) => ({ n, seconds: median(ratios[i]) * single }))];
  } finally {
    context.seqRemove(seq);
    batch.dispose();
  }
}

/** Part of the cache key: a change of how the curve is measured invalidates curves measured the old way. */
const CURVE_FORMAT = 'in-situ-3';

/** What a cached curve is filed under: everything that changes what a batch costs here. */
export async function costCurveCacheKey(context: Context, threads: number): Promise<string> {
  const info = await stat(context.model.path);
  const cpu = cpus()[0]?.model ?? 'cpu';
  // Flash attention changes what a batch costs (on a CPU it walks the cache row by row below 64 query rows).
  const parts = [CURVE_FORMAT, context.model.path, info.size, info.mtimeMs, context.model.library.backend, threads, cpu, context.batchSize, context.flashAttention];
  return createHash('sha256').update(parts.join('|')).digest('hex').slice(0, 24);
}

/**
 * A batch of n tokens costs at most a few times n single decodes (measured up to 2n on one
 * thread, where a 2-token batch leaves the fast single-token kernels), and not much more than a
 * batch of twice as many or more that runs the same attention kernel, which does at least twice
 * the work (the kernels' tiles make dips of about a tenth). Otherwise the machine was busy while
 * it was measured: c(6) = 296 and c(2) = 30 were seen under load, and beside a compiler on one of
 * two cores c(2) = 5.7 with c(4) = 3.3; a curve like that, cached, would keep speculation off (or
 * small) on that machine for good. Across the flash-attention kernel switch a larger batch may
 * well cost less (make-model's tiny F16 model on a Zen 1 CPU: c(32) 17, c(64) 12), and a quiet
 * machine's curve was refused for it: never cached, so measured again at every engine start.
 */
export function plausibleCurve(points: readonly CostPoint[]): boolean {
  const single = points.find((p) => p.n === 1)?.seconds;
  if (single === undefined || !points.every((p) => p.seconds / single <= 3 * p.n)) return false;
  const sameKernel = (small: CostPoint, large: CostPoint) => small.n >= FLASH_ATTENTION_TILE_ROWS || large.n < FLASH_ATTENTION_TILE_ROWS;
  return points.every((small) => points.every((large) => large.n < 2 * small.n || !sameKernel(small, large) || small.seconds <= LARGER_BATCH_SLACK * large.seconds));
}

/** How much more than a batch of at least twice its size a batch may cost on a quiet machine. */
const LARGER_BATCH_SLACK = 1.25;

/** Measurements before an implausible curve is used anyway (for this process only, never cached). */
const MEASUREMENT_ATTEMPTS = 3;

/**
 * The cached curve for this model and machine, or a fresh measurement in sequence `seq` (an id
 * nobody else uses meanwhile), then cached atomically if it is plausible.
 */
export async function costCurveFor(context: Context, seq: number, threads: number, onMeasure?: () => void): Promise<MeasuredCostCurve> {
  const key = await costCurveCacheKey(context, threads);
  const file = join(cacheDir, 'cost-curves', `${key}.json`);
  let points = await readCached(file, key);
  if (!points) {
    onMeasure?.();
    points = measureCostCurve(context, seq);
    for (let attempt = 2; attempt <= MEASUREMENT_ATTEMPTS && !plausibleCurve(points); attempt++) points = measureCostCurve(context, seq);
    if (plausibleCurve(points)) await writeFileAtomic(file, JSON.stringify({ key, points } satisfies CachedCurve), { shared: true });
  }
  return { points, curve: new CostCurve(points) };
}

/** A corrupt or foreign cache file is a miss, never an error. */
async function readCached(file: string, key: string): Promise<CostPoint[] | undefined> {
  try {
    const cached = JSON.parse(await readFile(file, 'utf8')) as CachedCurve;
    const valid =
      cached.key === key &&
      Array.isArray(cached.points) &&
      cached.points.length > 0 &&
      cached.points.every((p) => p.n >= 1 && p.seconds > 0) &&
      plausibleCurve(cached.points);
    return valid ? cached.points : undefined;
  } catch {
    return undefined;
  }
}
