/**
 * Measures the verify cost curve t(n)/t(1) of a model on this machine: the time of one decode of
 * n tokens (all with logits, as in verification) relative to a single-token decode. Cached per
 * model file, backend, thread count and CPU, since it only changes when one of those does.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { TokenBatch } from '../llama/batch.js';
import { evaluatePrompt } from '../generate/decoder.js';
import type { Context } from '../llama/context.js';
import { cacheDir } from '../paths.js';
import { CostCurve, type CostPoint } from './cost-model.js';
import { median } from '../bench/stats.js';

export const COST_CURVE_SIZES = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64] as const;

export interface MeasuredCostCurve {
  /** Median seconds per decode for each batch size. */
  points: CostPoint[];
  /**
   * Extra time, in single-decode units, of a decode whose batch shape differs from the previous
   * one: llama.cpp reuses the compute graph only for an identical shape.
   */
  switchCost: number;
  curve: CostCurve;
}

interface CachedCurve {
  key: string;
  points: CostPoint[];
  switchSeconds: number;
}

/**
 * Decodes batches of each size after a prefix of realistic length (attention over a few hundred
 * cells costs more than over a handful), each size `repeats` times back to back after one
 * unmeasured warm-up (graph allocation); medians.
 */
export async function measureCostCurve(context: Context, repeats = 7, sizes: readonly number[] = COST_CURVE_SIZES): Promise<{ points: CostPoint[]; switchSeconds: number }> {
  const prefix = Math.min(384, Math.floor(context.contextSize / 2));
  const usable = sizes.filter((n) => n <= context.batchSize && prefix + n < context.contextSize);
  const batch = new TokenBatch(Math.max(...usable, Math.min(prefix, context.batchSize)), 1);
  const vocabulary = context.vocabularySize;
  const token = (i: number) => 1 + ((i * 7919) % (vocabulary - 1));
  const points: CostPoint[] = [];
  const timeDecode = async (n: number): Promise<number> => {
    batch.clear();
    for (let i = 0; i < n; i++) batch.add(token(prefix + i), prefix + i, 0, true);
    const started = performance.now();
    await context.decode(batch);
    const seconds = (performance.now() - started) / 1000;
    context.seqRemove(0, prefix, -1);
    return seconds;
  };
  let switchSeconds = 0;
  try {
    context.seqRemove(-1);
    await evaluatePrompt(context, batch, Array.from({ length: prefix }, (_, i) => token(i)));
    for (const n of usable) {
      await timeDecode(n);
      const samples: number[] = [];
      for (let round = 0; round < repeats; round++) samples.push(await timeDecode(n));
      points.push({ n, seconds: median(samples) });
    }
    // Alternating 1 and 4 tokens rebuilds the graph every time; back to back it is reused.
    const alternating: number[] = [];
    for (let round = 0; round < repeats; round++) alternating.push((await timeDecode(1)) + (await timeDecode(4)));
    const steady = (points.find((p) => p.n === 1)?.seconds ?? 0) + (points.find((p) => p.n === 4)?.seconds ?? 0);
    switchSeconds = Math.max(0, (median(alternating) - steady) / 2);
  } finally {
    context.seqRemove(-1);
    batch.dispose();
  }
  return { points, switchSeconds };
}

async function cacheKey(context: Context, threads: number): Promise<string> {
  const info = await stat(context.model.path);
  const cpu = cpus()[0]?.model ?? 'cpu';
  const parts = [context.model.path, info.size, info.mtimeMs, context.model.library.backend, threads, cpu, context.batchSize];
  return createHash('sha256').update(parts.join('|')).digest('hex').slice(0, 24);
}

/** The cached curve for this model and machine, or a fresh measurement (then cached, atomically). */
export async function costCurveFor(context: Context, threads: number, onMeasure?: () => void): Promise<MeasuredCostCurve> {
  const key = await cacheKey(context, threads);
  const file = join(cacheDir, 'cost-curves', `${key}.json`);
  let measured = await readCached(file, key);
  if (!measured) {
    onMeasure?.();
    measured = await measureCostCurve(context);
    await mkdir(dirname(file), { recursive: true });
    const temporary = `${file}.${process.pid}.tmp`;
    await writeFile(temporary, JSON.stringify({ key, ...measured } satisfies CachedCurve));
    await rename(temporary, file);
  }
  const { points, switchSeconds } = measured;
  return { points, switchCost: switchSeconds / points[0].seconds, curve: new CostCurve(points) };
}

/** A corrupt or foreign cache file is a miss, never an error. */
async function readCached(file: string, key: string): Promise<{ points: CostPoint[]; switchSeconds: number } | undefined> {
  try {
    const cached = JSON.parse(await readFile(file, 'utf8')) as CachedCurve;
    const valid =
      cached.key === key &&
      Array.isArray(cached.points) &&
      cached.points.length > 0 &&
      cached.points.every((p) => p.n >= 1 && p.seconds > 0) &&
      Number.isFinite(cached.switchSeconds) &&
      cached.switchSeconds >= 0;
    return valid ? { points: cached.points, switchSeconds: cached.switchSeconds } : undefined;
  } catch {
    return undefined;
  }
}
