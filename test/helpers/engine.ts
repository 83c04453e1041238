/** Prompts and runs for tests of the public Engine: the same prompts alone, one after another, or all at once. */
import { join } from 'node:path';
import type { Engine, GenerateOptions, Prompt } from '../../src/engine/engine.js';
import { readJsonLines } from '../../src/bench/jsonl.js';
import { projectRoot } from './models.js';

/** Two chat prompts of each bench task (reasoning, long generation, rewriting). */
export async function benchPrompts(): Promise<string[]> {
  const prompts: string[] = [];
  for (const task of ['reasoning', 'longgen', 'rewrite']) {
    const rows = await readJsonLines(join(projectRoot, 'bench', 'prompts', `${task}.jsonl`));
    prompts.push(...rows.slice(0, 2).map(({ row }) => String(row.chat_prompt)));
  }
  return prompts;
}

/** Each prompt's tokens, run alone one after another. */
export async function solo(engine: Engine, prompts: readonly Prompt[], options: GenerateOptions): Promise<number[][]> {
  const outputs: number[][] = [];
  for (const prompt of prompts) outputs.push((await engine.complete(prompt, options)).tokens);
  return outputs;
}

/** Each prompt's tokens, all submitted at once. */
export async function together(engine: Engine, prompts: readonly Prompt[], options: (i: number) => GenerateOptions): Promise<number[][]> {
  const results = await Promise.all(prompts.map((prompt, i) => engine.complete(prompt, options(i))));
  return results.map((result) => result.tokens);
}
