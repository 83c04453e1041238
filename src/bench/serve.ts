/**
 * `tachyon bench serve`: `tachyon serve` and `llama-server` on the same model, slots, per-slot
 * context and threads, each without and with its speculative decoding, driven over HTTP by one
 * client with the same prompts: throughput, time to first token and inter-token latency at
 * several concurrency levels.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { llamaServers, rawCompletionFlags } from './peer-server.js';
import { packageRoot } from '../paths.js';
import { describeError, OpenAiCompletionsTarget, runLoad, summarizeLoad, type LoadRequest } from './load.js';
import { medianItem } from './stats.js';
import { STEP_PHASES, type StepPhase } from '../engine/step-phases.js';

/** The name both servers answer to (`--alias` for Tachyon; llama-server serves any). */
const SERVED_MODEL_NAME = 'bench';
const WARM_UP_PROMPT = 'Hello';

export const SETUPS = ['tachyon', 'tachyon_spec', 'llama', 'llama_spec'] as const;
export type Setup = (typeof SETUPS)[number];

export interface ServeBenchOptions {
  model: string;
  draftModel?: string;
  concurrency: readonly number[];
  /** The setups to run, in this order (those needing llama-server only when it is given). */
  setups: readonly Setup[];
  /** Times each level is measured on every setup (the median round is reported). */
  rounds: number;
  /** Requests per concurrency level (at least the level itself). */
  requests: number;
  maxTokens: number;
  /**
   * Prompt texts, already chat-formatted. Each turn (a level's round) takes the next prompts for
   * all servers alike; none is sent twice to a server while there are enough, since a server's
   * drafters may remember what it answered before (a suffix tree across requests would then
   * replay a repeated prompt's answer).
   */
  prompts: readonly string[];
  parallel: number;
  /** Context per slot. */
  ctxSize: number;
  threads: number;
  /** llama-server binary; undefined: measure Tachyon only. */
  llamaServer?: string;
  /** llama-server's speculative flags (its best setting on this model). */
  llamaSpecFlags: readonly string[];
  onProgress: (line: string) => void;
}

export interface LevelMeasurement {
  tokensPerSecond: number;
  /** While every client had a request in flight (LoadSummary.steady_tokens_per_second). */
  steadyTokensPerSecond: number;
  ttftP50Ms: number;
  ttftP99Ms: number;
  itlP50Ms: number;
  itlP99Ms: number;
  requests: number;
  tokens: number;
  /** Requests that failed; a level with any is not summarized (its throughput would flatter it). */
  failed: number;
  firstError?: string;
  /** Every round's throughput, when the level was measured more than once. */
  roundsTokensPerSecond?: number[];
  /** Tachyon only: the share of the level's wall time its engine loop spent in each phase (its /metrics, before and after). */
  phases?: StepPhaseShares;
}

/** Shares of a level's wall time (0-1); what is left passed outside the loop's steps (no request to run, the worker's messages). */
export type StepPhaseShares = Record<StepPhase, number>;

export interface ServeBenchReport {
  model: string;
  /** Tachyon's plain inter-token p50 with one client: what one decode of this model costs here. */
  ms_per_decode: number | null;
  settings: Omit<ServeBenchOptions, 'onProgress' | 'prompts'> & { prompts: number };
  /** The `--json` summary: throughput of each setup, latency of Tachyon with speculation. */
  concurrency: Record<string, Partial<Record<`${Setup}_tps` | `${Setup}_steady_tps`, number>> & { ttft_p50_ms?: number; ttft_p99_ms?: number; itl_p50_ms?: number; itl_p99_ms?: number }>;
  details: Partial<Record<Setup, Record<string, LevelMeasurement>>>;
  /** What could not be measured, and why (a server that did not start, a level whose requests failed). */
  failures: string[];
  /** Prompts had to repeat (fewer than the turns needed): a speculative server may have seen an answer before. */
  promptsRepeat: boolean;
}

