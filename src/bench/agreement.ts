/**
 * `bench agreement`: greedy generations on two llama.cpp backends (e.g. CUDA and CPU), each in its
 * own process (one variant per process), compared token by token.
 */
import type { GpuChoice } from '../llama/library.js';
import type { SpeculationMode } from '../speculative/speculation.js';
import { runJob, type GreedyResult } from './child.js';
import { readJsonLines } from './jsonl.js';
import { commonPrefixLength, median, round } from './stats.js';

export interface AgreementOptions {
  model: string;
  gpu: GpuChoice;
  reference: GpuChoice;
  prompts: string[];
  tokens: number;
  threads?: number;
  /** Default `off`: compares the backends' numerics on plain greedy decoding. */
  speculation?: SpeculationMode;
  timeoutMs?: number;
  onProgress?: (detail: string) => void;
}

export interface PromptAgreement {
  prompt: string;
  matching_prefix: number;
  identical: number;
  of: number;
}

export interface AgreementReport {
  model: string;
  backend: string;
  devices: string[];
  reference_backend: string;
  reference_devices: string[];
  tokens: number;
  decode_tps: number | null;
  reference_decode_tps: number | null;
  /** Share of positions (over all prompts) where both backends chose the same token. */
  identical_fraction: number;
  /** Prompts whose generations are identical from start to end. */
  identical_generations: number;
  prompts: PromptAgreement[];
}

/** Prompts from a JSONL file (`prompt` or `text` field of each line), the first `count` of them. */
export async function readPrompts(path: string, count: number): Promise<string[]> {
  const prompts: string[] = [];
  for (const { line, row } of await readJsonLines(path)) {
    if (prompts.length >= count) break;
    const text = typeof row.prompt === 'string' ? row.prompt : typeof row.text === 'string' ? row.text : undefined;
    if (text === undefined) throw new Error(`${path}:${line}: no "prompt" or "text" field`);
    prompts.push(text);
  }
  if (prompts.length === 0) throw new Error(`${path}: no prompts`);
  return prompts;
}

export async function runAgreement(options: AgreementOptions): Promise<AgreementReport> {
  const job = { kind: 'greedy' as const, model: options.model, threads: options.threads, prompts: options.prompts, tokens: options.tokens, speculation: options.speculation ?? 'off' };
  const timeoutMs = options.timeoutMs ?? 600_000;
  options.onProgress?.(`${options.gpu}: ${options.prompts.length} prompts × ${options.tokens} tokens`);
  const tested: GreedyResult = await runJob({ ...job, gpu: options.gpu }, timeoutMs);
  options.onProgress?.(`${options.reference}: ${options.prompts.length} prompts × ${options.tokens} tokens`);
  const reference: GreedyResult = await runJob({ ...job, gpu: options.reference }, timeoutMs);
  const prompts = options.prompts.map((prompt, i) => {
    const a = tested.outputs[i];
    const b = reference.outputs[i];
    const prefix = commonPrefixLength(a, b);
    let identical = 0;
    for (let k = 0; k < Math.min(a.length, b.length); k++) if (a[k] === b[k]) identical++;
    return { prompt, matching_prefix: prefix, identical, of: Math.max(a.length, b.length) };
  });
  const identical = prompts.reduce((sum, p) => sum + p.identical, 0);
  const of = prompts.reduce((sum, p) => sum + p.of, 0);
  return {
    model: options.model,
    backend: tested.backend,
    devices: tested.devices,
    reference_backend: reference.backend,
    reference_devices: reference.devices,
    tokens: options.tokens,
    decode_tps: round(median(tested.decodeTps), 2),
    reference_decode_tps: round(median(reference.decodeTps), 2),
    identical_fraction: of > 0 ? identical / of : 1,
    identical_generations: prompts.filter((p) => p.matching_prefix === p.of).length,
    prompts,
  };
}

export function formatAgreement(report: AgreementReport): string {
  const lines = [
    `model      ${report.model}`,
    `devices    ${report.backend}: ${report.devices.join(', ') || '-'} · ${report.reference_backend}: ${report.reference_devices.join(', ') || '-'}`,
    `decode     ${report.backend} ${report.decode_tps ?? '-'} tok/s · ${report.reference_backend} ${report.reference_decode_tps ?? '-'} tok/s (median over prompts, greedy)`,
    '',
    `matching prefix / identical tokens of ${report.tokens}, ${report.backend} vs ${report.reference_backend}:`,
  ];
  for (const p of report.prompts) {
    const shown = p.prompt.length > 48 ? `${p.prompt.slice(0, 45)}...` : p.prompt;
    lines.push(`  ${String(p.matching_prefix).padStart(4)} / ${String(p.identical).padStart(4)}   ${JSON.stringify(shown)}`);
  }
  lines.push(
    '',
    `identical tokens: ${(report.identical_fraction * 100).toFixed(1)}% · identical generations: ${report.identical_generations}/${report.prompts.length}`,
  );
  return lines.join('\n');
}
