/** Prompt sets are JSONL files: one JSON object per non-empty line. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from '../paths.js';

/** The files of named prompt sets (bench/prompts/<task>.jsonl), or one given file instead. */
export function promptSetFiles(tasks: readonly string[], file?: string): string[] {
  return file ? [file] : tasks.map((task) => join(packageRoot, 'bench', 'prompts', `${task}.jsonl`));
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