export async function runServeBench(options: ServeBenchOptions): Promise<ServeBenchReport> {
  // A server that will not start, or a level with failed requests, is reported, not the end of a long run.
  const failures: string[] = [];
  const fail = (line: string) => {
    failures.push(line);
    options.onProgress(line);
  };
  const servers: RunningSetup[] = [];
  const needed = options.concurrency.reduce((sum, level) => sum + requestsAt(level, options) * options.rounds, 0);
  const promptsRepeat = needed > options.prompts.length;
  if (promptsRepeat) options.onProgress(`only ${options.prompts.length} prompts for ${needed} requests: prompts repeat, and a speculative server may replay an answer it gave before`);
  const rounds: Partial<Record<Setup, Record<string, LevelMeasurement[]>>> = {};
  try {
    await startServers(options, servers, fail);
    // Every server stays up and each level's rounds take them in turn, in an order that rotates:
    // a machine whose speed drifts over a long run (this one's did by 15%) then slows all alike.
    let turn = 0;
    let sent = 0;
    for (const level of options.concurrency) {
      for (let round = 0; round < options.rounds; round++, turn++) {
        const requests = Array.from({ length: requestsAt(level, options) }, (_, i) => ({ id: String(i), prompt: options.prompts[(sent + i) % options.prompts.length], maxTokens: options.maxTokens }));
        sent += requests.length;
        for (const server of rotated(servers, turn)) {
          if (server.broken) continue;
          const measured = await measureLevel(server, level, requests).catch((error: unknown) => {
            server.broken = true;
            fail(`${server.name}: ${describeError(error)}`);
          });
          if (!measured) continue;
          const what = `${server.name} × ${level}${options.rounds > 1 ? ` (round ${round + 1})` : ''}`;
          if (measured.failed > 0) {
            fail(`${what}: ${measured.failed} of ${measured.requests} requests failed: ${measured.firstError}`);
            continue;
          }
          ((rounds[server.name] ??= {})[level] ??= []).push(measured);
          options.onProgress(`${what}: ${measured.tokensPerSecond.toFixed(1)} tok/s, TTFT p50 ${measured.ttftP50Ms.toFixed(1)} ms, ITL p50 ${measured.itlP50Ms.toFixed(2)} ms`);
        }
      }
    }
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
  const details = medianRounds(rounds);
  return {
    model: options.model,
    // One decode is a single stream's inter-token gap: at more clients a gap is a shared step.
    ms_per_decode: details.tachyon?.[1]?.itlP50Ms ?? null,
    settings: { ...settingsOf(options), prompts: options.prompts.length },
    concurrency: summary(details, options.concurrency),
    details,
    failures,
    promptsRepeat,
  };
}

/** Starts every setup that can run, into `servers` (so that the caller stops them whatever happens); one that fails to start is reported. */
async function startServers(options: ServeBenchOptions, servers: RunningSetup[], fail: (line: string) => void): Promise<void> {
  for (const setup of measuredSetups(options)) {
    options.onProgress(`${setup}: starting the server`);
    const server = await startSetup(setup, options).catch((error: unknown) => fail(`${setup}: ${describeError(error)}`));
    if (server) servers.push(server);
  }
}

/** `items` starting at `turn` (mod its length). */
function rotated<T>(items: readonly T[], turn: number): T[] {
  const at = items.length > 0 ? turn % items.length : 0;
  return [...items.slice(at), ...items.slice(0, at)];
}

/** Each setup and level: the round with the median throughput (its latencies come with it), and every round's throughput. */
function medianRounds(rounds: Partial<Record<Setup, Record<string, LevelMeasurement[]>>>): ServeBenchReport['details'] {
  const details: ServeBenchReport['details'] = {};
  for (const [setup, levels] of Object.entries(rounds) as [Setup, Record<string, LevelMeasurement[]>][]) {
    details[setup] = {};
    for (const [level, measured] of Object.entries(levels)) {
      details[setup][level] = { ...medianItem(measured, (m) => m.tokensPerSecond), roundsTokensPerSecond: measured.map((m) => m.tokensPerSecond) };
    }
  }
  return details;
}

function settingsOf({ onProgress: _onProgress, prompts: _prompts, ...settings }: ServeBenchOptions) {
  return settings;
}

function summary(details: ServeBenchReport['details'], levels: readonly number[]): ServeBenchReport['concurrency'] {
  const result: ServeBenchReport['concurrency'] = {};
  for (const level of levels) {
    const row: ServeBenchReport['concurrency'][string] = {};
    for (const setup of SETUPS) {
      const measured = details[setup]?.[level];
      if (!measured) continue;
      row[`${setup}_tps`] = measured.tokensPerSecond;
      row[`${setup}_steady_tps`] = measured.steadyTokensPerSecond;
    }
    const headline = details.tachyon_spec?.[level];
    if (headline) Object.assign(row, { ttft_p50_ms: headline.ttftP50Ms, ttft_p99_ms: headline.ttftP99Ms, itl_p50_ms: headline.itlP50Ms, itl_p99_ms: headline.itlP99Ms });
    result[level] = row;
  }
  return result;
}

function requestsAt(level: number, options: ServeBenchOptions): number {
  return Math.max(level, options.requests);
}

/** One level on one server: a warm-up request (its failure breaks the server), then the level's requests. */
async function measureLevel(server: RunningSetup, level: number, requests: readonly LoadRequest[]): Promise<LevelMeasurement> {
  await warmUp(server); // first-request costs are not the level's
  const phasesBefore = server.tachyon ? await stepPhaseSeconds(server) : undefined;
  const run = await runLoad(clientOf(server), requests, { concurrency: level });
  const phasesAfter = server.tachyon ? await stepPhaseSeconds(server) : undefined;
  const summary = summarizeLoad(run);
  const phases = phasesBefore && phasesAfter && run.wallMs > 0 ? Object.fromEntries(STEP_PHASES.map((phase) => [phase, (phasesAfter[phase] - phasesBefore[phase]) / (run.wallMs / 1000)])) as StepPhaseShares : undefined;
  return {
    ...(phases ? { phases } : {}),
    tokensPerSecond: summary.tokens_per_second,
    steadyTokensPerSecond: summary.steady_tokens_per_second,
    ttftP50Ms: summary.ttft_p50_ms,
    ttftP99Ms: summary.ttft_p99_ms,
    itlP50Ms: summary.itl_p50_ms,
    itlP99Ms: summary.itl_p99_ms,
    requests: summary.requests,
    tokens: summary.tokens,
    failed: summary.failed,
    ...(summary.first_error !== undefined ? { firstError: summary.first_error } : {}),
  };
}

/** The engine loop's seconds per phase so far, from `tachyon serve`'s /metrics (tachyon:engine_step_seconds). */
async function stepPhaseSeconds(server: RunningSetup): Promise<Record<StepPhase, number>> {
  const response = await fetch(new URL('/metrics', server.url));
  if (!response.ok) throw new Error(`GET /metrics answered ${response.status}`);
  const text = await response.text();
  return Object.fromEntries(
    STEP_PHASES.map((phase) => {
      const match = new RegExp(`^tachyon:engine_step_seconds\\{phase="${phase}"\\} (\\S+)$`, 'm').exec(text);
      if (!match) throw new Error(`/metrics has no tachyon:engine_step_seconds for phase ${phase}`);
      return [phase, Number(match[1])];
    }),
  ) as Record<StepPhase, number>;
}

/** The client every benchmark shares, aimed at one server. */
function clientOf(server: RunningSetup): OpenAiCompletionsTarget {
  return new OpenAiCompletionsTarget(server.name, server.url, { model: SERVED_MODEL_NAME, tachyon: server.tachyon });
}

/** Sends one warm-up request through the client every benchmark shares; its failure ends the setup. */
async function warmUp(server: RunningSetup): Promise<void> {
  // Not one of the measured prompts: a drafter that remembers answers must not have seen one.
  const summary = summarizeLoad(await runLoad(clientOf(server), [{ id: 'warm-up', prompt: WARM_UP_PROMPT, maxTokens: 8 }], { concurrency: 1 }));
  if (summary.failed > 0) throw new Error(`the warm-up request failed: ${summary.first_error}`);
}

interface RunningSetup {
  name: Setup;
  url: string;
  /** `tachyon serve` names each chunk's tokens, so a chunk of k tokens counts k. */
  tachyon: boolean;
  /** Set once its warm-up failed: it is measured no more. */
  broken?: boolean;
  stop(): Promise<void>;
}

/** The setups a run measures: those asked for, less llama-server's when it has none. */
export function measuredSetups(options: Pick<ServeBenchOptions, 'setups' | 'llamaServer'>): Setup[] {
  return options.setups.filter((setup) => options.llamaServer !== undefined || setup.startsWith('tachyon'));
}

/**
 * The flags that make each setup what it is, beside the model, slots, context and threads all
 * share. Both Tachyon setups keep a KV buffer per request as llama-server does by default (its
 * attention reads only the request's own cells) and no prefix cache, so that they differ in
 * speculation alone: there, trees are single chains. Measured on embedded m at 8 clients (2-core
 * Zen 1): the unified buffer that branched trees and the cache need cost 4% with speculation and
 * without (plain 39.3-39.9 tok/s per request's buffer against 37.5-38.2 unified), while branches
 * gave a single stream 1-2% (planner replay, --max-branches 1).
 */
export function setupFlags(setup: Setup, options: Pick<ServeBenchOptions, 'draftModel' | 'llamaSpecFlags'>): string[] {
  const ownBuffers = ['--cache', 'off', '--kv', 'per-sequence'];
  switch (setup) {
    case 'tachyon':
      return ['--spec', 'off', ...ownBuffers];
    case 'tachyon_spec':
      return ['--spec', 'auto', ...ownBuffers, ...(options.draftModel ? ['--draft-model', options.draftModel] : [])];
    case 'llama':
      return [];
    case 'llama_spec':
      return [...options.llamaSpecFlags];
  }
}

async function startSetup(setup: Setup, options: ServeBenchOptions): Promise<RunningSetup> {
  if (setup.startsWith('tachyon')) {
    const args = ['serve', '--port', '0', '--model', options.model, '--alias', SERVED_MODEL_NAME, '--parallel', String(options.parallel), '--ctx-size', String(options.ctxSize)];
    args.push('--threads', String(options.threads), '--max-queued', '4096', ...setupFlags(setup, options));
    const child = spawn(process.execPath, [join(packageRoot, 'bin', 'tachyon.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const url = await printedUrl(child, /at (http:\/\/\S+) /);
    return { name: setup, url, tachyon: true, stop: () => stopChild(child) };
  }
  const servers = await llamaServers();
  const args = ['-m', options.model, '-np', String(options.parallel), '-c', String(options.parallel * options.ctxSize)];
  args.push('-t', String(options.threads), '-tb', String(options.threads), '-ngl', '0', ...rawCompletionFlags(servers, servers.serverHelp(options.llamaServer!)));
  args.push(...setupFlags(setup, options));
  const server = await new servers.LlamaServer(options.llamaServer!, setup, args, { log: options.onProgress }).start();
  return { name: setup, url: server.url, tachyon: false, stop: () => server.stop() };
}

async function printedUrl(child: ChildProcess, pattern: RegExp): Promise<string> {
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (text: Buffer) => (stderr = (stderr + text.toString()).slice(-2000)));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (text: Buffer) => {
      stdout += text.toString();
      const match = pattern.exec(stdout);
      if (match) resolve(match[1]);
    });
    child.once('exit', (code) => reject(new Error(`the server exited with ${code} before it was ready:\n${stderr}`)));
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const forced = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(forced);
}

