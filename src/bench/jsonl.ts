/** Prompt sets are JSONL files: one JSON object per non-empty line. */
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from '../paths.js';

const PROMPT_SETS = join(packageRoot, 'bench', 'prompts');

/** The files of named prompt sets (bench/prompts/<task>.jsonl), or one given file instead. */
export function promptSetFiles(tasks: readonly string[], file?: string): string[] {
  if (file) return [file];
  const known = readdirSync(PROMPT_SETS).filter((name) => name.endsWith('.jsonl')).map((name) => name.slice(0, -'.jsonl'.length));
  const unknown = tasks.filter((task) => !known.includes(task));
  if (unknown.length > 0) throw new Error(`unknown prompt set ${unknown.map((task) => `'${task}'`).join(', ')} (known: ${known.join(', ')}; or --prompts FILE)`);
  return tasks.map((task) => join(PROMPT_SETS, `${task}.jsonl`));
}

export interface JsonLine {
  /** 1-based, counting non-empty lines (for messages and default ids). */
  line: number;
  row: Record<string, unknown>;
}

/** The objects of a JSONL file; a line that is not a JSON object is a clear error naming it. */
export async function readJsonLines(path: string): Promise<JsonLine[]> {
  const lines = (await readFile(path, 'utf8')).split('\n').filter((line) => line.trim().length > 0);
  return lines.map((text, index) => {
    let row: unknown;
    try {
      row = JSON.parse(text);
    } catch {
      throw new Error(`${path}:${index + 1}: not JSON`);
    }
    if (typeof row !== 'object' || row === null || Array.isArray(row)) throw new Error(`${path}:${index + 1}: not a JSON object`);
    return { line: index + 1, row: row as Record<string, unknown> };
  });
}
