/**
 * Early-exit presets (`reasoningEffort: low | medium | high`) per model, keyed by a fingerprint
 * of the model file's content: thresholds fitted on one model mean nothing for another.
 * `tachyon calibrate reasoning` writes them to presets/reasoning/<fingerprint>.json.
 */
import { createHash } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { packageRoot } from '../paths.js';
import { writeFileAtomic } from '../atomic-file.js';
import { REASONING_EFFORTS, type ExitThresholds, type ReasoningEffort, type ThinkingLimits } from './controller.js';


/** The model has no calibrated early-exit presets, so a reasoning effort cannot be honoured. */
export class MissingPresetsError extends Error {
  override name = 'MissingPresetsError';
}

export const presetsDir = join(packageRoot, 'presets', 'reasoning');

export interface ReasoningPresets {
  fingerprint: string;
  /** The model file's name when fitted (informative). */
  model: string;
  levels: Record<ReasoningEffort, ExitThresholds>;
  /** How the presets were fitted (prompt set, which half, what they achieved there). */
  calibration: Record<string, unknown>;
}

/** Bytes hashed from each end of the file: a whole multi-GB file would take seconds to hash. */
const SAMPLE_BYTES = 1 << 20;

/**
 * The key of a model's presets: size + the first and last MiB of the file, cheap for a multi-GB
 * model. Not the full-file hash that keys KV cache entries (src/gguf/fingerprint.ts): presets only
 * need to find their model, cache entries must never meet another model's bytes.
 */
export async function presetFingerprint(path: string): Promise<string> {
  const { size } = await stat(path);
  const file = await open(path, 'r');
  try {
    const hash = createHash('sha256').update(String(size));
    for (const start of [0, Math.max(0, size - SAMPLE_BYTES)]) {
      const buffer = Buffer.alloc(Math.min(SAMPLE_BYTES, size));
      const { bytesRead } = await file.read(buffer, 0, buffer.length, start);
      hash.update(buffer.subarray(0, bytesRead));
    }
    return hash.digest('hex').slice(0, 24);
  } finally {
    await file.close();
  }
}

export function presetsPath(fingerprint: string, dir = presetsDir): string {
  return join(dir, `${fingerprint}.json`);
}

/** The presets of the model at `path`; a clear error when it has none (or they are malformed). */
export async function loadReasoningPresets(path: string, dir = presetsDir): Promise<ReasoningPresets> {
  const fingerprint = await presetFingerprint(path);
  const file = presetsPath(fingerprint, dir);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new MissingPresetsError(`no reasoning-effort presets for ${basename(path)} (fingerprint ${fingerprint}): fit them with \`tachyon calibrate reasoning --model ${path} --prompts FILE\``);
  }
  const presets = JSON.parse(text, (key, value) => (key === 'maxEndMargin' && value === null ? Infinity : value)) as ReasoningPresets;
  for (const level of REASONING_EFFORTS) {
    const thresholds = presets.levels?.[level];
    if (!thresholds || typeof thresholds.minThinkingTokens !== 'number' || typeof thresholds.alpha !== 'number') {
      throw new Error(`${file}: reasoning presets lack a valid '${level}' level`);
    }
  }
  return presets;
}

/** Writes presets atomically (temp file, fsync, rename). JSON has no Infinity: it is stored as null. */
export async function saveReasoningPresets(presets: ReasoningPresets, dir = presetsDir): Promise<string> {
  const file = presetsPath(presets.fingerprint, dir);
  await writeFileAtomic(file, `${JSON.stringify(presets, (_key, value) => (value === Infinity ? null : value), 2)}\n`, { shared: true });
  return file;
}

/** Resolves `reasoningEffort` into the model's thresholds (options unchanged when no effort is asked). */
export async function withReasoningPresets<T extends ThinkingLimits>(modelPath: string, options: T, dir = presetsDir): Promise<T & Pick<ThinkingLimits, 'exitThresholds'>> {
  if (options.reasoningEffort === undefined || options.exitThresholds !== undefined) return options;
  if (!REASONING_EFFORTS.includes(options.reasoningEffort)) {
    throw new Error(`reasoningEffort must be one of ${REASONING_EFFORTS.join(', ')}, got ${JSON.stringify(options.reasoningEffort)}`);
  }
  const presets = await loadReasoningPresets(modelPath, dir);
  return { ...options, exitThresholds: presets.levels[options.reasoningEffort] };
}
