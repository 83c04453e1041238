/** Models the tests run on: the committed testbed pair and seeded random-weight models generated on demand. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureTestModel } from '../../src/gguf/make-model.js';
import { Model } from '../../src/llama/model.js';
export { top2Gap } from '../../src/bench/stats.js';
import { defaultDraftModelPath, defaultModelPath, packageRoot } from '../../src/paths.js';

export const projectRoot = packageRoot;
export const testbedTarget = defaultModelPath;
export const testbedDraft = defaultDraftModelPath;

/** A tiny seeded random-weight Llama model with the built-in vocabulary (cached under .cache/). */
export function tinyModelPath(seed = 1, quant: 'f16' | 'q8_0' = 'f16'): Promise<string> {
  return ensureTestModel('tiny', quant, seed);
}

const loaded = new Map<string, Promise<Model>>();

/** Loads each model once per test file (CPU backend: tests must pass without a GPU). */
export function loadModel(path: string): Promise<Model> {
  let model = loaded.get(path);
  if (!model) {
    model = Model.load(path, { gpu: 'cpu' });
    loaded.set(path, model);
  }
  return model;
}

export function scratchDir(): string {
  return mkdtempSync(join(tmpdir(), 'tachyon-test-'));
}

/** Index of the largest value (lowest index on ties). */
export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** In-distribution prompts of the testbed (chat-formatted), from the held-out bench sets. */
export const testbedPrompts = {
  reasoning: '<|user|>\nWhat is 47 + 85?<|end|>\n<|assistant|>\n',
  story: '<|user|>\nWrite a long bedtime story about a shy crow called Otto.<|end|>\n<|assistant|>\n',
};
